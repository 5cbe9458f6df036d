"""Admission: price a request before any expensive work, and refuse early what cannot be served.

    with await admission.enter(images=1):          # 503 (paced) when max_queue requests are in
        decoded = await admission.decode(data, size, deadline=..., max_pixels=..., preview_size=...)
        admission.check_deadline(deadline, "queueing")
        result = await batcher.submit(decoded.pixels, deadline=deadline)
    png = await admission.render(render_cost(512, overlay=True, cells=10), grid_png, ...)

Three things keep cheap requests fast when others are expensive (docs/reliability.md):
  * a count of admitted images (decoding, queued or running), checked before the body is decoded,
    so a refused request costs a header read, never a decode;
  * decodes priced from the header (app/core/memory.py): PNG thumbnails decode on the event loop
    (cheaper than a hand-off), small ones share the I/O pool, large ones take one `Lane` thread of
    their own with a bounded wait, and what can never fit the memory budget is refused with 413;
  * heatmap rendering runs in its own `Lane`, so PNG encoding cannot occupy the pool that
    classification decodes in.
Deadlines are checked before each stage: admission, decode, queueing (the batcher checks again
before the run). Nothing here knows HTTP; errors are app/core/errors.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import numpy as np

from app.core.decode import DecodedImage, decode_image
from app.core.errors import DeadlineExceeded, ImageTooLarge, Overloaded, PayloadTooLarge, TooManyFiles
from app.core.memory import MemoryPlan, MiB, decode_cost, quick_png_size

# A PNG thumbnail (at most 64x64 pixels in at most 32 KB and a few chunks) decodes in 40-330 us,
# about what a hand-off to the pool and back costs (~55 us of CPU and a thread wake-up): it is
# decoded on the event loop. Not other formats: a 32 KB JPEG can be 1024x1024 and take 2 ms.
INLINE_DECODE_PIXELS = 64 * 64
INLINE_DECODE_BYTES = 32 * 1024

P = ParamSpec("P")
T = TypeVar("T")
PoolRunner = Callable[..., Awaitable[Any]]  # ServingState.in_pool


def decodes_inline(data: bytes) -> bool:
    """A PNG thumbnail: cheaper to decode on the event loop than to hand to the pool."""
    if len(data) > INLINE_DECODE_BYTES:
        return False
    size = quick_png_size(data)
    return size is not None and size[0] * size[1] <= INLINE_DECODE_PIXELS


def check_deadline(deadline: float, stage: str, clock: Callable[[], float] = time.monotonic) -> None:
    """DeadlineExceeded (503) when `deadline` has passed: a stage not worth starting any more."""
    late = clock() - deadline
    if late > 0:
        raise DeadlineExceeded(f"the request's deadline passed {late * 1000:.0f} ms before {stage}")


class RefusalPacer:
    """Answers up to `rate` refusals a second at once; beyond that, holds each one `hold_s`
    (Retry-After) before it is answered, at most `max_held` at a time.

    Clients that retry at once and ignore Retry-After otherwise turn the event loop into a 503
    factory: 512 of them cut the 32x32 goodput from 374 to 119 req/s (docs/reliability.md),
    although no refused request was decoded. Held, a refusal costs a timer, not CPU.
    """

    def __init__(
        self, rate: float, hold_s: float, max_held: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.hold_s, self.max_held, self._clock = rate, hold_s, max_held, clock
        self._tokens, self._last = rate, clock()
        self.holding = 0
        self.held = 0  # refusals that were held (a counter)

    async def pace(self) -> None:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1 or self.holding >= self.max_held or self.hold_s <= 0:
            self._tokens = max(0.0, self._tokens - 1)
            return
        self.holding += 1
        self.held += 1
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.holding -= 1


class Lane:
    """Work of one kind on its own threads: at most `threads` run, `max_waiting` wait (FIFO) for
    a thread until their deadline; beyond that the lane refuses at once (Overloaded, 503)."""

    def __init__(
        self,
        name: str,
        *,
        threads: int,
        max_waiting: int,
        pacer: RefusalPacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.threads, self.max_waiting, self._clock = name, threads, max_waiting, clock
        self._pacer = pacer
        self._executor = ThreadPoolExecutor(
            threads, thread_name_prefix=f"ninserve-{name}", initializer=_yield_cpu_to_classification
        )
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.refused = 0  # full lane: 503
        self.expired = 0  # deadline passed while waiting

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def run(self, deadline: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self._running >= self.threads and len(self._waiters) >= self.max_waiting:
            self.refused += 1
            if self._pacer is not None:
                await self._pacer.pace()
            raise Overloaded(
                f"the {self.name} lane is full ({self._running} running, {len(self._waiters)} waiting); "
                "retry shortly"
            )
        if self._running >= self.threads or self._waiters:
            await self._wait_for_thread(deadline)
        else:
            self._running += 1
        try:
            check_deadline(deadline, self.name, self._clock)
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except BaseException:
            self._release()
            raise
        # The thread is released when the work ends, not when an impatient caller gives up on it.
        future.add_done_callback(lambda _: self._release())
        return await asyncio.shield(future)

    async def _wait_for_thread(self, deadline: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), max(0.0, deadline - self._clock()))
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # handed a thread just as time ran out
                self._release()
            self.expired += 1
            raise DeadlineExceeded(
                f"the request's deadline passed while waiting for the {self.name} lane"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _release(self) -> None:
        """A thread is free: hand it to the first waiter still waiting, else count it free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the thread passes on; _running stays the same
                return
        self._running -= 1

    def shutdown(self) -> None:
        for waiter in self._waiters:
            waiter.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)


