"""app/serving/state.py without a server: the life cycle a frontend sees (not ready, ready,
failed, stopped), the version a request holds, and which repository the settings name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.core.batcher import Batcher
from app.core.engine import Engine
from app.core.errors import NotReady
from app.serving.state import BUILTIN_NAME, ServingState, repository_for
from tests.app.helpers import build_tiny_model


def test_nothing_serves_before_start(make_settings: Callable[..., Settings]) -> None:
    serving = ServingState(make_settings())
    assert serving.state == "starting"
    for call in (serving.ready, serving.model, lambda: serving.store, lambda: serving.admission):
        with pytest.raises(NotReady, match="not ready"):
            call()
    assert serving.engine is None and serving.batcher is None


def test_a_started_state_lends_the_default_version_and_stops(make_settings: Callable[..., Settings]) -> None:
    serving = ServingState(make_settings())
    loaded: list[tuple[Engine, Batcher]] = []
    serving.on_load.append(lambda engine, batcher: loaded.append((engine, batcher)))

    async def main() -> None:
        await serving.start()
        await serving.wait_ready(timeout=60)
        assert serving.state == "ready"
        served = serving.model()
        assert (served.engine, served.batcher) == serving.ready() == loaded[0]
        assert served is serving.model(served.name, served.version)
        with served.use():
            assert served.in_flight == 1
        assert served.in_flight == 0
        assert await serving.in_pool(sum, [1, 2, 3]) == 6  # the I/O pool runs plain functions
        await serving.stop()
        assert serving.state == "stopped"

    asyncio.run(main())


def test_a_default_model_that_cannot_load_fails_the_state(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    serving = ServingState(make_settings(model_path=broken))
    failures: list[str] = []
    serving.on_failure.append(failures.append)

    async def main() -> None:
        await serving.start()
        await serving.wait_ready(timeout=60)
        assert serving.state == "failed" and failures and failures[0] == serving.error
        with pytest.raises(NotReady, match="the model failed to load"):  # the reason goes to the log only
            serving.ready()
        await serving.stop()

    asyncio.run(main())


def test_the_repository_the_settings_name(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    scanner, name = repository_for(make_settings())
    assert name == "tiny" and list(scanner().models) == ["tiny"]  # NINSERVE_MODEL_PATH: named after the file
    for model, version in (("zebra", "1"), ("ant", "2")):
        (tmp_path / model / version).mkdir(parents=True)
        build_tiny_model(tmp_path / model / version / "model.onnx")
    scanner, name = repository_for(make_settings(model_path=None, model_repository=tmp_path))
    assert name == "ant" and sorted(scanner().models) == ["ant", "zebra"]  # the first name by default
    _, named = repository_for(make_settings(model_path=None, model_repository=tmp_path, model_name="zebra"))
    assert named == "zebra"
    _, builtin = repository_for(make_settings(model_path=None))
    assert builtin == BUILTIN_NAME
