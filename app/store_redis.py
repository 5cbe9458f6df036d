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

When Redis cannot be reached, `put` logs and drops the record (classification keeps working)
and `get` raises `StoreUnavailable` (503 + Retry-After). After a failure both skip Redis for
`retry_s`, so an outage costs no latency per request.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.errors import StoreUnavailable
from app.store import StoredPrediction

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger("ninserve")

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
        connect_timeout_s: float = 1.0,
        timeout_s: float = 2.0,
        retry_s: float = 1.0,
    ) -> None:
        self.url, self.max_items, self.max_bytes, self.ttl_s = url, max_items, max_bytes, ttl_s
        self.retry_s = retry_s
        # One hash tag for every key: the scripts touch them together, so they share a slot.
        tag = "{" + namespace + "}"
        self._keys = [f"{tag}:lru", f"{tag}:exp", f"{tag}:sizes", f"{tag}:bytes", f"{tag}:uses"]
        self._prefix = f"{tag}:r:"
        # One retry without delay re-dials a connection Redis closed (restart, idle timeout);
        # anything longer would hold the request that is waiting for it.
        self._redis = Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        self._put = self._redis.register_script(_PUT)
        self._get = self._redis.register_script(_GET)
        self._skip_until = 0.0  # monotonic time before which Redis is presumed down
        self._down = False

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
        value = record.to_bytes()
        if len(value) > self.max_bytes:
            logger.warning(
                "result %s (%d bytes) exceeds the store's %d bytes; not kept",
                record.id,
                len(value),
                self.max_bytes,
            )
            return
        if self._skipping():
            return
        ttl_ms = max(1, round(self.ttl_s * 1000))
        args = [self._prefix, record.id, value, ttl_ms, self.max_items, self.max_bytes]
        try:
            await self._put(self._keys, args)
        except RedisError as exc:
            self._failed(exc)  # the client still gets its classification; only the maps are lost
            return
        self._recovered()

    async def get(self, prediction_id: str) -> StoredPrediction | None:
        if len(prediction_id) > MAX_ID_LENGTH:
            return None
        if self._skipping():
            raise StoreUnavailable("the result store is unavailable; try again shortly")
        try:
            value = await self._get([self._keys[0], self._keys[4]], [self._prefix, prediction_id])
        except RedisError as exc:
            self._failed(exc)
            raise StoreUnavailable("the result store is unavailable; try again shortly") from exc
        self._recovered()
        if value is None:
            return None
        try:
            return StoredPrediction.from_bytes(value)
        except (ValueError, KeyError) as exc:  # written by an incompatible version: treat as gone
            logger.warning("unreadable stored result %s: %s", prediction_id, exc)
            return None

    async def stats(self) -> tuple[int, int]:
        """(records, bytes) in the index, for tests and diagnostics."""
        count, total = await self._redis.zcard(self._keys[0]), await self._redis.get(self._keys[3])
        return int(count), int(total or 0)

    async def close(self) -> None:
        await self._redis.aclose()

    def _skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def _failed(self, exc: RedisError) -> None:
        self._skip_until = time.monotonic() + self.retry_s
        if not self._down:
            self._down = True
            logger.error("result store %s unavailable: %s", redacted(self.url), exc)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            logger.warning("result store %s is back", redacted(self.url))
