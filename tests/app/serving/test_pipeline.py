"""app/serving/pipeline.py: resolution rules, stage timings, and `run_images` for whole and per-image
requests."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from app.core.errors import DeadlineExceeded, InvalidImage, InvalidParameter, NinServeError, Overloaded
from app.serving.pipeline import STAGES, Ran, Timings, resolve_resolution, run_images


def test_resolution_rules() -> None:
    assert resolve_resolution(None, 32, 256) == 32
    assert resolve_resolution(128, 32, 256) == 128
    for bad in (28, 30, 260, 258):
        with pytest.raises(InvalidParameter, match="multiple of 4"):
            resolve_resolution(bad, 32, 256)


def test_timings_header_lists_every_stage() -> None:
    timings = Timings()
    timings.lap("decode", timings.start)
    timings.finish()
    header = timings.header()
    assert [part.split(";")[0] for part in header.split(", ")] == list(STAGES)
    assert timings.ms["total"] >= timings.ms["decode"] >= 0


class StuckBatcher:
    """Image 1 fails at once; with `stuck`, the others wait forever unless withdrawn (cancelled)."""

    queued, max_queue = 0, 100

    def __init__(self, *, stuck: bool = True) -> None:
        self.stuck = stuck
        self.withdrawn = 0

    async def submit(self, pixels: np.ndarray, *, deadline: float) -> int:
        if pixels[0, 0, 0] == 1:
            raise DeadlineExceeded("image 1 waited too long")
        if not self.stuck:
            return int(pixels[0, 0, 0])
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.withdrawn += 1
            raise
        return 0


class CountingAdmission:
    """Admits everything and remembers how many images each request asked for."""

    def __init__(self) -> None:
        self.entered: list[int] = []

    async def enter(self, images: int) -> contextlib.nullcontext[None]:
        self.entered.append(images)
        return contextlib.nullcontext()


def runtime(batcher: StuckBatcher) -> Any:
    settings = SimpleNamespace(max_image_pixels=10**8)
    served = SimpleNamespace(batcher=batcher)  # the version a request holds (app/repository/)
    return SimpleNamespace(
        ready=lambda: (None, batcher), model=lambda: served, admission=CountingAdmission(), settings=settings
    )


def pixels(*values: int) -> list[np.ndarray]:
    return [np.full((32, 32, 3), v, np.uint8) for v in values]


def test_whole_request_one_failed_image_withdraws_the_others() -> None:
    batcher = StuckBatcher()
    rt = runtime(batcher)

    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            run = run_images(rt, pixels(0, 1, 2, 3), 32, deadline=0.0, preview_size=32, whole=True)
            await asyncio.wait_for(run, 5)

    asyncio.run(main())
    assert batcher.withdrawn == 3 and rt.admission.entered == [4]


def test_whole_request_larger_than_the_free_queue_is_refused_before_queueing() -> None:
    batcher = StuckBatcher()
    batcher.queued, batcher.max_queue = 98, 100
    with pytest.raises(Overloaded, match="98 of 100 queued"):
        run = run_images(runtime(batcher), pixels(0, 0, 0), 32, deadline=0.0, preview_size=32, whole=True)
        asyncio.run(run)
    assert batcher.withdrawn == 0


def test_per_image_errors_stay_in_place_and_only_live_images_are_admitted() -> None:
    rt = runtime(StuckBatcher(stuck=False))
    unread = InvalidImage("a part that could not be read")
    images: list[Any] = [pixels(2)[0], unread, pixels(1)[0], pixels(3)[0]]
    out = asyncio.run(run_images(rt, images, 32, deadline=0.0, preview_size=32))
    outcomes = [o.result if isinstance(o, Ran) else type(o) for o in out]
    assert outcomes == [2, InvalidImage, DeadlineExceeded, 3]
    assert out[1] is unread and rt.admission.entered == [3]
    assert all(isinstance(o, NinServeError) or o.image is None for o in out)  # pixels skip the decode


def test_a_request_of_errors_only_is_never_admitted() -> None:
    rt = runtime(StuckBatcher(stuck=False))
    unread = InvalidImage("empty")
    assert asyncio.run(run_images(rt, [unread], 32, deadline=0.0, preview_size=32)) == [unread]
    assert rt.admission.entered == []
    with pytest.raises(InvalidImage):
        asyncio.run(run_images(rt, [unread], 32, deadline=0.0, preview_size=32, whole=True))