def _yield_cpu_to_classification() -> None:
    """Lane threads run at a lower CPU priority (nice +10, Linux threads have their own): when
    the cores are short, the event loop and ONNX Runtime go first, the heavy work waits."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class Ticket:
    """Admitted images, counted until the request is done with the queue (a context manager)."""

    __slots__ = ("_admission", "_images")

    def __init__(self, admission: Admission, images: int) -> None:
        self._admission, self._images = admission, images

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        self._admission.admitted -= self._images
        self._images = 0


class Admission:
    def __init__(
        self,
        plan: MemoryPlan,
        *,
        in_pool: PoolRunner,
        max_images: int,
        decode_queue: int,
        render_threads: int,
        render_queue: int,
        timeout_s: float,
        pacer: RefusalPacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan, self.max_images, self._in_pool, self._clock = plan, max_images, in_pool, clock
        self.timeout_s = timeout_s  # a render's deadline, counted from its arrival
        self.admitted = 0  # images past admission and not yet answered
        self.refused = 0
        self.pacer = pacer
        self.large_decodes = Lane(
            "large-decode", threads=1, max_waiting=decode_queue, pacer=pacer, clock=clock
        )
        self.renders = Lane(
            "render", threads=render_threads, max_waiting=render_queue, pacer=pacer, clock=clock
        )

    def admit(self, images: int = 1) -> Ticket:
        """Count `images` in, or refuse the whole request before anything is decoded (503);
        a request with more images than the server ever takes at once is 413, not 503."""
        if images > self.max_images:
            raise TooManyFiles(
                f"{images} images in one request; this server takes at most {self.max_images} at once"
            )
        if self.admitted + images > self.max_images:
            self.refused += 1
            raise Overloaded(
                f"the inference queue is full ({self.admitted} of {self.max_images} images in "
                f"progress, {images} more sent); retry shortly"
            )
        self.admitted += images
        return Ticket(self, images)

    async def enter(self, images: int = 1) -> Ticket:
        """`admit`, with a refusal paced (RefusalPacer) before it is raised."""
        try:
            return self.admit(images)
        except Overloaded:
            if self.pacer is not None:
                await self.pacer.pace()
            raise

    def price(self, data: bytes, size: int, *, max_pixels: int) -> int:
        """Bytes decoding will hold (header only); 413 for what the decode budget can never hold."""
        cost = decode_cost(data, size, max_pixels)
        if cost > self.most_one_decode:
            raise ImageTooLarge(
                f"decoding this image needs about {cost / MiB:.0f} MB, more than the "
                f"{self.most_one_decode / MiB:.0f} MB the memory budget gives one decode",
                cost_bytes=cost,
            )
        return cost

    def price_json(self, cost: int) -> int:
        """A JSON body priced by its structure (app/http/v2/price.py: json_cost): 413 for one whose
        parse the decode budget can never hold, before a byte of it is parsed."""
        if cost > self.most_one_decode:
            raise PayloadTooLarge(
                f"parsing this JSON body needs about {cost / MiB:.0f} MB, more than the "
                f"{self.most_one_decode / MiB:.0f} MB the memory budget gives one decode: "
                "send fewer or shorter values, or the tensors as binary data",
                cost_bytes=cost,
            )
        return cost

    @property
    def most_one_decode(self) -> int:
        """The largest price one decode or parse may have: above it, no wait ever makes room."""
        return max(self.plan.large_decode, self.plan.small_decode)

    async def decode(
        self,
        data: bytes,
        size: int,
        *,
        deadline: float,
        max_pixels: int,
        preview_size: int,
        keep_bytes: int = 0,
        cost: int | None = None,
    ) -> DecodedImage:
        """Price, then decode: PNG thumbnails on the event loop, small images in the shared pool,
        large ones in their own lane. The decode stops at its next block of input once `deadline`
        passes (app/core/decode.py)."""
        if cost is None:
            cost = self.price(data, size, max_pixels=max_pixels)
        options = {"max_pixels": max_pixels, "preview_size": preview_size, "keep_bytes": keep_bytes}
        if decodes_inline(data):
            check_deadline(deadline, "decoding", self._clock)
            return decode_image(data, size, deadline=deadline, **options)
        return await self.run_priced(cost, deadline, decode_image, data, size, deadline=deadline, **options)

    async def decode_then(
        self,
        data: bytes,
        size: int,
        then: Callable[[np.ndarray], T | None],
        *,
        deadline: float,
        max_pixels: int,
        preview_size: int,
        keep_bytes: int = 0,
        cost: int | None = None,
    ) -> tuple[DecodedImage, T | None]:
        """`decode`, and for an image decoded in the shared pool `then(pixels)` in the same thread
        right after (the batcher's `try_alone`): one hand-off to a thread and back instead of two.
        Inline and large-lane decodes get None: the event loop never runs a model, and the lane's
        threads run at a low priority."""
        if cost is None:
            cost = self.price(data, size, max_pixels=max_pixels)
        options = {"max_pixels": max_pixels, "preview_size": preview_size, "keep_bytes": keep_bytes}
        if decodes_inline(data) or cost > self.plan.small_decode:
            return await self.decode(data, size, deadline=deadline, cost=cost, **options), None

        def both() -> tuple[DecodedImage, T | None]:
            decoded = decode_image(data, size, deadline=deadline, **options)
            return decoded, then(decoded.pixels)

        check_deadline(deadline, "decoding", self._clock)
        return await self._in_pool(both)

    async def run_priced(
        self, cost: int, deadline: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Work priced at `cost` bytes (a decode, a JSON parse): up to `small_decode` in the shared
        pool, more in the large-decode lane, one at a time. Price it first (`price`, `price_json`)."""
        check_deadline(deadline, "decoding", self._clock)
        if cost <= self.plan.small_decode:
            return await self._in_pool(fn, *args, **kwargs)
        return await self.large_decodes.run(deadline, fn, *args, **kwargs)

    async def render(self, cost: int, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """A heatmap PNG in the render lane: 413 if it can never fit, 503 when the lane is full."""
        deadline = self._clock() + self.timeout_s
        each = self.plan.render // self.renders.threads
        if cost > each:
            raise ImageTooLarge(
                f"rendering this picture needs about {cost / MiB:.0f} MB, more than the "
                f"{each / MiB:.0f} MB the memory budget gives one render: ask for a smaller size",
                cost_bytes=cost,
            )
        return await self.renders.run(deadline, fn, *args, **kwargs)

    def check_deadline(self, deadline: float, stage: str) -> None:
        check_deadline(deadline, stage, self._clock)

    def shutdown(self) -> None:
        self.large_decodes.shutdown()
        self.renders.shutdown()
