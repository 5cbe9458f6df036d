"""What a user sees when something is off: a broken file, a repository that is empty or not a
repository, a default model unloaded on purpose, a memory setting raised alone; and what the
repository API answers (JSON, as its schema says)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.core import engine as engine_module
from app.core.engine import Engine
from tests.app.helpers import build_tiny_model, live_server, png


def put(root: Path, model: str, version: int) -> Path:
    folder = root / model / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    return build_tiny_model(folder / "model.onnx", version=f"{model}-{version}")


def test_an_empty_or_wrong_repository_names_its_path_and_the_layout_before_starting(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as empty:
        Settings(model_repository=tmp_path)
    assert f"model repository {tmp_path} holds no model" in str(empty.value)
    assert "<model>/<version>/model.onnx" in str(empty.value)
    assert "nin-cifar10" not in str(empty.value)  # no model the user never named
    put(tmp_path, "pets", 1)
    with pytest.raises(ValidationError, match="looks like one model's folder: point to its parent"):
        Settings(model_repository=tmp_path / "pets")
    with pytest.raises(ValidationError, match="is a version folder"):
        Settings(model_repository=tmp_path / "pets" / "1")
    assert Settings(model_repository=tmp_path).model_repository == tmp_path


def test_raising_the_model_share_alone_adapts_the_split_instead_of_failing() -> None:
    for mb in (96, 256, 400):
        Settings(model_memory_mb=mb)  # the 800 MB default budget: decoding gives way
    with pytest.raises(ValidationError) as refused:
        Settings(model_memory_mb=600)
    message = str(refused.value)
    assert "set NINSERVE_MEMORY_BUDGET_MB=" in message
    need = int(message.split("NINSERVE_MEMORY_BUDGET_MB=")[1].split()[0])
    Settings(model_memory_mb=600, memory_budget_mb=need)  # the one number it names is enough


def test_readiness_after_an_explicit_unload_says_so_without_a_retry_loop(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    put(tmp_path, "pets", 1)
    settings = make_settings(model_path=None, model_repository=tmp_path)
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        unloaded = client.post("/v2/repository/models/pets/unload")
        assert unloaded.status_code == 200 and unloaded.headers["content-type"] == "application/json"
        assert unloaded.json() == {
            "name": "pets",
            "versions": [{"version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}],
        }
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "retry-after" not in ready.headers
        assert "was unloaded; POST /v2/repository/models/pets/load loads it again" in ready.json()["detail"]
        racing = client.post("/v1/classify", files={"file": ("x.png", png(1))})
        assert racing.status_code == 503 and "was unloaded" in racing.json()["detail"]
        assert "failed to load" not in racing.json()["detail"]
        loaded = client.post("/v2/repository/models/pets/load")
        assert loaded.headers["content-type"] == "application/json"
        assert loaded.json() == {"name": "pets", "versions": [{"version": "1", "state": "READY"}]}
        assert client.get("/readyz").status_code == 200
        schema = client.get("/openapi.json").json()["paths"]["/v2/repository/models/{model_name}/load"]
        assert "application/json" in schema["post"]["responses"]["200"]["content"]


def test_the_engine_logs_the_model_name_and_warns_of_no_cuda_once(
    tiny_model: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "cuda_problem", lambda: "no GPU here")
    monkeypatch.setattr(engine_module, "_warned", set())
    with caplog.at_level(logging.INFO, logger="ninserve"):
        for _ in range(3):  # three versions loading on a machine without CUDA
            Engine(tiny_model, device="auto", intra_op_threads=1, name="pets")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("no GPU here" in m for m in messages) == 1
    assert any(m.startswith("model pets (") for m in messages)
    assert not any(m.startswith(f"model {tiny_model.stem} ") for m in messages)
