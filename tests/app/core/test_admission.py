"""app/core/admission.py: lanes with bounded waits, admission before decode, deadlines, paced refusals."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.core import admission as admission_module
from app.core.admission import Admission, Lane, RefusalPacer, check_deadline, decodes_inline
from app.core.errors import DeadlineExceeded, ImageTooLarge, Overloaded, TooManyFiles
from app.core.memory import MemoryPlan, MiB
from tests.app.core.test_memory import png_header_only
from tests.app.helpers import encode, pattern, png, png_chunk

PLAN = MemoryPlan(
    budget=800 * MiB,
    reserve=128 * MiB,
    models=64 * MiB,
    store=64 * MiB,
    run_pixels=65536,
    run_bytes=128 * MiB,
    small_decode=16 * MiB,
    large_decode=256 * MiB,
    render=128 * MiB,
)


def test_a_full_lane_refuses_at_once_and_a_waiter_gets_the_thread_in_order() -> None:
    async def main() -> tuple[list[str], float]:
        lane = Lane("test", threads=1, max_waiting=1)
        gate = threading.Event()
        order: list[str] = []

        def work(name: str) -> str:
            if name == "first":
                gate.wait(5)
            order.append(name)
            return name

        deadline = time.monotonic() + 5
        first = asyncio.create_task(lane.run(deadline, work, "first"))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(lane.run(deadline, work, "second"))
        await asyncio.sleep(0.02)
        assert (lane.running, lane.waiting) == (1, 1)
        started = time.perf_counter()
        with pytest.raises(Overloaded, match="test lane is full"):
            await lane.run(deadline, work, "third")
        refused_in = time.perf_counter() - started
        gate.set()
        assert await first == "first" and await second == "second"
        assert (lane.running, lane.waiting, lane.refused) == (0, 0, 1)
        lane.shutdown()
        return order, refused_in

    order, refused_in = asyncio.run(main())
    assert order == ["first", "second"]
    assert refused_in < 0.05


def test_a_waiter_past_its_deadline_gives_up_and_a_cancelled_caller_keeps_its_thread_until_done() -> None:
    async def main() -> None:
        lane = Lane("test", threads=1, max_waiting=4)
        gate = threading.Event()
        busy = asyncio.create_task(lane.run(time.monotonic() + 5, gate.wait, 5))
        await asyncio.sleep(0.02)
        with pytest.raises(DeadlineExceeded, match="waiting for the test lane"):
            await lane.run(time.monotonic() + 0.05, lambda: None)
        assert lane.expired == 1 and lane.waiting == 0
        busy.cancel()  # the caller goes away; the thread still works until the gate opens
        await asyncio.sleep(0.02)
        assert lane.running == 1
        gate.set()
        await asyncio.sleep(0.05)
        assert lane.running == 0
        assert await lane.run(time.monotonic() + 1, lambda: 42) == 42
        lane.shutdown()

    asyncio.run(main())


def test_deadline_is_checked_before_work_starts() -> None:
    check_deadline(time.monotonic() + 1, "decoding")
    with pytest.raises(DeadlineExceeded, match="before decoding"):
        check_deadline(time.monotonic() - 0.01, "decoding")

    async def main() -> None:
        lane = Lane("test", threads=1, max_waiting=1)
        ran: list[int] = []
        with pytest.raises(DeadlineExceeded):
            await lane.run(time.monotonic() - 1, ran.append, 1)
        assert ran == [] and lane.running == 0
        lane.shutdown()

    asyncio.run(main())


def make_admission(in_pool, **overrides) -> Admission:
    options = dict(max_images=4, decode_queue=0, render_threads=1, render_queue=0, timeout_s=5.0) | overrides
    return Admission(PLAN, in_pool=in_pool, **options)


def test_admission_counts_images_until_the_ticket_is_released() -> None:
    async def no_pool(*args, **kwargs):
        raise AssertionError("not used")

    async def main() -> None:
        admission = make_admission(no_pool)
        with await admission.enter(3):
            assert admission.admitted == 3
            with pytest.raises(Overloaded, match="queue is full"):
                await admission.enter(2)  # a request is admitted whole or not at all
            with await admission.enter(1):
                assert admission.admitted == 4
        assert admission.admitted == 0 and admission.refused == 1
        with pytest.raises(TooManyFiles):  # could never be admitted: 413, not "retry later"
            await admission.enter(5)
        admission.shutdown()

    asyncio.run(main())


def test_thumbnails_decode_inline_small_images_in_the_shared_pool_and_large_ones_their_lane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pooled: list[int] = []
    decoded: list[int] = []

    def fake_decode(data: bytes, size: int, **kwargs):
        decoded.append(len(data))
        return "pixels"

    async def in_pool(fn, *args, **kwargs):
        pooled.append(len(args[0]))
        return fn(*args, **kwargs)

    monkeypatch.setattr(admission_module, "decode_image", fake_decode)
    thumbnail, small, large = png(1), png(1, size=100), png_header_only(6300, 6300, "1")

    async def main() -> None:
        admission = make_admission(in_pool)
        options = {"deadline": time.monotonic() + 5, "max_pixels": 40_000_000, "preview_size": 128}
        for image in (thumbnail, small, large):
            assert await admission.decode(image, 32, **options) == "pixels"
        with pytest.raises(DeadlineExceeded):  # inline or not, a late request is not decoded
            await admission.decode(thumbnail, 32, **options | {"deadline": time.monotonic() - 1})
        admission.shutdown()

    asyncio.run(main())
    assert pooled == [len(small)]
    assert decoded == [len(thumbnail), len(small), len(large)]


def test_only_png_thumbnails_with_a_few_plain_chunks_decode_inline() -> None:
    """What decodes on the event loop must be cheap whatever its bytes say: at most 64x64
    pixels, 32 KB and 16 chunks (Pillow walks chunks in Python), no compressed metadata."""
    thumbnail = png(1)
    ihdr_end = 8 + 12 + 13
    assert decodes_inline(thumbnail) and decodes_inline(png(1, size=64))
    assert not decodes_inline(png(1, size=65))
    assert not decodes_inline(encode(pattern(1, 32), "JPEG"))  # 32 KB of JPEG can be 1024x1024
    assert not decodes_inline(thumbnail[:-12])  # no IEND: cut short
    for kind in (b"zTXt", b"iTXt", b"iCCP", b"tEXt"):
        with_chunk = thumbnail[:ihdr_end] + png_chunk(kind, b"k\0" + b"x" * 100) + thumbnail[ihdr_end:]
        assert decodes_inline(with_chunk) == (kind == b"tEXt")
    many = thumbnail[:ihdr_end] + png_chunk(b"abCd", b"") * 20 + thumbnail[ihdr_end:]
    assert not decodes_inline(many)
    padded = thumbnail[:ihdr_end] + png_chunk(b"tEXt", b"k\0" + b"x" * 33_000) + thumbnail[ihdr_end:]
    assert not decodes_inline(padded)


def test_what_can_never_fit_is_refused_413_and_a_busy_large_lane_503_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    gate = threading.Event()

    def fake_decode(data: bytes, size: int, **kwargs):
        calls.append(data)
        gate.wait(5)
        return "pixels"

    monkeypatch.setattr(admission_module, "decode_image", fake_decode)

    async def in_pool(fn, *args, **kwargs):
        return fn(*args, **kwargs)

    rgba = png_header_only(4000, 4000, "RGBA")  # 16 M pixels x 24 B: 384 MB > the 256 MB gate
    bomb = png_header_only(6300, 6300, "1")

    async def main() -> None:
        admission = make_admission(in_pool, decode_queue=0)
        options = {"deadline": time.monotonic() + 5, "max_pixels": 40_000_000, "preview_size": 128}
        with pytest.raises(ImageTooLarge, match="memory budget gives one decode"):
            await admission.decode(rgba, 32, **options)
        first = asyncio.create_task(admission.decode(bomb, 32, **options))
        await asyncio.sleep(0.02)
        with pytest.raises(Overloaded, match="large-decode lane is full"):
            await admission.decode(bomb, 32, **options)
        with pytest.raises(DeadlineExceeded):  # past its deadline: not even priced into a lane
            await admission.decode(bomb, 32, **options | {"deadline": time.monotonic() - 1})
        gate.set()
        assert await first == "pixels"
        admission.shutdown()

    asyncio.run(main())
    assert len(calls) == 1  # only the admitted bomb was decoded


def test_renders_have_their_own_capped_lane() -> None:
    async def no_pool(*args, **kwargs):
        raise AssertionError("renders never use the decode pool")

    async def main() -> None:
        admission = make_admission(no_pool, render_threads=1, render_queue=0)
        gate = threading.Event()
        running = asyncio.create_task(admission.render(MiB, gate.wait, 5))
        await asyncio.sleep(0.02)
        with pytest.raises(Overloaded, match="render lane is full"):
            await admission.render(MiB, lambda: b"png")
        with pytest.raises(ImageTooLarge, match="smaller size"):
            await admission.render(PLAN.render + 1, lambda: b"png")
        gate.set()
        assert await running is True
        assert await admission.render(MiB, lambda: b"png") == b"png"
        admission.shutdown()

    asyncio.run(main())


def test_refusals_beyond_the_rate_are_held_before_they_are_answered() -> None:
    async def main() -> list[float]:
        pacer = RefusalPacer(rate=2, hold_s=0.1)
        waits = []
        for _ in range(3):
            started = time.perf_counter()
            await pacer.pace()
            waits.append(time.perf_counter() - started)
        assert pacer.held == 1 and pacer.holding == 0
        return waits

    waits = asyncio.run(main())
    assert waits[0] < 0.05 and waits[1] < 0.05 and waits[2] >= 0.09


def test_held_refusals_are_bounded() -> None:
    async def main() -> None:
        pacer = RefusalPacer(rate=1, hold_s=0.2, max_held=1)
        await pacer.pace()  # the one immediate refusal this second
        held = asyncio.create_task(pacer.pace())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        await pacer.pace()  # one is already held: answered at once
        assert time.perf_counter() - started < 0.05
        await held

    asyncio.run(main())
