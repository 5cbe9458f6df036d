"""The serving process's moving parts and their life cycle: thread pool, result store, memory plan
(app/memory.py), admission with its lanes and refusal pacer (app/admission.py), engine, batcher.
The app starts answering at once (/healthz); the model loads and warms up in the
background and /readyz turns 200 when it is done. A model that fails to load makes /healthz 503
too, so an orchestrator restarts the process instead of leaving it half alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, ParamSpec, TypeVar

from app.admission import Admission, RefusalPacer
from app.batcher import Batcher
from app.config import Settings
from app.engine import Engine
from app.errors import NotReady
from app.memory import MemoryPlan, plan_for, return_large_frees_to_the_os
from app.store import MemoryResultStore, ResultStore

logger = logging.getLogger("ninserve")

P = ParamSpec("P")
T = TypeVar("T")
State = Literal["starting", "loading", "ready", "failed", "stopped"]


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state: State = "starting"
        self.error: str | None = None
        self.engine: Engine | None = None
        self.batcher: Batcher | None = None
        self._store: ResultStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._admission: Admission | None = None
        self.plan: MemoryPlan = plan_for(settings)  # re-planned with the model's native size on load
        self._loading: asyncio.Task[None] | None = None
        # Called with the engine and the not yet started batcher, so no batch runs unobserved
        # (app/metrics.py hooks in here); a hook that raises fails the load like any other error.
        self.on_ready: list[Callable[[Engine, Batcher], None]] = []
        # Called with the error when the model cannot load: `ninserve serve` stops and exits non-zero.
        self.on_failure: list[Callable[[str], None]] = []

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
        s = self.settings
        try:
            engine = await asyncio.to_thread(
                Engine,
                s.model_path,
                device=s.device,
                device_id=s.cuda_device_id,
                intra_op_threads=s.intra_op_threads,
                arena=s.ort_arena,
                shrink_above_images=s.max_batch_size,
            )
            plan = plan_for(s, engine.info.native_size)
            # On CUDA every new batch shape triggers a cuDNN algorithm search: do them all now,
            # not on a client's request. On CPU the smallest and largest batch are enough.
            sizes = (
                range(1, s.max_batch_size + 1) if engine.device == "cuda" else sorted({1, s.max_batch_size})
            )
            await asyncio.to_thread(engine.warmup, tuple(sizes))
            batcher = Batcher(
                engine.run,
                max_batch_size=s.max_batch_size,
                max_wait_s=s.max_batch_wait_s,
                max_queue=s.max_queue,
                concurrency=s.concurrent_batches,
                max_pixels=plan.run_pixels,
                default_timeout_s=s.request_timeout_s,
            )
            for hook in self.on_ready:
                hook(engine, batcher)
            await batcher.start()
        except Exception as exc:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.critical("model failed to load: %s", self.error)
            for on_failure in self.on_failure:
                on_failure(self.error)
            return
        self.engine, self.batcher, self.plan, self.state = engine, batcher, plan, "ready"
        if self._admission is not None:
            self._admission.plan = plan
        logger.info("ready: %s on %s", engine.info.version, engine.provider)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """For tests and embedders: wait until the model is loaded (or failed)."""
        if self._loading is not None:
            await asyncio.wait_for(asyncio.shield(self._loading), timeout)

    async def stop(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.stop()
        if self._store is not None:
            await self._store.close()
        if self._admission is not None:
            self._admission.shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.state = "stopped"

    def ready(self) -> tuple[Engine, Batcher]:
        if self.state != "ready" or self.engine is None or self.batcher is None:
            # The load error names files and library internals: it goes to the log, not to clients.
            why = "the model failed to load" if self.state == "failed" else f"the model is {self.state}"
            raise NotReady(f"not ready: {why}")
        return self.engine, self.batcher

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


def open_store(settings: Settings) -> ResultStore:
    """`memory` (per process) or a redis URL (shared by replicas: app/store_redis.py)."""
    if settings.result_store == "memory":
        return MemoryResultStore(
            max_items=settings.store_max_items, max_bytes=settings.store_max_bytes, ttl_s=settings.store_ttl_s
        )
    from app.store_redis import RedisResultStore  # only when asked for: redis-py is not tiny

    return RedisResultStore.from_settings(settings)
