"""Requests -> batches: dynamic micro-batching in front of the engine.

    batcher = Batcher(engine.run, max_batch_size=32, max_wait_s=0.002, max_queue=256)
    await batcher.start()
    result = await batcher.submit(pixels)   # pixels: uint8 [H, W, 3]; any router may call this
    result.scores  # float32 [K];  result.maps  # float32 [K, H/4, W/4]

Requests queue per input shape (images of different sizes cannot share a tensor). One worker
task forms a batch from the group whose oldest request waited longest: it closes the batch when
it is full or `max_wait_s` after that request arrived, waking on arrivals (an asyncio.Event, no
polling). Full means `max_batch_size` images or `max_pixels` input pixels, whichever comes first:
ONNX Runtime's memory grows with the pixels of a run (~1.6 KB per pixel for NiN), so 32 images at
256x256 run as 32 runs of one (128 MB each), not one run of 4 GB. Requests past their deadline
or cancelled by their caller are dropped before the run; the run happens in a thread, off the
event loop. A finished batch frees its run slot before its callers resume, so the next batch is
already in ORT while they build their responses (CPU busy 87 -> 92 % under load,
docs/benchmarks.md). Each future is resolved on its own, and if a batch
raises, its items are retried one by one so one bad input fails only itself.

A lone image skips the queue: `try_alone`, called by the decode thread right after it decoded,
runs a batch of one there and then when nothing is queued and no run is in flight (a thread-side
gate counts every ORT run, so there are never more than `concurrency`). At c=1 that saves the
hand-off to the ORT thread and back and the worker's wake-up; under load the queue is never empty
and every image takes the batcher as before.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.core.errors import DeadlineExceeded, InferenceFailed, NotReady, Overloaded

logger = logging.getLogger("ninserve")

RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # uint8 [N,H,W,3] -> scores, maps
Shape = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class BatchResult:
    scores: np.ndarray  # float32 [K]
    maps: np.ndarray  # float32 [K, h, w], owned by this result (not a view of the batch)
    queue_ms: float  # submit -> batch run started
    compute_ms: float  # the batch's ORT run (stacking included)
    batch_size: int  # how many requests shared the run


@dataclass
class BatcherStats:
    """Counters for metrics: batches run, items served, and why others were not."""

    batches: int = 0
    items: int = 0
    expired: int = 0  # past deadline before their batch ran
    rejected: int = 0  # queue full
    failed: int = 0  # the engine raised even when run alone
    batch_sizes: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Launched:
    started: float  # on the batcher's clock
    outputs: asyncio.Future[tuple[np.ndarray, np.ndarray]]  # (scores, maps) from the ORT thread


@dataclass(frozen=True, slots=True)
class Alone:
    """A batch of one run by `try_alone` in the caller's thread; `took_alone` makes it a result."""

    scores: np.ndarray  # float32 [K], owned
    maps: np.ndarray  # float32 [K, h, w], owned
    started: float  # on the batcher's clock
    finished: float


@dataclass(slots=True)
class _Pending:
    pixels: np.ndarray
    future: asyncio.Future[BatchResult]
    enqueued: float
    deadline: float


