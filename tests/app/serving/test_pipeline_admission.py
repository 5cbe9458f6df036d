"""app/serving/pipeline.py with a real runtime: nothing is decoded for a refused request, the deadline
is checked before each stage, and a resolution-256 batch runs within the ORT pixel budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from app.config import Settings
from app.core import admission as admission_module
from app.core.errors import DeadlineExceeded, ImageTooLarge, Overloaded
from app.serving.pipeline import classify
from app.serving.state import ServingState
from tests.app.core.test_memory import png_header_only
from tests.app.helpers import png


async def started(settings: Settings) -> ServingState:
    rt = ServingState(settings)
    await rt.start()
    await rt.wait_ready(30)
    assert rt.state == "ready", rt.error
    return rt


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every decode the admission layer starts (by the size of its input)."""
    calls: list[int] = []
    real = admission_module.decode_image

    def spy(data: bytes, *args, **kwargs):
        calls.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(admission_module, "decode_image", spy)
    return calls


def test_a_full_server_refuses_before_decoding(make_settings: Callable[..., Settings], decodes) -> None:
    async def main() -> None:
        rt = await started(make_settings(max_queue=4, max_batch_size=4))
        try:
            rt.admission.admitted = rt.admission.max_images  # every slot taken
            with pytest.raises(Overloaded, match="queue is full"):
                await classify(rt, png(1))
            rt.admission.admitted = 0
            out = await classify(rt, png(1))
            assert out.payload["top"]
        finally:
            await rt.stop()

    asyncio.run(main())
    assert len(decodes) == 1  # only the admitted request


def test_an_image_the_budget_cannot_decode_is_413_before_decoding(make_settings, decodes) -> None:
    async def main() -> None:
        rt = await started(make_settings())
        try:
            with pytest.raises(ImageTooLarge, match="memory budget"):
                await classify(rt, png_header_only(4000, 4000, "RGBA"))
            assert rt.admission.admitted == 0
        finally:
            await rt.stop()

    asyncio.run(main())
    assert decodes == []


def test_the_deadline_is_checked_before_decode_and_before_queueing(
    make_settings, decodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        rt = await started(make_settings())
        submitted: list[object] = []
        real_submit = rt.batcher.submit

        async def submit(pixels, **kwargs):
            submitted.append(pixels)
            return await real_submit(pixels, **kwargs)

        monkeypatch.setattr(rt.batcher, "submit", submit)
        try:
            with pytest.raises(DeadlineExceeded, match="before decoding"):
                await classify(rt, png(1), deadline=time.monotonic() - 0.001)
            assert decodes == [] and submitted == []
            # A decode that ends after the deadline: the image is not queued for ORT.
            real_decode = admission_module.decode_image

            def slow_decode(*args, **kwargs):
                decoded = real_decode(*args, **kwargs)
                time.sleep(0.1)
                return decoded

            monkeypatch.setattr(admission_module, "decode_image", slow_decode)
            with pytest.raises(DeadlineExceeded, match="before queueing"):
                await classify(rt, png(2), deadline=time.monotonic() + 0.05)
            assert submitted == []
            assert rt.admission.admitted == 0
        finally:
            await rt.stop()

    asyncio.run(main())


def test_resolution_256_images_run_within_the_pixel_budget(make_settings) -> None:
    async def main() -> dict[int, int]:
        rt = await started(make_settings(max_batch_size=32, max_batch_wait_ms=50.0))
        try:
            assert rt.batcher.max_pixels == rt.plan.run_pixels == 256 * 256
            assert rt.batcher.batch_limit((256, 256, 3)) == 1
            assert rt.batcher.batch_limit((128, 128, 3)) == 4
            assert rt.batcher.batch_limit((32, 32, 3)) == 32
            outs = await asyncio.gather(*(classify(rt, png(i), resolution=256) for i in range(6)))
            assert all(out.payload["batch_size"] == 1 for out in outs)
            outs = await asyncio.gather(*(classify(rt, png(i), resolution=128) for i in range(8)))
            assert max(out.payload["batch_size"] for out in outs) <= 4
            return dict(rt.batcher.stats.batch_sizes)
        finally:
            await rt.stop()

    sizes = asyncio.run(main())
    assert max(sizes) <= 4 and sum(n * count for n, count in sizes.items()) == 14


def test_a_lone_jpeg_runs_in_its_decode_thread_and_company_goes_through_the_batcher(
    make_settings: Callable[..., Settings],
) -> None:
    """The only image in the server skips the batcher's queue (one thread hand-off instead of
    two); with another image admitted, it is submitted as before. Both answer the same scores."""
    from tests.app.helpers import encode, pattern

    photo = encode(pattern(1, 96), "JPEG")  # a JPEG decodes in the pool, never inline

    async def main() -> tuple:
        rt = await started(make_settings())
        try:
            batcher = rt.model().batcher
            alone = await classify(rt, photo)
            runs_alone = batcher.stats.batches
            rt.admission.admitted += 1  # someone else's image is in flight
            queued = await classify(rt, photo)
            rt.admission.admitted -= 1
            return alone, queued, runs_alone, batcher.stats.batches
        finally:
            await rt.stop()

    alone, queued, runs_alone, runs = asyncio.run(main())
    assert alone.payload["scores"] == queued.payload["scores"]
    assert alone.payload["timing_ms"]["queue"] == 0.0 and alone.payload["batch_size"] == 1
    assert queued.payload["timing_ms"]["queue"] > 0.0
    assert runs_alone >= 1 and runs == runs_alone + 1  # counted as batches either way
