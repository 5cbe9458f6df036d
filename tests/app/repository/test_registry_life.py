"""app/repository/registry.py without a server: lookups, a new version swapped in while a request
holds the old one, unloading, and what each miss says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.core.errors import ModelNotFound, ModelUnloaded, NotReady
from app.core.memory import plan_for
from app.repository import layout
from app.repository.registry import Registry
from tests.app.helpers import build_tiny_model


def put(root: Path, model: str, version: int) -> None:
    folder = root / model / str(version)
    folder.mkdir(parents=True)
    build_tiny_model(folder / "model.onnx", version=f"{model}-{version}")


def registry(settings: Settings, root: Path, default: str) -> Registry:
    return Registry(settings, plan_for(settings), layout.Scanner(root), default)


def test_lookups_and_misses(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    put(tmp_path, "pets", 1)
    put(tmp_path, "cars", 3)
    models = registry(make_settings(model_path=None, model_repository=tmp_path), tmp_path, "pets")

    async def main() -> None:
        with pytest.raises(NotReady, match="the models are loading"):
            models.resolve()
        await models.start()
        assert (models.resolve().name, models.resolve().version) == ("pets", "1")
        assert models.resolve("cars") is models.resolve("cars", "3")
        assert models.served_names() == {"cars": ["3"], "pets": ["1"]}
        with pytest.raises(ModelNotFound, match=r"model 'cars' has no version '9' loaded; it serves 3"):
            models.resolve("cars", "9")
        with pytest.raises(
            ModelNotFound, match=r"unknown model 'boats'; this server serves cars \(3\), pets \(1\)"
        ):
            models.resolve("boats")
        await models.stop()

    asyncio.run(main())


def test_a_new_version_serves_while_the_held_one_finishes(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    put(tmp_path, "pets", 1)
    models = registry(make_settings(model_path=None, model_repository=tmp_path), tmp_path, "pets")

    async def main() -> None:
        await models.start()
        old = models.resolve()
        with old.use():
            put(tmp_path, "pets", 2)
            await models.poll()
            new = models.resolve()
            assert new.version == "2" and new is not old  # the latest version only (the default policy)
            assert models.versions_of("pets") == ["2"]
            assert old.retired and old.in_flight == 1  # retired, not closed: a request holds it
        await asyncio.sleep(0)
        assert old.in_flight == 0
        await models.stop()

    asyncio.run(main())


def test_unloading_the_default_model_makes_it_unready_until_loaded_again(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    put(tmp_path, "pets", 1)
    models = registry(make_settings(model_path=None, model_repository=tmp_path), tmp_path, "pets")

    async def main() -> None:
        await models.start()
        entries = await models.unload("pets")
        assert [(e.name, e.state) for e in entries] == [("pets", "UNAVAILABLE")]
        with pytest.raises(ModelUnloaded, match="was unloaded"):
            models.resolve()
        with pytest.raises(ModelNotFound, match="unknown model 'cats'"):
            await models.unload("cats")
        assert await models.load("pets") == []
        assert models.resolve().version == "1"
        await models.stop()

    asyncio.run(main())
