"""app/config.py: env vars with the NINSERVE_ prefix, explicit values winning, fail-fast checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings


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


def test_models_default_to_the_bundled_repository_at_precision_auto(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings()
    assert (s.model_repository, s.model_path, s.model_name, s.precision) == (None, None, None, "auto")
    assert s.repository_poll_s == 0  # hot reload is asked for, never implied
    monkeypatch.setenv("NINSERVE_MODEL_NAME", "ninserve")  # what KServe passes: the service's name
    assert Settings(model_path=tiny_model).model_name == "ninserve"
    with pytest.raises(ValidationError, match="not both"):
        Settings(model_path=tiny_model, model_repository=tmp_path)
    with pytest.raises(ValidationError, match="model repository not found"):
        Settings(model_repository=tmp_path / "nope")
    for bad in ("../up", "a/b", ".hidden", "x" * 65):
        with pytest.raises(ValidationError, match="model_name"):
            Settings(model_name=bad)


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


def test_max_request_images_reads_its_old_env_name_too(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deployments that set NINSERVE_MAX_BATCH_FILES keep working; the new name wins when both are set."""
    monkeypatch.setenv("NINSERVE_MAX_BATCH_FILES", "7")
    assert Settings(model_path=tiny_model).max_request_images == 7
    monkeypatch.setenv("NINSERVE_MAX_REQUEST_IMAGES", "9")
    assert Settings(model_path=tiny_model).max_request_images == 9
    assert (
        Settings(model_path=tiny_model, max_request_images=3).max_request_images == 3
    )  # explicit values win
