"""app/config.py: env vars with the NINSERVE_ prefix, explicit values winning, fail-fast checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import DEFAULT_MODEL_PATH, INT8_MODEL_PATH, Settings


def test_defaults_bind_loopback(tiny_model: Path) -> None:
    s = Settings(model_path=tiny_model)
    assert (s.host, s.port, s.device, s.result_store) == ("127.0.0.1", 8000, "auto", "memory")
    assert s.max_batch_wait_s == 0.0  # batches form from arrivals during the previous run


def test_environment_variables(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NINSERVE_MODEL_PATH", str(tiny_model))
    monkeypatch.setenv("NINSERVE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("NINSERVE_DEVICE", "cpu")
    s = Settings()
    assert s.model_path == tiny_model and s.max_batch_size == 7 and s.device == "cpu"
    assert Settings(max_batch_size=9).max_batch_size == 9  # explicit (CLI) values win


@pytest.mark.parametrize(
    "bad",
    [
        {"device": "tpu"},
        {"max_batch_size": 0},
        {"max_batch_wait_ms": -1},
        {"port": 70000},
        {"result_store": "postgres://x"},
        {"max_resolution": 130},
        {"max_batch_size": 64, "max_queue": 8},
        {"unknown_setting": 1},
    ],
)
def test_invalid_values_fail_fast(tiny_model: Path, bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(model_path=tiny_model, **bad)


def test_missing_model_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="model file not found"):
        Settings(model_path=tmp_path / "nope.onnx")


def test_redis_urls_are_accepted(tiny_model: Path) -> None:
    assert Settings(model_path=tiny_model, result_store="redis://localhost:6379/0").result_store.startswith(
        "redis"
    )


def test_precision_picks_the_bundled_artifact_unless_a_path_is_given(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NINSERVE_PRECISION", "int8")
    assert Settings().model_path == INT8_MODEL_PATH
    assert Settings(model_path=tiny_model).model_path == tiny_model
    monkeypatch.delenv("NINSERVE_PRECISION")
    assert Settings().model_path == DEFAULT_MODEL_PATH


def test_connection_and_access_defaults(make_settings) -> None:
    s = make_settings()
    assert (s.header_timeout_s, s.body_timeout_s, s.keep_alive_timeout_s) == (10.0, 30.0, 5.0)
    assert (s.max_connections, s.max_header_bytes, s.max_headers) == (1000, 16 * 1024, 100)
    assert s.graceful_shutdown_s == 10.0
    assert s.api_key_list == () and s.metrics_require_key and not s.docs_require_key
    assert s.cors_origin_list == ()


def test_api_keys_from_the_variable_and_a_file(make_settings, tmp_path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("from-file-0123456789\n\nfrom-env-0123456789a\n")
    s = make_settings(api_keys=" from-env-0123456789a , second-0123456789ab,", api_keys_file=keys_file)
    assert s.api_key_list == ("from-env-0123456789a", "second-0123456789ab", "from-file-0123456789")
    assert "from-env" not in repr(s)  # SecretStr: never in a repr or a log line


def test_every_setting_is_documented_once_in_the_api_docs() -> None:
    table = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    rows = [name.lower() for name in re.findall(r"^\| `NINSERVE_([A-Z0-9_]+)` \|", table, re.MULTILINE)]
    assert sorted(rows) == sorted(Settings.model_fields)
