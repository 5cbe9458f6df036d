"""The Redis result store (NINSERVE_RESULT_STORE=redis://host:port/db): results shared by every
replica, so a map fetch may land on any of them.

Same semantics as `MemoryResultStore`, enforced across all replicas as one budget:
- TTL: each record expires `store_ttl_s` after it was stored (Redis key expiry; reads do not
  extend it).
- LRU bounds: at most `store_max_items` records and `store_max_bytes` bytes of stored values; a
  put evicts the least recently *read or written* records first. A record larger than the byte
  budget is not kept.
Both are kept exact by two Lua scripts (atomic on the server, times from the server's clock)
over an index: a sorted set by last use, one by expiry time, and each record's size. Run Redis as a
cache (no persistence, `maxmemory` with `volatile-lru`) as deploy/ does: maxmemory is the
server's own safety net, the bounds above are the budget.

Redis is off the request's path: `put` hands the record to a bounded write backlog that one
background task drains (pipelined), and waits for the write only while Redis answers promptly, so
that a result is in Redis, for every replica, before its response is sent. A stalled or
unreachable Redis never holds a request: each call has a short timeout, the first failure opens a
circuit breaker, and then `put` returns at once, `get` raises `StoreUnavailable` at once (503 +
Retry-After) and the task probes Redis in the background (PING) until it answers, then writes what
the backlog kept. Results still in the backlog are read from it. When the backlog is full the
oldest unwritten result is dropped (logged): its client was answered long ago, the newest is
about to be fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from app.core.errors import StoreUnavailable
from app.core.memory import STORE_WRITE_BACKLOG, MiB
from app.core.store import StoredPrediction
from app.core.store_backlog import WriteBacklog

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger("ninserve")

WRITE_BATCH = 64  # records per pipelined write
# How long `put` waits for its record to reach Redis: a healthy Redis answers in ~1 ms.
WRITE_WAIT_S = 0.1
MAX_ID_LENGTH = 128  # ids are 32 hex chars; anything longer cannot exist, so don't ask Redis

# KEYS: lru, exp, sizes, bytes, use counter. ARGV: record key prefix, id, value, ttl ms, max items,
# max bytes. Recency is a shared counter, not a clock: uses within one millisecond stay ordered.
_PUT = """
local lru, exp, sizes, total, uses = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix, id, value = ARGV[1], ARGV[2], ARGV[3]
local ttl, max_items, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function drop(victim)
  local size = tonumber(redis.call('HGET', sizes, victim) or '0')
  redis.call('DEL', prefix .. victim)
  redis.call('ZREM', lru, victim)
  redis.call('ZREM', exp, victim)
  redis.call('HDEL', sizes, victim)
  if size > 0 then redis.call('DECRBY', total, size) end
end

-- Redis already deleted expired values; take them out of the index and the byte count too.
for _, victim in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 1000)) do
  drop(victim)
end
drop(id)
local size = string.len(value)
local evicted = 0
while redis.call('ZCARD', lru) > 0 and (redis.call('ZCARD', lru) >= max_items
    or tonumber(redis.call('GET', total) or '0') + size > max_bytes) do
  drop(redis.call('ZRANGE', lru, 0, 0)[1])
  evicted = evicted + 1
end
redis.call('SET', prefix .. id, value, 'PX', ttl)
redis.call('ZADD', lru, redis.call('INCR', uses), id)
redis.call('ZADD', exp, now + ttl, id)
redis.call('HSET', sizes, id, size)
redis.call('INCRBY', total, size)
return evicted
"""

# KEYS: lru, use counter. ARGV: record key prefix, id. A hit becomes the most recently used.
_GET = """
local value = redis.call('GET', ARGV[1] .. ARGV[2])
if value then
  redis.call('ZADD', KEYS[1], 'XX', redis.call('INCR', KEYS[2]), ARGV[2])
