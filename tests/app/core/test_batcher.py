"""app/core/batcher.py with a fake engine: batching, grouping, deadlines, isolation, back-pressure."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.core.batcher import Batcher
from app.core.errors import DeadlineExceeded, InferenceFailed, NotReady, Overloaded

POISON = 13  # an image filled with this value makes the fake engine raise


def fake_run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scores [N, 2] = (mean, n) per image, maps [N, 2, H/4, W/4]: each row depends on its image only."""
    if (images == POISON).all(axis=(1, 2, 3)).any():
        raise RuntimeError("poisoned input")
    n, h, w, _ = images.shape
    means = images.reshape(n, -1).mean(axis=1).astype(np.float32)
    scores = np.stack([means, np.full(n, n, np.float32)], axis=1)
    maps = np.broadcast_to(means[:, None, None, None], (n, 2, h // 4, w // 4)).astype(np.float32)
    return scores, maps


def image(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def run(coro):
    return asyncio.run(coro)


async def started(**kw) -> Batcher:
    options = {"max_batch_size": 8, "max_wait_s": 0.05, "max_queue": 64} | kw
    run_fn = options.pop("run", fake_run)
    batcher = Batcher(run_fn, **options)
    await batcher.start()
    return batcher


def test_concurrent_requests_share_one_batch_and_get_their_own_result() -> None:
    async def main():
        batcher = await started()
        results = await asyncio.gather(*(batcher.submit(image(v)) for v in range(8)))
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert [r.scores[0] for r in results] == list(range(8))
    assert all(r.batch_size == 8 and r.maps.shape == (2, 8, 8) for r in results)
    assert dict(batcher.stats.batch_sizes) == {8: 1}
    assert results[3].maps.base is None  # owned, not a view pinning the whole batch


def test_max_batch_size_splits_and_max_wait_closes_batches() -> None:
    async def main():
        batcher = await started(max_batch_size=4, max_wait_s=0.01)
        results = await asyncio.gather(*(batcher.submit(image(v)) for v in range(10)))
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert [r.scores[0] for r in results] == list(range(10))
    assert dict(batcher.stats.batch_sizes) == {4: 2, 2: 1}


def test_the_next_batch_is_taken_before_the_last_batchs_callers_resume() -> None:
    """ORT must not idle while a finished batch's requests build their responses: the run
    thread takes the next batch before the finished one's callers resume."""
    release = threading.Event()

    def held_run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        release.wait(10)
        return fake_run(images)

    async def main():
        # A window makes each batch two images however soon the run thread looks (a full batch
        # closes it at once).
        batcher = await started(run=held_run, max_batch_size=2, max_wait_s=1.0)
        still_queued: list[int] = []

        async def call(value: int) -> None:
            result = await batcher.submit(image(value))
            if result.scores[0] < 2:  # the first batch: the second must be on its way already
                still_queued.append(batcher.queued)

        first = [asyncio.create_task(call(v)) for v in (0, 1)]
        while batcher.in_flight == 0 or batcher.queued:  # the first two are in ORT
            await asyncio.sleep(0.001)
        second = [asyncio.create_task(call(v)) for v in (2, 3)]
        while batcher.queued < 2:
            await asyncio.sleep(0.001)
        release.set()
        await asyncio.gather(*first, *second)
        await batcher.stop()
        return batcher, still_queued

    batcher, still_queued = run(main())
    assert dict(batcher.stats.batch_sizes) == {2: 2}
    assert still_queued == [0, 0]


def test_different_sizes_are_batched_separately() -> None:
    async def main():
        batcher = await started()
        jobs = [batcher.submit(image(v, 32 if v % 2 else 64)) for v in range(6)]
        results = await asyncio.gather(*jobs)
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert [r.scores[0] for r in results] == list(range(6))
    assert [r.maps.shape[1] for r in results] == [16, 8, 16, 8, 16, 8]
    assert dict(batcher.stats.batch_sizes) == {3: 2}


def test_one_bad_input_fails_alone() -> None:
    async def main():
        batcher = await started()
        jobs = [batcher.submit(image(v)) for v in (1, 2, POISON, 4)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert isinstance(results[2], InferenceFailed)
    assert "poisoned" not in results[2].detail  # the engine's own text stays in the log
    assert [r.scores[0] for i, r in enumerate(results) if i != 2] == [1, 2, 4]
    assert batcher.stats.failed == 1


def test_expired_requests_are_dropped_before_running() -> None:
    async def main():
        batcher = await started()
        past = time.monotonic() - 1
        results = await asyncio.gather(
            batcher.submit(image(1), deadline=past), batcher.submit(image(2)), return_exceptions=True
        )
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert isinstance(results[0], DeadlineExceeded) and results[1].scores[0] == 2
    assert batcher.stats.expired == 1 and batcher.stats.items == 1


def test_full_queue_is_rejected_and_runs_stay_off_the_event_loop() -> None:
    release = threading.Event()

    def blocking_run(images):
        release.wait(10)
        return fake_run(images)

    async def main():
        batcher = await started(run=blocking_run, max_batch_size=1, max_wait_s=0.0, max_queue=2)
        first = asyncio.create_task(batcher.submit(image(1)))
        while batcher.stats.batches == 0 and batcher.queued:  # the first one is taken into a batch
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the loop still turns while ORT is busy in its thread
        queued = [asyncio.create_task(batcher.submit(image(v))) for v in (2, 3)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit(image(4))
        release.set()
        results = await asyncio.gather(first, *queued)
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert [r.scores[0] for r in results] == [1, 2, 3]
    assert batcher.stats.rejected == 1


def test_cancelled_requests_are_skipped() -> None:
    async def main():
        batcher = await started(max_wait_s=0.05)
        doomed = asyncio.create_task(batcher.submit(image(1)))
        kept = asyncio.create_task(batcher.submit(image(2)))
        await asyncio.sleep(0)
        doomed.cancel()
        result = await kept
        await batcher.stop()
        return batcher, result

    batcher, result = run(main())
    assert result.batch_size == 1 and batcher.stats.items == 1


def test_lifecycle_and_input_checks() -> None:
    async def main():
        batcher = Batcher(fake_run, max_batch_size=4, max_wait_s=0.5, max_queue=8)
        with pytest.raises(NotReady):
            await batcher.submit(image(1))
        await batcher.start()
        with pytest.raises(ValueError, match="uint8"):
            await batcher.submit(np.zeros((32, 32, 3), np.float32))
        with pytest.raises(ValueError):
            await batcher.submit(np.zeros((32, 32), np.uint8))
        pending = asyncio.create_task(batcher.submit(image(1)))
        await asyncio.sleep(0.01)  # queued, waiting for company
        await batcher.stop()
        with pytest.raises(NotReady):
            await pending

    run(main())


def test_batches_are_bounded_by_pixels_as_well_as_by_count() -> None:
    """32 images at 256x256 with a one-image pixel budget run as 32 runs of one, never one of 4 GB."""
    runs: list[tuple[int, ...]] = []

    def recording_run(images: np.ndarray):
        runs.append(images.shape)
        return fake_run(images)

    async def main():
        batcher = await started(run=recording_run, max_batch_size=32, max_pixels=256 * 256, max_wait_s=0.05)
        big = await asyncio.gather(*(batcher.submit(image(v, 256)) for v in range(6)))
        small = await asyncio.gather(*(batcher.submit(image(v + 20, 32)) for v in range(40)))
        await batcher.stop()
        return big, small

    big, small = run(main())
    assert [r.scores[0] for r in big] == list(range(6))
    assert all(n * h * w <= 256 * 256 for n, h, w, _ in runs)
    assert [shape[0] for shape in runs if shape[1] == 256] == [1] * 6
    assert max(shape[0] for shape in runs if shape[1] == 32) == 32  # count still bounds small images
    assert sum(r.batch_size == 1 for r in big) == 6 and len(small) == 40


def test_a_lone_image_runs_in_the_callers_thread_when_the_batcher_is_idle() -> None:
    threads: list[str] = []

    def recording_run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        threads.append(threading.current_thread().name)
        return fake_run(images)

    async def main():
        batcher = await started(run=recording_run)
        loop = asyncio.get_running_loop()
        far = time.monotonic() + 10
        alone = await loop.run_in_executor(None, batcher.try_alone, image(7), far)
        result = batcher.took_alone(alone)
        queued = await batcher.submit(image(9))  # the queue path is unchanged
        await batcher.stop()
        return batcher, result, queued

    batcher, result, queued = run(main())
    assert result.scores[0] == 7 and result.batch_size == 1 and result.queue_ms == 0.0
    assert result.maps.shape == (2, 8, 8) and result.maps.base is None
    assert queued.scores[0] == 9
    assert not threads[0].startswith("ninserve-ort") and threads[1].startswith("ninserve-ort")
    assert dict(batcher.stats.batch_sizes) == {1: 2} and batcher.stats.items == 2


def test_a_lone_image_yields_to_the_queue_a_running_batch_and_its_deadline() -> None:
    release = threading.Event()

    def slow_run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        release.wait(5)
        return fake_run(images)

    async def main():
        batcher = await started(run=slow_run, max_wait_s=0.0)
        far = time.monotonic() + 10
        pending = asyncio.ensure_future(batcher.submit(image(1)))
        await asyncio.sleep(0.05)  # the batch of one is in ORT: its run holds the gate
        busy = batcher.try_alone(image(2), far)
        queued = asyncio.ensure_future(batcher.submit(image(3)))
        await asyncio.sleep(0)
        behind_queue = batcher.try_alone(image(4), far)
        release.set()
        await asyncio.gather(pending, queued)
        late = batcher.try_alone(image(5), time.monotonic() - 1)
        ok = batcher.try_alone(image(6), far)
        await batcher.stop()
        stopped = batcher.try_alone(image(7), far)
        return busy, behind_queue, late, ok, stopped

    busy, behind_queue, late, ok, stopped = run(main())
    assert busy is None and behind_queue is None and late is None and stopped is None
    assert ok is not None and ok.scores[0] == 6


def test_a_lone_image_whose_run_fails_goes_through_the_queue() -> None:
    async def main():
        batcher = await started()
        alone = batcher.try_alone(image(POISON), time.monotonic() + 10)
        with pytest.raises(InferenceFailed):
            await batcher.submit(image(POISON))
        await batcher.stop()
        return alone, batcher

    alone, batcher = run(main())
    assert alone is None and batcher.stats.failed == 1
