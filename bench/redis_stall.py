"""The `redis` phase of bench/hostile.py: a stalled Redis result store under classify load.

Classification does not need Redis, so a Redis that stops answering (SIGSTOP: connections stay
open, nothing comes back, as with a stuck or swapping server) must not slow it. 16 closed-loop
clients post a 32x32 PNG for 3 x `seconds` (after 2 s of warm-up); Redis is stopped for the
middle third. Per third: 200s per second and their p50/p99 (a request in progress at any time
during the stall counts for the stall), plus a fetch of a result stored
before the stall (503 expected, and how fast) and, after it, of one made during it (written
from the backlog once Redis is back).

    .venv/bin/python -m bench.hostile --phases redis --port 18550 --redis-port 18590 --seconds 10
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.hostile import Connection, Outcome, Server, _pct, small_png

REDIS_SERVER = shutil.which("redis-server") or next(
    (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).is_file()), None
)
CLIENTS = 16


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A throwaway redis-server on loopback as a cache (no persistence), stopped at the end."""
    assert REDIS_SERVER is not None, "redis-server is not installed (scripts/ci-deps.sh)"
    with tempfile.TemporaryDirectory(prefix="ninserve-bench-redis-") as workdir:
        proc = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", workdir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not _pong(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield proc
        finally:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            proc.wait(10)


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def _fetch(port: int, prediction: str) -> dict[str, object]:
    conn = Connection(port)
    got = await conn.request("GET", f"/v1/predictions/{prediction}", timeout=30)
    await conn.close()
    return {"status": got.status, "ms": round(got.seconds * 1000, 1)}


async def phase_redis(server: Server, redis: subprocess.Popen[bytes], seconds: float) -> dict[str, object]:
    body, port = small_png(3), server.port
    conn = Connection(port)
    stored = json.loads((await conn.request("POST", "/v1/classify", body)).body)["id"]
    await conn.close()
    started: list[tuple[float, Outcome]] = []
    warm_until = time.perf_counter() + 2.0  # connections open, batches formed, before the clock starts

    async def warm() -> None:
        conn = Connection(port)
        while time.perf_counter() < warm_until:
            await conn.request("POST", "/v1/classify", body)
        await conn.close()

    await asyncio.gather(*(warm() for _ in range(CLIENTS)))
    t0 = time.perf_counter()
    stop_at, cont_at, end_at = t0 + seconds, t0 + 2 * seconds, t0 + 3 * seconds
    fetches: dict[str, object] = {}

    async def client() -> None:
        conn = Connection(port)
        while (now := time.perf_counter()) < end_at:
            started.append((now, await conn.request("POST", "/v1/classify", body)))
        await conn.close()

    async def stall() -> None:
        await asyncio.sleep(stop_at - time.perf_counter())
        redis.send_signal(signal.SIGSTOP)
        await asyncio.sleep(1.0)
        fetches["stored_before_during_stall"] = await _fetch(port, stored)
        await asyncio.sleep(cont_at - time.perf_counter())
        redis.send_signal(signal.SIGCONT)
        made = [o for t, o in started if stop_at + 1 < t < cont_at and o.status == 200]
        if made:
            await asyncio.sleep(2.0)
            fetches["made_during_stall_after"] = await _fetch(port, json.loads(made[-1].body)["id"])

    await asyncio.gather(*(client() for _ in range(CLIENTS)), stall())
    # A request belongs to the stall if it was in progress at any time during it.
    windows = {
        "before": (t0, stop_at, lambda t, o: t + o.seconds < stop_at),
        "stalled": (stop_at, cont_at, lambda t, o: t < cont_at and t + o.seconds >= stop_at),
        "after": (cont_at, end_at, lambda t, o: t >= cont_at),
    }
    out: dict[str, object] = {"clients": CLIENTS, "stall_s": seconds}
    for name, (start, end, belongs) in windows.items():
        outcomes = [o for t, o in started if belongs(t, o)]
        ok = [o.seconds * 1000 for o in outcomes if o.status == 200]
        out[name] = {
            "rps_200": round(len(ok) / (end - start), 1),
            "statuses": dict(sorted(Counter(o.status for o in outcomes).items())),
            "p50_ms": _pct(ok or [0.0], 50),
            "p99_ms": _pct(ok or [0.0], 99),
            "max_ms": round(max(ok, default=0.0), 1),
        }
    return out | fetches
