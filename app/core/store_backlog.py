"""Results waiting to be written to a network store (app/core/store_redis.py): oldest first, bounded
by bytes. A full backlog drops its oldest result, whose client was answered long ago; the newest
is the one about to be fetched. Each result can be read from here until it is written.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict

from app.core.store import StoredPrediction

logger = logging.getLogger("ninserve")


class WriteBacklog:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # id -> (record, future resolved once it is written or dropped)
        self._items: OrderedDict[str, tuple[StoredPrediction, asyncio.Future[None]]] = OrderedDict()
        self._bytes = 0
        self._dropped = 0  # since take_dropped()
        self.dropped_total = 0  # since start: the store's metrics count these (never reset)
        self.too_large_total = 0  # results larger than the whole backlog, never queued
        self._added = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def add(self, record: StoredPrediction) -> asyncio.Future[None] | None:
        """Queue `record`; the future resolves when it is written (or dropped). None: not kept,
        it is larger than the whole backlog."""
        size = record.nbytes
        if size > self.max_bytes:
            logger.warning("result %s (%d bytes) is larger than the write backlog; not kept", record.id, size)
            self.too_large_total += 1
            return None
        self._pop(record.id)
        while self._bytes + size > self.max_bytes:
            oldest = next(iter(self._items))
            if self._dropped == 0:
                logger.warning(
                    "result store write backlog full (%d MB): dropping the oldest unwritten results",
                    self.max_bytes >> 20,
                )
            self._dropped += 1
            self.dropped_total += 1
            self._pop(oldest)
        written = asyncio.get_running_loop().create_future()
        self._items[record.id] = (record, written)
        self._bytes += size
        self._added.set()
        return written

    def get(self, prediction_id: str) -> StoredPrediction | None:
        entry = self._items.get(prediction_id)
        return None if entry is None else entry[0]

    def oldest(self, n: int) -> list[StoredPrediction]:
        return [record for record, _ in itertools.islice(self._items.values(), n)]

    def written(self, records: list[StoredPrediction]) -> None:
        for record in records:
            entry = self._items.get(record.id)
            if entry is not None and entry[0] is record:  # not replaced meanwhile
                self._pop(record.id)

    def release(self, records: list[StoredPrediction]) -> None:
        """Resolve the futures of records that stay queued (a write failed): nobody should wait."""
        for record in records:
            entry = self._items.get(record.id)
            if entry is not None and not entry[1].done():
                entry[1].set_result(None)

    async def wait(self) -> None:
        """Until something is added or `wake` is called (at once if anything waits)."""
        self._added.clear()
        if not self._items:
            await self._added.wait()

    def wake(self) -> None:
        """End the writer's `wait` with nothing added: it has a failed Redis to probe."""
        self._added.set()

    def take_dropped(self) -> int:
        dropped, self._dropped = self._dropped, 0
        return dropped

    def _pop(self, prediction_id: str) -> None:
        entry = self._items.pop(prediction_id, None)
        if entry is None:
            return
        self._bytes -= entry[0].nbytes
        if not entry[1].done():
            entry[1].set_result(None)
