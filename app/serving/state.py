"""The serving process's moving parts and their life cycle: thread pool, result store, memory plan
(app/core/memory.py), admission with its lanes and refusal pacer (app/core/admission.py), and the model
registry (app/repository/): which models and versions serve, each with its engine and batcher.
The app starts answering at once (/healthz); the models load and warm up in the background and
/readyz turns 200 when the default model serves. A default model that fails to load makes
/healthz 503 too, so an orchestrator restarts the process instead of leaving it half alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, ParamSpec, TypeVar

from app.budget import MemoryPlan, plan_for
from app.config import DEFAULT_MODEL_PATH, INT8_MODEL_PATH, Settings
from app.core.admission import Admission, RefusalPacer
from app.core.batcher import Batcher
from app.core.engine import Engine
from app.core.errors import NotReady
from app.core.memory import return_large_frees_to_the_os
from app.core.served import Served
from app.core.store import MemoryResultStore, ResultStore
from app.repository import layout
from app.repository.registry import Registry, Scanner

logger = logging.getLogger("ninserve")

P = ParamSpec("P")
T = TypeVar("T")
State = Literal["starting", "loading", "ready", "failed", "stopped"]
BUILTIN_NAME = "nin-cifar10"


class ServingState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state: State = "starting"
        self.error: str | None = None
        self._store: ResultStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._admission: Admission | None = None
        self.plan: MemoryPlan = plan_for(settings)  # re-planned with the model's native size on load
        scanner, default_name = repository_for(settings)
        self.models = Registry(settings, self.plan, scanner, default_name)
        self._loading: asyncio.Task[None] | None = None
        self._polling: asyncio.Task[None] | None = None
        # Called with the error when the default model cannot load: `ninserve serve` exits non-zero.
        self.on_failure: list[Callable[[str], None]] = []

    @property
    def on_load(self) -> list[Callable[[Engine, Batcher], None]]:
        """Hooks called with every version's engine and not yet started batcher (app/http/metrics.py)."""
        return self.models.on_load

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.settings.decode_threads, thread_name_prefix="ninserve-io")
        self._store = open_store(self.settings)
        return_large_frees_to_the_os()
        self._admission = Admission(
            self.plan,
            in_pool=self.in_pool,
            # Queued images plus the batches in flight: the queue bound, enforced before decoding.
            max_images=self.settings.max_queue
            + self.settings.max_batch_size * self.settings.concurrent_batches,
            decode_queue=self.settings.decode_queue,
            render_threads=self.settings.render_threads,
            render_queue=self.settings.render_queue,
            timeout_s=self.settings.request_timeout_s,
            pacer=RefusalPacer(self.settings.shed_rate, self.settings.shed_hold_s),
        )
        logger.info("memory budget %d MB: %s", self.settings.memory_budget_mb, self.plan.describe())
        if self.settings.workers > 1 and self.settings.result_store == "memory":
            logger.warning(
                "memory result store with %d workers: a GET may reach a worker that does "
                "not hold the result; use NINSERVE_RESULT_STORE=redis://...",
                self.settings.workers,
            )
        self.state = "loading"
        self._loading = asyncio.create_task(self._load(), name="ninserve-load")

    async def _load(self) -> None:
        await self.models.start()
        if (error := self.models.default_error()) is not None:
            self.state, self.error = "failed", error
            logger.critical("model failed to load: %s (model %s)", error, self.models.default_name)
            for on_failure in self.on_failure:
                on_failure(error)
            return
        self.state = "ready"
        engine, _ = self.ready()
        logger.info("ready: %s version %s on %s", engine.info.name, engine.info.version, engine.provider)
        if self.settings.repository_poll_s > 0:
            self._polling = asyncio.create_task(self._poll(), name="ninserve-repository-poll")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_s)
            try:
                await self.models.poll()
            except Exception:  # a bad pass must not end polling; the index shows what failed
                logger.exception("repository poll failed")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """For tests and embedders: wait until the models are loaded (or failed)."""
        if self._loading is not None:
            await asyncio.wait_for(asyncio.shield(self._loading), timeout)

    async def stop(self) -> None:
        for task in (self._loading, self._polling):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.models.stop()
        if self._store is not None:
            await self._store.close()
        if self._admission is not None:
            self._admission.shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.state = "stopped"

    def model(self, name: str | None = None, version: str | None = None) -> Served:
        """The version a request runs on (the default model's latest when unnamed)."""
        if self.state != "ready" and name is None:
            self.ready()
        return self.models.resolve(name, version)

    def ready(self) -> tuple[Engine, Batcher]:
        """The default model's engine and batcher; NotReady while it is not serving."""
        if self.state != "ready":
            # The load error names files and library internals: it goes to the log, not to clients.
            why = "the model failed to load" if self.state == "failed" else f"the model is {self.state}"
            raise NotReady(f"not ready: {why}")
        served = self.models.resolve()
        return served.engine, served.batcher

    @property
    def engine(self) -> Engine | None:
        """The default model's serving engine, if any."""
        served = self._default()
        return served.engine if served is not None else None

    @property
    def batcher(self) -> Batcher | None:
        served = self._default()
        return served.batcher if served is not None else None

    def _default(self) -> Served | None:
        try:
            return self.models.resolve()
        except Exception:
            return None

    @property
    def store(self) -> ResultStore:
        if self._store is None:
            raise NotReady("not ready: the result store is not open")
        return self._store

    @property
    def admission(self) -> Admission:
        if self._admission is None:
            raise NotReady("not ready: the server is not started")
        return self._admission

    async def in_pool(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run CPU-bound work (decode, PNG encode) in the I/O pool, off the event loop."""
        if self._pool is None:
            raise NotReady("not ready: the server is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))


def repository_for(settings: Settings) -> tuple[Scanner, str]:
    """How to read the repository these settings name, and the default model's name."""
    if settings.model_repository is not None:
        scanner = layout.Scanner(settings.model_repository)  # caches config.json and non-model folders
        found = scanner().models
        return scanner, settings.model_name or (min(found) if found else BUILTIN_NAME)
    if settings.model_path is not None:
        path, name = settings.model_path, settings.model_name or settings.model_path.stem
        return (lambda: layout.single_file(name, path)), name
    name = settings.model_name or BUILTIN_NAME
    return (lambda: layout.builtin(name, DEFAULT_MODEL_PATH, INT8_MODEL_PATH)), name


def open_store(settings: Settings) -> ResultStore:
    """`memory` (per process) or a redis URL (shared by replicas: app/core/store_redis.py)."""
    if settings.result_store == "memory":
        return MemoryResultStore(
            max_items=settings.store_max_items, max_bytes=settings.store_max_bytes, ttl_s=settings.store_ttl_s
        )
    from app.core.store_redis import RedisResultStore  # only when asked for: redis-py is not tiny

    return RedisResultStore.from_settings(settings)
