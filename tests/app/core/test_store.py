"""app/core/store.py: LRU by count and bytes, TTL, serialisation of a record."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from app.core.store import MemoryResultStore, ResultStore, StoredPrediction
from app.serving.state import open_store


def record(i: int, maps_side: int = 8) -> StoredPrediction:
    return StoredPrediction(
        id=f"id{i}",
        result=b'{"id": "id%d"}' % i,
        labels=("a", "b"),
        scores=np.array([0.25, 0.75], np.float32),
        maps=np.full((2, maps_side, maps_side), i, np.float32),
        preview=np.full((4, 4, 3), i, np.uint8),
        created=1000.0 + i,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ids(store: MemoryResultStore, n: int = 10) -> list[str]:
    async def present():
        return [f"id{i}" for i in range(n) if await store.get(f"id{i}") is not None]

    return asyncio.run(present())


def put_all(store: MemoryResultStore, records) -> None:
    async def main():
        for r in records:
            await store.put(r)

    asyncio.run(main())


def test_memory_store_is_a_result_store() -> None:
    assert isinstance(MemoryResultStore(max_items=1, max_bytes=10_000, ttl_s=1), ResultStore)


def test_lru_by_count_keeps_recently_read_items() -> None:
    store = MemoryResultStore(max_items=3, max_bytes=10**9, ttl_s=60)
    put_all(store, [record(i) for i in range(3)])
    assert asyncio.run(store.get("id0")) is not None  # id0 becomes most recently used
    put_all(store, [record(3)])
    assert ids(store) == ["id0", "id2", "id3"]


def test_lru_by_bytes() -> None:
    one = record(0).nbytes
    store = MemoryResultStore(max_items=100, max_bytes=int(one * 2.5), ttl_s=60)
    put_all(store, [record(i) for i in range(5)])
    assert ids(store) == ["id3", "id4"] and store.nbytes <= store.max_bytes
    huge = record(9, maps_side=400)  # larger than the whole store: not kept, nothing evicted
    put_all(store, [huge])
    assert ids(store) == ["id3", "id4"]


def test_ttl_expires_records() -> None:
    clock = Clock()
    store = MemoryResultStore(max_items=10, max_bytes=10**9, ttl_s=5, clock=clock)
    put_all(store, [record(0)])
    clock.now = 3
    put_all(store, [record(1)])
    clock.now = 6
    assert ids(store) == ["id1"]
    clock.now = 9
    assert ids(store) == [] and len(store) == 0


def test_replacing_an_id_keeps_the_byte_count_right() -> None:
    store = MemoryResultStore(max_items=10, max_bytes=10**9, ttl_s=60)
    put_all(store, [record(1), record(1)])
    assert len(store) == 1 and store.nbytes == record(1).nbytes


def test_record_round_trips_through_bytes() -> None:
    original = record(7)
    copy = StoredPrediction.from_bytes(original.to_bytes())
    assert (copy.id, copy.result, copy.labels, copy.created) == (
        original.id,
        original.result,
        original.labels,
        original.created,
    )
    for name in ("scores", "maps", "preview"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(original, name))
        assert getattr(copy, name).dtype == getattr(original, name).dtype
    with pytest.raises(ValueError):
        StoredPrediction.from_bytes(b"garbage")


def test_jpeg_preview_round_trips_and_counts_its_bytes() -> None:
    jpeg = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9"  # stored as is, never parsed here
    original = dataclasses.replace(record(3), preview=jpeg)
    copy = StoredPrediction.from_bytes(original.to_bytes())
    assert copy.preview == jpeg and copy.maps.shape == original.maps.shape
    assert original.nbytes == record(3).nbytes - record(3).preview.nbytes + len(jpeg)


def test_open_store_memory(make_settings) -> None:
    store = open_store(make_settings(store_max_items=7))
    assert isinstance(store, MemoryResultStore) and store.max_items == 7
