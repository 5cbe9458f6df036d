"""app/core/store_redis.py against a real redis-server on a loopback port: the memory store's TTL and
LRU semantics, one store shared by several app instances, and a Redis outage (503 on fetch,
classification unaffected). Skips when redis-server is not installed (scripts/ci-deps.sh)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from app.config import Settings
from app.core.errors import StoreUnavailable
from app.core.store import ResultStore, StoredPrediction
from app.core.store_redis import RedisResultStore, StoreHealth, redacted
from app.serving.state import open_store
from tests.app.helpers import free_port, live_server, png

REDIS_SERVER = shutil.which("redis-server") or next(
    (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).is_file()), None
)
T = TypeVar("T")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server)"
)


@contextmanager
def redis_server(workdir: Path, port: int | None = None) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1, as a cache (no persistence); yields its URL."""
    with redis_process(workdir, port) as (url, _):
        yield url


@contextmanager
def redis_process(workdir: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """redis_server, with its process (to stop and resume it)."""
    port = port or free_port()
    assert REDIS_SERVER is not None
    process = subprocess.Popen(
        [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--loglevel", "warning", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_db(redis_url: str) -> str:
    """The module's server with an empty database."""

    async def flush() -> None:
        client = Redis.from_url(redis_url)
        await client.flushdb()
        await client.aclose()

    asyncio.run(flush())
    return redis_url


def stores(url: str, n: int = 1, **overrides) -> Callable[[Callable[..., Awaitable[T]]], T]:
    """Run `test(*stores)` in one event loop (the asyncio client is bound to its loop)."""
    # write_wait_s: these tests check what Redis holds right after each put, on a busy machine too.
    settings = {"max_items": 100, "max_bytes": 10**8, "ttl_s": 60.0, "write_wait_s": 10.0} | overrides

    def run(test: Callable[..., Awaitable[T]]) -> T:
        async def main() -> T:
            made = [RedisResultStore(url, **settings) for _ in range(n)]
            try:
                return await test(*made)
            finally:
                for store in made:
                    await store.close()

        return asyncio.run(main())

    return run


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


async def present(store: RedisResultStore, n: int = 10) -> list[str]:
    return [f"id{i}" for i in range(n) if await store.get(f"id{i}") is not None]


def test_is_a_result_store_and_round_trips_a_record(redis_db: str) -> None:
    @stores(redis_db)
    async def got(store: RedisResultStore) -> StoredPrediction | None:
        assert isinstance(store, ResultStore)
        await store.put(record(7))
        assert await store.get("nope") is None
        assert await store.get("x" * 10_000) is None
        return await store.get("id7")

    assert got is not None and got.id == "id7" and got.labels == ("a", "b") and got.result == b'{"id": "id7"}'
    np.testing.assert_array_equal(got.maps, record(7).maps)
    np.testing.assert_array_equal(got.scores, record(7).scores)
    np.testing.assert_array_equal(got.preview, record(7).preview)


def test_lru_by_count_keeps_recently_read_items(redis_db: str) -> None:
    @stores(redis_db, max_items=3)
    async def result(store: RedisResultStore) -> tuple[list[str], tuple[int, int]]:
        for i in range(3):
            await store.put(record(i))
        assert await store.get("id0") is not None  # id0 becomes the most recently used
        await store.put(record(3))
        return await present(store), await store.stats()

    assert result[0] == ["id0", "id2", "id3"] and result[1][0] == 3


def test_lru_by_bytes_and_oversized_records_are_not_kept(redis_db: str) -> None:
    size = len(record(0).to_bytes())

    @stores(redis_db, max_bytes=int(size * 2.5))
    async def result(store: RedisResultStore) -> tuple[list[str], tuple[int, int]]:
        for i in range(4):
            await store.put(record(i))
        await store.put(record(9, maps_side=64))  # larger than the whole budget
        return await present(store), await store.stats()

    assert result == (["id2", "id3"], (2, 2 * size))


def test_replacing_a_record_does_not_count_it_twice(redis_db: str) -> None:
    @stores(redis_db)
    async def stats(store: RedisResultStore) -> tuple[int, int]:
        await store.put(record(1))
        await store.put(record(1))
        return await store.stats()

    assert stats == (1, len(record(1).to_bytes()))


def test_ttl_expires_records_and_frees_their_budget(redis_db: str) -> None:
    @stores(redis_db, ttl_s=0.3)
    async def stats(store: RedisResultStore) -> tuple[int, int]:
        await store.put(record(1))
        assert await store.get("id1") is not None  # a read does not extend the TTL
        await asyncio.sleep(0.45)
        assert await store.get("id1") is None
        await store.put(record(2))  # takes the expired record out of the index
        return await store.stats()

    assert stats == (1, len(record(2).to_bytes()))


def test_stores_on_one_redis_share_records_and_budget(redis_db: str) -> None:
    @stores(redis_db, n=2, max_items=2)
    async def seen(first: RedisResultStore, second: RedisResultStore) -> list[str]:
        await first.put(record(1))
        await second.put(record(2))
        await first.put(record(3))  # the shared budget of 2 evicts id1
        return await present(second)

    assert seen == ["id2", "id3"]


def test_redis_down_put_is_kept_in_the_backlog_get_is_unavailable_at_once() -> None:
    @stores(f"redis://127.0.0.1:{free_port()}/0", write_wait_s=0.1)  # nothing listens there
    async def elapsed(store: RedisResultStore) -> float:
        started = time.monotonic()
        await store.put(record(1))  # the write fails at once: neither waits nor raises
        assert not store.available  # the breaker opened
        got = await store.get("id1")  # not written yet: served from the backlog
        assert got is not None and got.id == "id1"
        with pytest.raises(StoreUnavailable):  # breaker open: no network round trip
            await store.get("id2")
        return time.monotonic() - started

    assert elapsed < 2


def test_a_full_backlog_drops_its_oldest_results(caplog: pytest.LogCaptureFixture) -> None:
    @stores(f"redis://127.0.0.1:{free_port()}/0", backlog_bytes=int(record(0).nbytes * 2.5))
    async def kept(store: RedisResultStore) -> list[str]:
        for i in range(5):
            await store.put(record(i))
        assert store.backlog.nbytes <= store.backlog.max_bytes
        return [f"id{i}" for i in range(5) if store.backlog.get(f"id{i}") is not None]

    assert kept == ["id3", "id4"]
    assert "write backlog full" in caplog.text


def test_health_counts_outages_fetch_failures_and_dropped_writes() -> None:
    @stores(f"redis://127.0.0.1:{free_port()}/0", backlog_bytes=int(record(0).nbytes * 2.5))
    async def health(store: RedisResultStore) -> StoreHealth:
        assert store.health().available and store.health().outages == 0
        for i in range(5):
            await store.put(record(i))
        for _ in range(2):
            with pytest.raises(StoreUnavailable):
                await store.get("elsewhere")
        return store.health()

    assert not health.available and health.outages == 1 and health.fetch_failures == 2
    assert health.backlog_records == 2 and health.backlog_bytes == 2 * record(0).nbytes
    assert health.writes_dropped["backlog_full"] == 3


def test_a_write_redis_refuses_is_dropped_without_opening_the_breaker(
    redis_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    @stores(redis_db)
    async def check(store: RedisResultStore) -> None:
        admin = Redis.from_url(redis_db)
        await admin.set("{ninserve}:exp", "not a sorted set")  # the script then fails: WRONGTYPE
        try:
            await store.put(record(1))
        finally:
            await admin.delete("{ninserve}:exp")
            await admin.aclose()
        assert store.available and len(store.backlog) == 0  # Redis answered: nothing to wait for
        assert await store.get("id1") is None
        await store.put(record(2))  # and the next one is written
        assert await store.get("id2") is not None

    check  # noqa: B018
    assert "result store refused 1 results" in caplog.text


def test_a_stalled_redis_holds_no_request(redis_db: str, tmp_path: Path) -> None:
    """The issue's probe: Redis SIGSTOPped. Puts return at once, fetches answer 503 within the
    timeout (at once after the first), and what was put meanwhile is written when Redis resumes."""
    with redis_process(tmp_path) as (url, process):

        @stores(url, n=2, write_wait_s=0.1)
        async def check(store: RedisResultStore, other: RedisResultStore) -> None:
            await store.put(record(0))
            assert await other.get("id0") is not None  # written before the put returned
            process.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            for i in range(1, 41):
                await store.put(record(i))
            assert time.monotonic() - started < 0.5  # was 4 s for each put
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.get("id0")  # in Redis only: unavailable, within the 0.5 s timeout
            assert time.monotonic() - started < 1.5
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await other.get("id0")
            with pytest.raises(StoreUnavailable):
                await store.get("id0")  # the breaker is open: at once
            assert time.monotonic() - started < 1.0
            assert (await store.get("id40")) is not None  # from the backlog
            process.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 5
            while (len(store.backlog) or not other.available) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert len(store.backlog) == 0  # the probe saw Redis back; the backlog was written
            assert other.available
            assert (await other.get("id40")) is not None

        check  # noqa: B018


def test_a_failed_fetch_alone_closes_the_breaker_once_redis_answers(tmp_path: Path) -> None:
    """A replica that only serves fetches: its writer is idle (nothing to write) when a fetch
    opens the breaker, and must still probe Redis and close it without waiting for a put."""
    with redis_process(tmp_path) as (url, process):

        @stores(url, write_wait_s=0.1)
        async def check(store: RedisResultStore) -> None:
            await store.put(record(0))  # starts the writer, which then idles: nothing to write
            process.send_signal(signal.SIGSTOP)
            with pytest.raises(StoreUnavailable):
                await store.get("id0")
            assert not store.available
            process.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 10
            while not store.available and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert store.available  # stayed open for good before the writer was woken
            assert (await store.get("id0")) is not None

        check  # noqa: B018


def test_open_store_selects_redis_by_url(make_settings: Callable[..., Settings], redis_url: str) -> None:
    async def main() -> None:
        store = open_store(make_settings(result_store=redis_url))
        assert isinstance(store, RedisResultStore)
        await store.close()

    asyncio.run(main())
    assert redacted("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"


# --- through the HTTP API ------------------------------------------------------------------


def classify(client: httpx.Client) -> dict:
    response = client.post("/v1/classify", files={"file": ("x.png", png(3), "image/png")})
    assert response.status_code == 200, response.text
    return response.json()


def test_one_instance_stores_another_serves_the_maps(
    make_settings: Callable[..., Settings], redis_db: str
) -> None:
    settings = make_settings(result_store=redis_db)
    with (
        live_server(settings) as url_a,
        live_server(settings) as url_b,
        httpx.Client(base_url=url_a, timeout=30) as a,
        httpx.Client(base_url=url_b, timeout=30) as b,
    ):
        result = classify(a)
        label = result["top"][0]["label"]
        map_png = b.get(result["maps"]["png_url_template"].replace("{label}", label))
        assert map_png.status_code == 200 and map_png.content.startswith(b"\x89PNG")
        assert map_png.headers["content-type"] == "image/png"
        assert b.get(result["maps"]["grid_url"]).status_code == 200
        stored = b.get(f"/v1/predictions/{result['id']}").json()
        assert stored["id"] == result["id"] and stored["top"] == result["top"]
        assert a.get(f"/v1/predictions/{'0' * 32}").status_code == 404  # unknown ids stay 404


def test_redis_outage_503_on_fetch_classification_keeps_working(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(result_store=f"redis://127.0.0.1:{port}/0")
    with live_server(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
        with redis_server(tmp_path, port):
            before = classify(client)
            assert client.get(f"/v1/predictions/{before['id']}/maps/0.png").status_code == 200

        result = classify(client)  # Redis is gone: still a 200
        # made here and not written yet: served from this replica's backlog
        assert client.get(f"/v1/predictions/{result['id']}/maps/0.png").status_code == 200
        response = client.get(f"/v1/predictions/{before['id']}/maps/0.png")  # only in Redis
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"] == "urn:ninserve:problem:store-unavailable"
        assert client.get("/readyz").status_code == 200  # no reason to take the replica out

        with redis_server(tmp_path, port):  # back, empty: the store recovers on its own
            time.sleep(1.1)  # the retry window after the last failure
            result = classify(client)
            assert client.get(f"/v1/predictions/{result['id']}/maps/0.png").status_code == 200


def scrape(client: httpx.Client) -> dict[str, float]:
    """The store's series on /metrics, `name{label="v"}` -> value."""
    samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("ninserve_store_"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_a_redis_stop_and_start_moves_the_store_metrics(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """/readyz stays 200 through an outage, so /metrics is where it shows: the breaker, the
    backlog filling and draining, the fetches that got 503 (deploy/k8s/components/monitoring)."""
    port = free_port()
    settings = make_settings(result_store=f"redis://127.0.0.1:{port}/0")
    with live_server(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
        with redis_server(tmp_path, port):
            before = classify(client)
            up = scrape(client)
        assert up["ninserve_store_available"] == 1 and up["ninserve_store_outages_total"] == 0
        assert up['ninserve_store_backlog_bytes{kind="used"}'] == 0
        assert up['ninserve_store_backlog_bytes{kind="limit"}'] == 16 * 2**20
        assert up['ninserve_store_writes_dropped_total{reason="backlog_full"}'] == 0

        for _ in range(3):
            classify(client)  # Redis stopped: still 200, the results wait in the backlog
        assert client.get(f"/v1/predictions/{before['id']}").status_code == 503
        down = scrape(client)
        assert down["ninserve_store_available"] == 0 and down["ninserve_store_outages_total"] == 1
        assert down["ninserve_store_backlog_records"] == 3
        assert down['ninserve_store_backlog_bytes{kind="used"}'] > 0
        assert down["ninserve_store_fetch_failures_total"] == 1
        assert client.get("/readyz").status_code == 200

        with redis_server(tmp_path, port):  # back: the probe closes the breaker, the backlog drains
            deadline = time.monotonic() + 10
            while (again := scrape(client))["ninserve_store_backlog_records"] and time.monotonic() < deadline:
                time.sleep(0.1)
        assert again["ninserve_store_available"] == 1 and again["ninserve_store_outages_total"] == 1
        assert again['ninserve_store_backlog_bytes{kind="used"}'] == 0
        assert again['ninserve_store_writes_dropped_total{reason="backlog_full"}'] == 0


def test_the_memory_store_exports_no_store_series(make_settings: Callable[..., Settings]) -> None:
    with live_server(make_settings()) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert scrape(client) == {}


def test_classification_does_not_wait_for_a_stalled_redis(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The issue's probe over HTTP: Redis SIGSTOPped during classification (which does not need
    it) took 4.0 s per request; fetches of what only Redis holds get a prompt 503."""
    with redis_process(tmp_path) as (url, process):
        settings = make_settings(result_store=url)
        with live_server(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
            before = classify(client)
            process.send_signal(signal.SIGSTOP)
            took = []
            for _ in range(12):
                started = time.monotonic()
                during = classify(client)
                took.append(time.monotonic() - started)
                time.sleep(0.1)
            assert max(took) < 1.0, took
            started = time.monotonic()
            response = client.get(f"/v1/predictions/{before['id']}")
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert time.monotonic() - started < 1.5
            assert client.get(f"/v1/predictions/{during['id']}").status_code == 200  # the backlog
            process.send_signal(signal.SIGCONT)