class _BufferPool:
    """Reusable [max_batch, H, W, 3] input buffers per shape, so batches are stacked in place."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes, self._bytes = max_bytes, 0
        self._free: dict[Shape, list[np.ndarray]] = {}

    def acquire(self, shape: Shape, rows: int) -> np.ndarray:
        free = self._free.get(shape)
        if free:
            self._bytes -= free[-1].nbytes
            return free.pop()
        return np.empty((rows, *shape), dtype=np.uint8)

    def release(self, buffer: np.ndarray) -> None:
        if self._bytes + buffer.nbytes <= self._max_bytes:
            self._free.setdefault(buffer.shape[1:], []).append(buffer)
            self._bytes += buffer.nbytes


class Batcher:
    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        concurrency: int = 1,
        max_pixels: int | None = None,
        default_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_fn = run
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._concurrency, self._timeout, self._clock = concurrency, default_timeout_s, clock
        self.max_pixels = max_pixels  # input pixels per run; None: only max_batch_size counts
        self._groups: dict[Shape, deque[_Pending]] = {}
        self._queued = 0
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        # ORT runs in flight in any thread: the executor's batches and try_alone's batches of one.
        self._gate = threading.BoundedSemaphore(concurrency)
        self._buffers = _BufferPool()
        self._running: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.stats = BatcherStats()
        self.on_batch: Callable[[int, float], None] | None = None  # (batch size, compute seconds)
        self.on_queue_wait: Callable[[float], None] | None = None  # (seconds one request waited), per item

    @property
    def queued(self) -> int:
        return self._queued

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="ninserve-ort")
        self._worker = asyncio.create_task(self._loop(), name="ninserve-batcher")
        self._worker.add_done_callback(_log_crash)

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        for group in self._groups.values():
            for item in group:
                if not item.future.done():
                    item.future.set_exception(NotReady("the server is shutting down"))
        self._groups.clear()
        self._queued = 0
        await asyncio.gather(*self._running, return_exceptions=True)
        if self._executor:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, pixels: np.ndarray, *, deadline: float | None = None) -> BatchResult:
        """Queue one uint8 [H, W, 3] image and wait for its scores and maps.

        `deadline` is on `time.monotonic()`'s clock (default: now + default_timeout_s); a request
        still queued then fails with DeadlineExceeded. Raises Overloaded when the queue is full.
        """
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"expected uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}")
        if self._worker is None:
            raise NotReady("the batcher is not running")
        if self._queued >= self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(f"the inference queue is full ({self.max_queue} requests); retry shortly")
        now = self._clock()
        item = _Pending(
            pixels,
            asyncio.get_running_loop().create_future(),
            now,
            deadline if deadline is not None else now + self._timeout,
        )
        self._groups.setdefault(pixels.shape, deque()).append(item)
        self._queued += 1
        self._arrived.set()
        return await item.future

    def try_alone(self, pixels: np.ndarray, deadline: float) -> Alone | None:
        """Run one uint8 [H, W, 3] image now, in this (decode) thread, when the batcher is idle:
        nothing queued and an ORT run free. None otherwise, or when the batcher is stopped, the
        deadline has passed or the run raised: the caller then `submit`s, which queues, expires
        or reports the failure as for any image. Safe from any thread."""
        if self._worker is None or self._queued or not self._gate.acquire(blocking=False):
            return None
        try:
            started = self._clock()
            if self._queued or started > deadline or pixels.dtype != np.uint8 or pixels.ndim != 3:
                return None
            scores, maps = self._run_fn(pixels[None])  # [1, K], [1, K, h, w]
            return Alone(scores[0].copy(), maps[0].copy(), started, self._clock())
        except Exception:  # run again through the queue, which fails it with the usual answer
            return None
        finally:
            self._gate.release()

    def took_alone(self, alone: Alone) -> BatchResult:
        """The result of a `try_alone` run, counted as a batch of one (on the event loop)."""
        seconds = alone.finished - alone.started
        self.stats.batches += 1
        self.stats.items += 1
        self.stats.batch_sizes[1] += 1
        if self.on_batch:
            self.on_batch(1, seconds)
        if self.on_queue_wait:
            self.on_queue_wait(0.0)
        return BatchResult(alone.scores, alone.maps, 0.0, seconds * 1000.0, 1)

    def _gated_run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._gate:
            return self._run_fn(images)

    async def _loop(self) -> None:
        while True:
            # Take a run slot *before* forming the batch: while the previous batch runs,
            # arrivals keep accumulating, which is where batches larger than one come from.
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:  # cancelled: stop() is running
                self._slots.release()
                raise
            try:
                launched = self._launch(batch)
            except Exception as exc:  # the batch could not even be handed over: fail it, go on
                self._slots.release()
                for item in batch:
                    self._fail(item, exc)
                continue
            task = asyncio.create_task(self._run(batch, launched))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self) -> list[_Pending]:
        while True:
            while not self._queued:
                self._arrived.clear()
                await self._arrived.wait()
            shape, group = min(self._groups.items(), key=lambda kv: kv[1][0].enqueued)
            closes_at = group[0].enqueued + self.max_wait_s
            limit = self.batch_limit(shape)
            while len(group) < limit:
                remaining = closes_at - self._clock()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            taken = [group.popleft() for _ in range(min(len(group), limit))]
            if not group:
                del self._groups[shape]
            self._queued -= len(taken)
            live = self._drop_stale(taken)
            if live:
                return live

    def batch_limit(self, shape: Shape) -> int:
        """Images of this shape one run may take: max_batch_size, fewer when max_pixels says so."""
        if self.max_pixels is None:
            return self.max_batch_size
        return max(1, min(self.max_batch_size, self.max_pixels // (shape[0] * shape[1])))

    def _drop_stale(self, items: list[_Pending]) -> list[_Pending]:
        now, live = self._clock(), []
        for item in items:
            if item.future.done():  # the caller went away (cancelled)
                continue
            if item.deadline < now:
                self.stats.expired += 1
                item.future.set_exception(
                    DeadlineExceeded(f"request waited {(now - item.enqueued) * 1000:.0f} ms in the queue")
                )
                continue
            live.append(item)
        return live

    def _launch(self, batch: list[_Pending]) -> _Launched:
        """Stack the batch and hand it to the ORT thread now, not when a task is next scheduled."""
        started = self._clock()
        shape = batch[0].pixels.shape
        buffer = self._buffers.acquire(shape, self.batch_limit(shape))
        try:
            images = np.stack([item.pixels for item in batch], out=buffer[: len(batch)])  # [n, H, W, 3]
            outputs = asyncio.get_running_loop().run_in_executor(self._executor, self._gated_run, images)
        except BaseException:
            self._buffers.release(buffer)
            raise
        outputs.add_done_callback(lambda _: self._buffers.release(buffer))
        return _Launched(started, outputs)

    async def _run(self, batch: list[_Pending], launched: _Launched) -> None:
        try:
            scores, maps = await launched.outputs
        except Exception as exc:
            try:
                await self._run_alone(batch, exc)
            finally:
                self._slots.release()
            return
        except BaseException:
            self._slots.release()
            raise
        # Free the slot first: the loop launches the next batch before this batch's callers
        # resume (their wake-ups queue behind it), so ORT does not idle while they respond.
        self._slots.release()
        self._deliver(batch, launched.started, scores, maps)

    async def _run_alone(self, batch: list[_Pending], exc: Exception) -> None:
        """A failed batch: run its items one by one, so one bad input fails only itself."""
        if len(batch) == 1:
            self._fail(batch[0], exc)
            return
        logger.warning("batch of %d failed (%s); retrying its items one by one", len(batch), exc)
        for item in batch:
            try:
                retry = self._launch([item])
                self._deliver([item], retry.started, *await retry.outputs)
            except Exception as item_exc:
                self._fail(item, item_exc)

    def _deliver(self, batch: list[_Pending], started: float, scores: np.ndarray, maps: np.ndarray) -> None:
        finished = self._clock()
        n = len(batch)
        compute_ms = (finished - started) * 1000.0
        self.stats.batches += 1
        self.stats.items += n
        self.stats.batch_sizes[n] += 1
        if self.on_batch:
            self.on_batch(n, finished - started)
        for i, item in enumerate(batch):
            if not item.future.done():
                waited = started - item.enqueued
                if self.on_queue_wait:
                    self.on_queue_wait(waited)
                item.future.set_result(
                    BatchResult(scores[i].copy(), maps[i].copy(), waited * 1000.0, compute_ms, n)
                )

    def _fail(self, item: _Pending, exc: Exception) -> None:
        self.stats.failed += 1
        logger.error("inference failed for a %s input: %s", item.pixels.shape, exc)
        if not item.future.done():  # ONNX Runtime's text names its kernels and nodes: the log has it
            item.future.set_exception(
                InferenceFailed("inference failed on this input; the server log says why")
            )


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.critical("the batcher stopped: %r", task.exception())
