"""app/repository/registry.py without a server: what a load that never finishes leaves behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.config import Settings
from app.core.memory import plan_for
from app.repository import layout, registry


def test_a_cancelled_load_gives_its_memory_back_and_is_tried_again(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    assert settings.model_path is not None
    path = settings.model_path
    models = registry.Registry(settings, plan_for(settings), lambda: layout.single_file("tiny", path), "tiny")
    started = asyncio.Event()
    real_load = registry.load_version

    async def stuck_load(*args, **kwargs):
        started.set()
        await asyncio.Event().wait()  # a session that never finishes building

    async def main() -> None:
        monkeypatch.setattr(registry, "load_version", stuck_load)
        loading = asyncio.create_task(models.load("tiny"))
        await started.wait()
        assert models.used_bytes > 0  # charged while it loads
        loading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loading
        assert models.used_bytes == 0
        assert [(e.state, e.reason) for e in models.index()] == [("UNAVAILABLE", "the load was cancelled")]
        monkeypatch.setattr(registry, "load_version", real_load)
        assert await models.load("tiny") == []  # not marked failed: the next load loads it
        assert models.used_bytes > 0 and models.resolve("tiny").version
        await models.stop()

    asyncio.run(main())
