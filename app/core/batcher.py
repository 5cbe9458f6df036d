"""Requests -> batches: dynamic micro-batching in front of the engine.

    batcher = Batcher(engine.run, max_batch_size=32, max_wait_s=0.002, max_queue=256)
    await batcher.start()
    result = await batcher.submit(pixels)   # pixels: uint8 [H, W, 3]; any router may call this
    result.scores  # float32 [K];  result.maps  # float32 [K, H/4, W/4]

Requests queue per input shape (images of different sizes cannot share a tensor). The ORT thread
forms the batches itself: it takes the group whose oldest request waited longest and closes the
batch when it is full or `max_wait_s` after that request arrived (a condition variable, no
polling). Full means `max_batch_size` images or `max_pixels` input pixels, whichever comes first:
ONNX Runtime's memory grows with the pixels of a run (~1.6 KB per pixel for NiN), so 32 images at
256x256 run as 32 runs of one (128 MB each), not one run of 4 GB. Requests past their deadline
or cancelled by their caller are dropped before the run.

The event loop only queues and answers. A run's thread takes the next batch the moment its run
returns, before it hands the finished batch's results to the loop, and drains the queue until it
is empty: ORT waits neither for the loop to notice the end of a run nor for the GIL a second
time. (Launched from the loop, the next run started ~5 ms after the last one ended at c=64: the
thread woke to run it while the loop, holding the GIL, built the finished batch's responses, so
ORT idled a fifth of the time; docs/benchmarks.md.) Each future is resolved on its own, on the
loop, and if a batch raises, its items are retried one by one so one bad input fails only itself.

A lone image skips the queue: `try_alone`, called by the decode thread right after it decoded,
runs a batch of one there and then when nothing is queued and no run is in flight (a thread-side
gate counts every ORT run, so there are never more than `concurrency`). At c=1 that saves the
hand-off to the ORT thread and back; under load the queue is never empty and every image takes
the batcher as before.
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


@dataclass(frozen=True, slots=True)
class _Finished:
    """What a run's thread hands to the event loop: each item's result or error, and the runs."""

    outcomes: list[tuple[_Pending, BatchResult | Exception]]
    runs: list[tuple[int, float]]  # (images, seconds) per ORT run: one, or one per item on a retry


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
        # The queue is shared by the event loop (which appends) and the run threads (which take).
        self._lock = threading.Lock()
        self._arrival = threading.Condition(self._lock)
        self._groups: dict[Shape, deque[_Pending]] = {}
        self._queued = 0
        self._runners = 0  # threads draining the queue, at most `concurrency`
        self._in_flight = 0  # batches taken and not yet answered
        self._stopping = False
        # ORT runs in flight in any thread: the runners' batches and try_alone's batches of one.
        self._gate = threading.BoundedSemaphore(concurrency)
        self._buffers = _BufferPool()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.stats = BatcherStats()
        self.on_batch: Callable[[int, float], None] | None = None  # (batch size, compute seconds)
        self.on_queue_wait: Callable[[float], None] | None = None  # (seconds one request waited), per item

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def in_flight(self) -> int:
        """Batches taken from the queue and not yet answered."""
        return self._in_flight

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="ninserve-ort")
        # Start the threads now, not on the first request's path.
        await asyncio.gather(
            *(asyncio.wrap_future(self._executor.submit(time.sleep, 0.01)) for _ in range(self._concurrency))
        )

    async def stop(self) -> None:
        """Fail what is queued (NotReady) and wait for the runs in flight, whose callers get their answers."""
        executor, self._executor = self._executor, None
        with self._lock:
            self._stopping = True
            stranded = [item for group in self._groups.values() for item in group]
            self._groups.clear()
            self._queued = 0
            self._arrival.notify_all()
        for item in stranded:
            if not item.future.done():
                item.future.set_exception(NotReady("the server is shutting down"))
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True)  # the runs' answers are posted before it returns

    async def submit(self, pixels: np.ndarray, *, deadline: float | None = None) -> BatchResult:
        """Queue one uint8 [H, W, 3] image and wait for its scores and maps.

        `deadline` is on `time.monotonic()`'s clock (default: now + default_timeout_s); a request
        still queued then fails with DeadlineExceeded. Raises Overloaded when the queue is full.
        """
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"expected uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}")
        executor, loop = self._executor, self._loop
        if executor is None or loop is None:
            raise NotReady("the batcher is not running")
        if self._queued >= self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(f"the inference queue is full ({self.max_queue} requests); retry shortly")
        now = self._clock()
        item = _Pending(
            pixels, loop.create_future(), now, deadline if deadline is not None else now + self._timeout
        )
        with self._lock:
            self._groups.setdefault(pixels.shape, deque()).append(item)
            self._queued += 1
            spawn = self._runners < self._concurrency
            if spawn:
                self._runners += 1
            else:
                self._arrival.notify()  # a runner waiting for company (max_wait_s) counts it
        if spawn:
            executor.submit(self._drain)
        return await item.future

    def try_alone(self, pixels: np.ndarray, deadline: float) -> Alone | None:
        """Run one uint8 [H, W, 3] image now, in this (decode) thread, when the batcher is idle:
        nothing queued and an ORT run free. None otherwise, or when the batcher is stopped, the
        deadline has passed or the run raised: the caller then `submit`s, which queues, expires
        or reports the failure as for any image. Safe from any thread."""
        if self._executor is None or self._queued or not self._gate.acquire(blocking=False):
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
        self._count_run(1, seconds)
        self.stats.items += 1
        if self.on_queue_wait:
            self.on_queue_wait(0.0)
        return BatchResult(alone.scores, alone.maps, 0.0, seconds * 1000.0, 1)

    def batch_limit(self, shape: Shape) -> int:
        """Images of this shape one run may take: max_batch_size, fewer when max_pixels says so."""
        if self.max_pixels is None:
            return self.max_batch_size
        return max(1, min(self.max_batch_size, self.max_pixels // (shape[0] * shape[1])))

    # --- in a run thread ---

    def _drain(self) -> None:
        """Run batches until the queue is empty. The next batch is taken before the finished
        one's answers go to the loop, so ORT starts it at once and its callers see it gone."""
        try:
            batch = self._take(wait=True)
            while batch is not None:
                finished = self._run(batch)
                batch = self._take(wait=False)
                self._post(self._answer, finished)
                if batch is None:
                    batch = self._take(wait=True)
        except BaseException:
            logger.critical("a batcher run thread stopped", exc_info=True)
            with self._lock:
                self._runners -= 1
            raise

    def _take(self, *, wait: bool) -> list[_Pending] | None:
        """The next batch: the group whose oldest request waited longest, once it is full or its
        window (`max_wait_s`) has closed. `wait=False`: None unless one is ready now. `wait=True`:
        waits out the window; None when the queue is empty, and this thread stops draining."""
        expired: list[tuple[_Pending, float]] = []
        batch: list[_Pending] | None = None
        with self._lock:
            while batch is None:
                if self._stopping or not self._queued:
                    if wait:
                        self._runners -= 1
                    break
                shape, group = min(self._groups.items(), key=lambda kv: kv[1][0].enqueued)
                limit = self.batch_limit(shape)
                if len(group) < limit:
                    remaining = group[0].enqueued + self.max_wait_s - self._clock()
                    if remaining > 0:
                        if not wait:
                            break
                        self._arrival.wait(remaining)
                        continue  # arrivals (or a stop) changed the queue: look again
                taken = [group.popleft() for _ in range(min(len(group), limit))]
                if not group:
                    del self._groups[shape]
                self._queued -= len(taken)
                now = self._clock()
                live = []
                for item in taken:
                    if item.future.done():  # the caller went away (cancelled)
                        continue
                    if item.deadline < now:
                        expired.append((item, now - item.enqueued))
                        continue
                    live.append(item)
                if live:
                    batch = live
                    self._in_flight += 1
        if expired:
            self._post(self._expire, expired)
        return batch

    def _run(self, batch: list[_Pending]) -> _Finished:
        """Stack the batch into a pooled buffer and run it; a batch that raises is run again item
        by item, so one bad input fails only itself."""
        started = self._clock()
        shape, n = batch[0].pixels.shape, len(batch)
        with self._lock:
            buffer = self._buffers.acquire(shape, self.batch_limit(shape))
        try:
            images = np.stack([item.pixels for item in batch], out=buffer[:n])  # [n, H, W, 3]
            with self._gate:
                scores, maps = self._run_fn(images)
        except Exception as exc:
            return self._one_by_one(batch, exc)
        finally:
            with self._lock:
                self._buffers.release(buffer)
        finished = self._clock()
        compute_ms = (finished - started) * 1000.0
        return _Finished(
            [
                (
                    item,
                    BatchResult(
                        scores[i].copy(), maps[i].copy(), (started - item.enqueued) * 1000.0, compute_ms, n
                    ),
                )
                for i, item in enumerate(batch)
            ],
            [(n, finished - started)],
        )

    def _one_by_one(self, batch: list[_Pending], exc: Exception) -> _Finished:
        if len(batch) == 1:
            return _Finished([(batch[0], exc)], [])
        logger.warning("batch of %d failed (%s); retrying its items one by one", len(batch), exc)
        outcomes: list[tuple[_Pending, BatchResult | Exception]] = []
        runs: list[tuple[int, float]] = []
        for item in batch:
            started = self._clock()
            try:
                with self._gate:
                    scores, maps = self._run_fn(item.pixels[None])
            except Exception as item_exc:
                outcomes.append((item, item_exc))
                continue
            seconds = self._clock() - started
            runs.append((1, seconds))
            waited_ms = (started - item.enqueued) * 1000.0
            outcomes.append(
                (item, BatchResult(scores[0].copy(), maps[0].copy(), waited_ms, seconds * 1000.0, 1))
            )
        return _Finished(outcomes, runs)

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    # --- on the event loop ---

    def _answer(self, finished: _Finished) -> None:
        self._in_flight -= 1
        for size, seconds in finished.runs:
            self._count_run(size, seconds)
        for item, outcome in finished.outcomes:
            if isinstance(outcome, Exception):
                self._fail(item, outcome)
                continue
            self.stats.items += 1
            if item.future.done():
                continue
            if self.on_queue_wait:
                self.on_queue_wait(outcome.queue_ms / 1000.0)
            item.future.set_result(outcome)

    def _count_run(self, size: int, seconds: float) -> None:
        self.stats.batches += 1
        self.stats.batch_sizes[size] += 1
        if self.on_batch:
            self.on_batch(size, seconds)

    def _expire(self, expired: list[tuple[_Pending, float]]) -> None:
        for item, waited in expired:
            self.stats.expired += 1
            if not item.future.done():
                item.future.set_exception(
                    DeadlineExceeded(f"request waited {waited * 1000:.0f} ms in the queue")
                )

    def _fail(self, item: _Pending, exc: Exception) -> None:
        self.stats.failed += 1
        logger.error("inference failed for a %s input: %s", item.pixels.shape, exc)
        if not item.future.done():  # ONNX Runtime's text names its kernels and nodes: the log has it
            item.future.set_exception(
                InferenceFailed("inference failed on this input; the server log says why")
            )


def _ms(seconds: float) -> float:
    return seconds * 1000.0