end
return value
"""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What /metrics exports about the store (app/http/metrics.py): an outage must show, since
    /readyz stays 200 through it and classification goes on."""

    available: bool  # the breaker is closed: Redis answered the last call or probe
    backlog_bytes: int  # results waiting to be written, in bytes
    backlog_max_bytes: int
    backlog_records: int
    outages: int  # times the breaker opened, since start
    fetch_failures: int  # fetches answered 503 (store-unavailable), since start
    # Results never written to Redis, since start, by why: backlog_full (oldest dropped during an
    # outage), refused (Redis answered with an error, e.g. OOM), too_large (over a budget), failed.
    writes_dropped: dict[str, int]


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class RedisResultStore:
    """`ResultStore` on one Redis server; see the module docstring for the semantics."""

    def __init__(
        self,
        url: str,
        *,
        max_items: int,
        max_bytes: int,
        ttl_s: float,
        namespace: str = "ninserve",
        timeout_s: float = 0.5,
        write_wait_s: float = WRITE_WAIT_S,
        backlog_bytes: int = STORE_WRITE_BACKLOG,
        probe_s: float = 0.5,
    ) -> None:
        self.url, self.max_items, self.max_bytes, self.ttl_s = url, max_items, max_bytes, ttl_s
        self.write_wait_s, self.probe_s = write_wait_s, probe_s
        # One hash tag for every key: the scripts touch them together, so they share a slot.
        tag = "{" + namespace + "}"
        self._keys = [f"{tag}:lru", f"{tag}:exp", f"{tag}:sizes", f"{tag}:bytes", f"{tag}:uses"]
        self._prefix = f"{tag}:r:"
        # One retry without delay re-dials a connection Redis closed (restart, idle timeout). A
        # timeout is not retried: a stalled Redis would cost twice the timeout.
        self._redis = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            health_check_interval=30,
        )
        self._put = self._redis.register_script(_PUT)
        self._get = self._redis.register_script(_GET)
        self.backlog = WriteBacklog(backlog_bytes)
        self._open = False  # the breaker: Redis failed and has not answered a probe since
        self._outages = 0
        self._fetch_failures = 0
        self._not_kept = {"refused": 0, "too_large": 0, "failed": 0}
        self._writing_since: float | None = None  # monotonic start of the write in flight
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisResultStore:
        store = cls(
            settings.result_store,
            max_items=settings.store_max_items,
            max_bytes=settings.store_max_bytes,
            ttl_s=settings.store_ttl_s,
        )
        logger.info("result store: %s", redacted(settings.result_store))
        return store

    async def put(self, record: StoredPrediction) -> None:
        if record.nbytes > self.max_bytes:
            logger.warning(
                "result %s (%d bytes) exceeds the store's %d bytes; not kept",
                record.id,
                record.nbytes,
                self.max_bytes,
            )
            self._not_kept["too_large"] += 1
            return
        written = self.backlog.add(record)
        self._start()
        if self._open or written is None:
            return
        # Wait for the write while Redis keeps up, so that every replica can serve the result
        # once its response is out; never longer than write_wait_s, and not at all once the
        # write in flight is overdue (Redis is stalling: the timeout will open the breaker).
        since = self._writing_since
        wait = self.write_wait_s - (0.0 if since is None else time.monotonic() - since)
        if wait > 0:
            await asyncio.wait((written,), timeout=wait)

    async def get(self, prediction_id: str) -> StoredPrediction | None:
        if len(prediction_id) > MAX_ID_LENGTH:
            return None
        pending = self.backlog.get(prediction_id)
        if pending is not None:
            return pending
        if self._open:
            self._fetch_failures += 1
            raise StoreUnavailable("the result store is unavailable; try again shortly")
        try:
            value = await self._get([self._keys[0], self._keys[4]], [self._prefix, prediction_id])
        except RedisError as exc:
            self._failed(exc)
            self._fetch_failures += 1
            raise StoreUnavailable("the result store is unavailable; try again shortly") from exc
        if value is None:
            return None
        try:
            return StoredPrediction.from_bytes(value)
        except (ValueError, KeyError) as exc:  # written by an incompatible version: treat as gone
            logger.warning("unreadable stored result %s: %s", prediction_id, exc)
            return None

    @property
    def available(self) -> bool:
        """False while the breaker is open: Redis failed and has not answered a probe since."""
        return not self._open

    def health(self) -> StoreHealth:
        backlog = self.backlog
        return StoreHealth(
            available=not self._open,
            backlog_bytes=backlog.nbytes,
            backlog_max_bytes=backlog.max_bytes,
            backlog_records=len(backlog),
            outages=self._outages,
            fetch_failures=self._fetch_failures,
            writes_dropped={
                "backlog_full": backlog.dropped_total,
                **self._not_kept,
                "too_large": self._not_kept["too_large"] + backlog.too_large_total,
            },
        )

    async def stats(self) -> tuple[int, int]:
        """(records, bytes) in the index, for tests and diagnostics."""
        count, total = await self._redis.zcard(self._keys[0]), await self._redis.get(self._keys[3])
        return int(count), int(total or 0)

    async def close(self, flush_s: float = 1.0) -> None:
        """Write what the backlog holds (for at most `flush_s` while Redis answers), then disconnect."""
        deadline = time.monotonic() + flush_s
        while self.backlog and not self._open and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.backlog:
            logger.warning("result store closed with %d results not written", len(self.backlog))
        await self._redis.aclose()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="ninserve-store-writer")

    async def _drain(self) -> None:
        """The one writer: batches from the backlog, pipelined; probes Redis while the breaker is open."""
        while True:
            if self._open:
                await asyncio.sleep(self.probe_s)
                try:
                    await self._redis.ping()
                except RedisError:
                    continue
                self._open = False
                dropped = self.backlog.take_dropped()
                logger.warning(
                    "result store %s is back; writing the %d results that waited%s",
                    redacted(self.url),
                    len(self.backlog),
                    f" ({dropped} older ones were dropped: the backlog was full)" if dropped else "",
                )
            batch = self.backlog.oldest(WRITE_BATCH)
            if not batch:
                await self.backlog.wait()
                continue
            self._writing_since = time.monotonic()
            try:
                await self._write(batch)
            except ResponseError as exc:  # Redis answered, and refused (e.g. OOM): retrying won't help
                logger.error("result store refused %d results; not kept: %s", len(batch), exc)
                self._not_kept["refused"] += len(batch)
            except RedisError as exc:
                self._failed(exc)  # kept in the backlog, written once Redis answers a probe
                self.backlog.release(batch)  # their puts stop waiting
                continue
            except Exception:  # a bug: never let one batch stop the writer for good
                logger.exception("result store writer failed on %d results; not kept", len(batch))
                self._not_kept["failed"] += len(batch)
            finally:
                self._writing_since = None
            self.backlog.written(batch)

    async def _write(self, batch: list[StoredPrediction]) -> None:
        ttl_ms = max(1, round(self.ttl_s * 1000))
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in batch:
                args: list[str | bytes | int] = [self._prefix, record.id, record.to_bytes()]
                args += [ttl_ms, self.max_items, self.max_bytes]
                await self._put(self._keys, args, client=pipe)
            await pipe.execute()

    def _failed(self, exc: RedisError) -> None:
        if not self._open:
            self._open = True
            self._outages += 1
            logger.error(
                "result store %s unavailable (%s): classification goes on; results wait in a "
                "%d MB backlog, fetches get 503 until it answers",
                redacted(self.url),
                exc or type(exc).__name__,
                self.backlog.max_bytes // MiB,
            )
        # The probe runs in the writer task, which may be idle in `wait` (a fetch failed, nothing
        # to write): without the wake the breaker would stay open until the next put.
        self.backlog.wake()
        self._start()
