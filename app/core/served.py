"""A loaded model version as the request path holds it.

A request takes a `Served` from the registry (a dict lookup) and holds it with `use()` until its
answer is built, so it finishes on the version it started on even if a newer one is swapped in
meanwhile. A version swapped out or unloaded is *retired*: no new request can find it, and it is
closed (batcher stopped, session released) once the requests holding it are done. `use()` is a
plain counter on the event loop thread: no lock, nothing awaited.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from app.core.batcher import Batcher
from app.core.engine import Engine, ModelInfo

logger = logging.getLogger("ninserve")


@dataclass(eq=False)
class Served:
    engine: Engine
    batcher: Batcher
    precision: str  # the variant loaded: fp32 or int8
    memory: int  # bytes charged to the memory budget while loaded
    held: int = 0  # RSS growth measured over its load and warm-up
    in_flight: int = 0
    retired: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @property
    def info(self) -> ModelInfo:
        return self.engine.info

    @property
    def name(self) -> str:
        return self.engine.info.name

    @property
    def version(self) -> str:
        return self.engine.info.version

    def use(self) -> Served:
        """Hold this version for one request (its decode, queue, run and result):
        `with served.use():` (a plain __enter__/__exit__, cheaper than a generator)."""
        return self

    def __enter__(self) -> Served:
        self.in_flight += 1
        self._idle.clear()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()

    async def retire(self, drain_s: float) -> None:
        """Wait for the requests holding this version (at most `drain_s`), then close it."""
        self.retired = True
        try:
            await asyncio.wait_for(self._idle.wait(), drain_s)
        except TimeoutError:
            logger.warning(
                "model %s version %s: %d requests still running after %.0f s; closing it",
                self.name,
                self.version,
                self.in_flight,
                drain_s,
            )
        await self.batcher.stop()
