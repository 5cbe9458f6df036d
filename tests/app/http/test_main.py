"""app/http/main.py: settings come from the caller (or the environment, for the uvicorn factory)."""

from __future__ import annotations

from pathlib import Path

import pytest

import app.http.main
from app.http.main import app_from_env, create_app


def test_importing_builds_nothing() -> None:
    assert not hasattr(app.http.main, "app") and not hasattr(app.http.main, "settings")


def test_create_app_keeps_the_given_settings(make_settings) -> None:
    settings = make_settings(max_batch_size=3)
    application = create_app(settings)
    assert application.state.serving.settings is settings
    assert application.state.serving.state == "starting"  # nothing loads before the lifespan runs


def test_factory_reads_the_environment(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NINSERVE_MODEL_PATH", str(tiny_model))
    monkeypatch.setenv("NINSERVE_MAX_QUEUE", "77")
    assert app_from_env().state.serving.settings.max_queue == 77


def test_fastapi_opentelemetry_only_when_asked(make_settings) -> None:
    off, on = create_app(make_settings()), create_app(make_settings(opentelemetry=True))
    assert not any(off._telemetry[kind] for kind in ("tracing", "metrics", "logs"))
    assert all(on._telemetry[kind] for kind in ("tracing", "metrics", "logs"))
