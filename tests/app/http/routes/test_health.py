"""GET /healthz and /readyz, including the window while the model loads, and a failed load."""

from __future__ import annotations

import threading

import httpx
import pytest

from app.core.engine import Engine
from app.http.main import create_app
from tests.app.helpers import live_server


def test_live_and_ready_name_the_loaded_model(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {
        "status": "ok",
        "model": "tiny",
        "version": "tiny-0001",
        "execution_provider": "CPUExecutionProvider",
    }
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["execution_provider"] == "CPUExecutionProvider"


def test_not_ready_until_warm(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real_warmup = Engine.warmup

    def slow_warmup(self, batch_sizes=(1,), options=None):
        gate.wait(10)
        real_warmup(self, batch_sizes, options)

    monkeypatch.setattr(Engine, "warmup", slow_warmup)
    with live_server(make_settings(), wait_ready=False) as url, httpx.Client(base_url=url) as client:
        loading = client.get("/healthz")
        assert loading.status_code == 200 and loading.json()["model"] is None  # not loaded yet
        for path in ("/readyz", "/v1/models"):
            response = client.get(path)
            assert response.status_code == 503 and response.headers["retry-after"] == "2"
            assert response.json()["type"] == "urn:ninserve:problem:not-ready"
        response = client.post("/v1/classify", content=b"x", headers={"Content-Type": "image/png"})
        assert response.status_code == 503
        gate.set()
        app_ready = False
        for _ in range(500):
            if client.get("/readyz").status_code == 200:
                app_ready = True
                break
            threading.Event().wait(0.01)
        assert app_ready


def test_failed_load_is_not_healthy(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, batch_sizes=(1,), options=None):
        raise RuntimeError("warm-up exploded")

    monkeypatch.setattr(Engine, "warmup", broken)
    app = create_app(make_settings())
    with live_server(app, wait_ready=False) as url, httpx.Client(base_url=url) as client:
        for _ in range(500):
            if app.state.serving.state != "loading":
                break
            threading.Event().wait(0.01)
        health = client.get("/healthz")  # open without a key: a short reason, no library text
        assert health.status_code == 503 and health.headers["retry-after"] == "2"
        assert health.json()["detail"] == "the model failed to load; the server log says why"
        ready = client.get("/readyz").json()["detail"]
        assert ready == "not ready: the model failed to load"
        assert app.state.serving.error == "warm-up failed: RuntimeError: warm-up exploded"  # for the log
        for path in ("/v2/health/live", "/v2/health/ready"):
            response = client.get(path)
            assert response.status_code == 503 and "exploded" not in response.text
