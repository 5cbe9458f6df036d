"""Results by id: the `ResultStore` protocol, the record it keeps, and the in-memory LRU/TTL store.

A record is what `GET /v1/predictions/{id}[/maps[.png]]` needs later: the response JSON, the
scores, the raw maps and a preview of the input for overlays (raw pixels when tiny, else encoded
bytes: a JPEG, or a small upload as sent; see app/core/decode.py). It converts to and from bytes
(`to_bytes`/`from_bytes`) so a network store (app/core/store_redis.py, NINSERVE_RESULT_STORE=redis://)
can keep it as one value.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from app.core.decode import Preview

logger = logging.getLogger("ninserve")

_MAGIC = b"NINP1"


@dataclass(frozen=True, slots=True)
class StoredPrediction:
    id: str
    result: bytes  # the classify response JSON, as first returned (without inline map values)
    labels: tuple[str, ...]  # K class names, in map order
    scores: np.ndarray  # float32 [K]
    maps: np.ndarray  # float32 [K, h, w], raw model output
    preview: Preview  # the input at its aspect ratio (uint8 [h, w, 3] or encoded bytes), for overlays
    created: float  # unix time

    @property
    def nbytes(self) -> int:
        preview = len(self.preview) if isinstance(self.preview, bytes) else self.preview.nbytes
        return len(self.result) + self.scores.nbytes + self.maps.nbytes + preview + 256

    def _preview_bytes(self) -> bytes:
        return self.preview if isinstance(self.preview, bytes) else self.preview.tobytes()

    def to_bytes(self) -> bytes:
        """`NINP1` | u32 header length | header JSON | result | scores | maps | preview.

        The header's `preview` is the pixel array's shape, or `preview_jpeg` the encoded preview's
        length (a JPEG, or an upload kept as sent; the key keeps its name for stored records)."""
        preview = (
            {"preview_jpeg": len(self.preview)}
            if isinstance(self.preview, bytes)
            else {"preview": list(self.preview.shape)}
        )
        header = json.dumps(
            {
                "id": self.id,
                "labels": list(self.labels),
                "created": self.created,
                "result": len(self.result),
                "maps": list(self.maps.shape),
                **preview,
            }
        ).encode()
        return b"".join(
            (
                _MAGIC,
                struct.pack("<I", len(header)),
                header,
                self.result,
                self.scores.astype("<f4").tobytes(),
                self.maps.astype("<f4").tobytes(),
                self._preview_bytes(),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredPrediction:
        if data[:5] != _MAGIC:
            raise ValueError("not a stored prediction")
        (size,) = struct.unpack_from("<I", data, 5)
        header = json.loads(data[9 : 9 + size])
        view, pos = memoryview(data), 9 + size
        result = bytes(view[pos : pos + header["result"]])
        pos += header["result"]
        k = len(header["labels"])
        scores = np.frombuffer(view, "<f4", k, pos).astype(np.float32)
        pos += 4 * k
        maps_shape = tuple(header["maps"])
        maps = (
            np.frombuffer(view, "<f4", int(np.prod(maps_shape)), pos).reshape(maps_shape).astype(np.float32)
        )
        pos += maps.nbytes
        preview: Preview
        if "preview_jpeg" in header:
            preview = bytes(view[pos : pos + header["preview_jpeg"]])
        else:
            preview_shape = tuple(header["preview"])
            preview = (
                np.frombuffer(view, np.uint8, int(np.prod(preview_shape)), pos).reshape(preview_shape).copy()
            )
        return cls(header["id"], result, tuple(header["labels"]), scores, maps, preview, header["created"])


@runtime_checkable
class ResultStore(Protocol):
    """Where results live between `POST /v1/classify` and the `GET /v1/predictions/...` calls."""

    async def put(self, record: StoredPrediction) -> None:
        """Keep `record` under `record.id` (may evict older records)."""

    async def get(self, prediction_id: str) -> StoredPrediction | None:
        """The record, or None when the id is unknown, evicted or expired."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""


class MemoryResultStore:
    """LRU bounded by count and bytes, plus a TTL; per process (use redis with --workers > 1)."""

    def __init__(
        self, *, max_items: int, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_items, self.max_bytes, self.ttl_s = max_items, max_bytes, ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[StoredPrediction, float]] = (
            OrderedDict()
        )  # id -> (record, expiry)
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    async def put(self, record: StoredPrediction) -> None:
        size = record.nbytes
        if size > self.max_bytes:
            logger.warning(
                "result %s (%d bytes) exceeds the store's %d bytes; not kept", record.id, size, self.max_bytes
            )
            return
        self._pop(record.id)
        self._expire()
        while self._items and (len(self._items) >= self.max_items or self._bytes + size > self.max_bytes):
            self._pop(next(iter(self._items)))  # least recently used
        self._items[record.id] = (record, self._clock() + self.ttl_s)
        self._bytes += size

    async def get(self, prediction_id: str) -> StoredPrediction | None:
        entry = self._items.get(prediction_id)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._pop(prediction_id)
            return None
        self._items.move_to_end(prediction_id)
        return entry[0]

    async def close(self) -> None:
        self._items.clear()
        self._bytes = 0

    def _pop(self, prediction_id: str) -> None:
        entry = self._items.pop(prediction_id, None)
        if entry is not None:
            self._bytes -= entry[0].nbytes

    def _expire(self) -> None:
        # Expired records are hidden by `get` and evicted here from the LRU end; one read
        # recently can outlive its TTL in memory until it reaches that end, but never the bounds.
        now = self._clock()
        while self._items:
            key, (_, expiry) = next(iter(self._items.items()))
            if expiry > now:
                break
            self._pop(key)
