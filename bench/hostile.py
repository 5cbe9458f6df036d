"""Hostile-but-legal load against a real ninserve process: memory peaks, cheap-request latency
under expensive neighbours, goodput under overload. Loopback only; every phase is bounded in
requests and seconds, and the server it starts is stopped at the end.

    .venv/bin/python -m bench.hostile                         # this checkout
    .venv/bin/python -m bench.hostile --app-dir /tmp/old      # another checkout (before/after)
    .venv/bin/python -m bench.hostile --phases memory --json out.json

Phases (docs/reliability.md has the targets and the numbers):
  memory    one POST /v1/classify/batch?resolution=256 with 32 small PNGs, then 32 concurrent
            single requests at resolution=256: peak RSS during each, RSS 3 s after
  bombs     64 clients post a 4.9 KB 1-bit 6300x6300 PNG in a loop while one client sends a
            32x32 PNG every 50 ms: its p50/p99 for 200s, and how fast its 503s came
  maps      the same probe while 8 clients fetch maps.png?size=512&overlay=true
  overload  32x32 PNGs from 64 closed-loop clients (peak goodput), then from 512 (8x): 200s/s
  idle      1,000 keep-alive connections (the default connection cap) that each send a GET
            /healthz every 3 s and idle in between, while a new client (a fresh connection per
            request) sends a 32x32 PNG every 50 ms: the new clients' statuses and latency
  silent    the same, but the 1,000 connections never send a byte: each one closed by the
            server connects again 0.2 s later
  formats   4 clients post, in turn, a 6300x6300 lossless WebP, a progressive CMYK JPEG and a
            progressive 4:4:4 JPEG of that size (decoders that hold far more than an RGB image)
            beside the probe: peak RSS, their statuses, the probe's p50/p99
  scanbomb  2 clients post a 4000x4000 progressive JPEG of 3,000 scans (~30 s of libjpeg each)
            beside the probe
  jsonbomb  4 clients post 16 MB of V2 JSON `[[],[],...]` (~530 MB once parsed) beside the probe
  echo      128 clients post a valid V2 infer body whose `id` is a 16 MB string (the server used
            to echo it whole) beside the probe: peak RSS, their statuses, the probe's p50/p99
  uploads   48 clients upload large bodies (half a 5.9 MB decodable 1400x1400 PNG, half 8 MB of
            random bytes as image/jpeg) beside the probe: is a cheap request queued behind them?
  churn, configbomb, loadbombs   the model repository under churn, config.json bombs and
            hostile models loaded over the API, polled every second (bench/hostile_repository.py)
  redis     the server on a Redis result store (started here, --redis-port), SIGSTOPped for
            `seconds` during classify load: 200s/s and p99 before, during, after
            (bench/redis_stall.py); needs redis-server

The client is a minimal HTTP/1.1 keep-alive client on asyncio (one connection per simulated
client, no retries, Retry-After ignored: the worst case), so it costs the 2 shared cores little.
RSS is the server's VmRSS from /proc, sampled every 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bench import loadgen

HOST = "127.0.0.1"
RSS_CEILING_MB = 7000  # stop a server that grows past this: the machine is shared
ROOT = Path(__file__).resolve().parent.parent
SEND_PIECE = 256 * 1024  # a body is written in pieces, the answer checked for between them


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def small_png(seed: int, size: int = 32) -> bytes:
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([(x * 8 + seed) % 256, (y * 8 + 3 * seed) % 256, ((x + y) * 4) % 256], axis=-1)
    return png_bytes(Image.fromarray(rgb.astype(np.uint8)))


def bomb_png(side: int = 6300) -> bytes:
    """A 1-bit all-black PNG: ~4.9 KB on the wire, 39.7 M pixels (under the 40 M pixel limit)."""
    return png_bytes(Image.new("1", (side, side), 0))


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = "hostile0b1c2d3e"
    parts = []
    for i, data in enumerate(files):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def jpeg_bytes(img: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def format_bombs(side: int = 6300) -> list[tuple[str, bytes]]:
    """The issue's three: formats whose decoders hold 8-16 B per pixel, not an RGB image's 4-6."""
    flat = Image.new("RGB", (side, side), (90, 120, 150))
    webp = io.BytesIO()
    flat.save(webp, format="WEBP", lossless=True, quality=0, method=0)
    return [
        ("image/webp", webp.getvalue()),
        ("image/jpeg", jpeg_bytes(flat.convert("CMYK"), progressive=True)),
        ("image/jpeg", jpeg_bytes(flat, progressive=True, subsampling=0)),
    ]


def scan_bomb(side: int = 4000, scans: int = 3000) -> bytes:
    """A progressive JPEG whose last (refinement) scan is repeated: a few bytes a scan, each a
    pass of libjpeg over every block of the image."""
    jpeg = jpeg_bytes(Image.new("RGB", (side, side), (120, 30, 200)), progressive=True, subsampling=0)
    last, end = jpeg.rfind(b"\xff\xda"), jpeg.rfind(b"\xff\xd9")
    return jpeg[:end] + jpeg[last:end] * (scans - jpeg.count(b"\xff\xda")) + jpeg[end:]


def json_bomb(megabytes: int = 16) -> bytes:
    """V2 JSON whose `data` is `[[],[],...]`: 3 bytes become a ~100-byte Python list each."""
    head, tail = b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[1],"data":[', b"[]]}]}"
    count = (megabytes * 1024 * 1024 - len(head) - len(tail) - 64 * 1024) // 3
    return head + b"[]," * count + tail


def echo_bomb(megabytes: int = 16) -> tuple[bytes, int]:
    """A valid V2 infer body (one 32x32 UINT8 image in binary) whose `id` is a `megabytes` string."""
    pixels = np.zeros((1, 32, 32, 3), np.uint8).tobytes()
    head = (
        b'{"id":"'
        + b"x" * (megabytes * 1024 * 1024 - 8192)  # the body just under the 16 MiB limit
        + (
            b'","inputs":[{"name":"image","datatype":"UINT8","shape":[1,32,32,3],'
            b'"parameters":{"binary_data_size":%d}}]}' % len(pixels)
        )
    )
    return head + pixels, len(head)


def large_png(side: int = 1400) -> bytes:
    """A decodable PNG of noise (5.9 MB at 1400x1400): nothing for zlib to squeeze."""
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --- client ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    seconds: float
    body: bytes = b""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "image/png",
        timeout: float = 30,
        headers: str = "",
    ) -> Outcome:
        started = time.perf_counter()
        try:
            request = self._request(method, path, body, content_type, started, headers)
            return await asyncio.wait_for(request, timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            await self.close()
            return Outcome(0, time.perf_counter() - started)

    async def _request(
        self, method: str, path: str, body: bytes, content_type: str, started: float, headers: str = ""
    ) -> Outcome:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n{headers}"
        if body:
            head += f"Content-Type: {content_type}\r\n"
        # Read while sending, as curl does: the server may answer (503, 413) before the body is in
        # and close without reading the rest; the body then stops at the next piece.
        reading = asyncio.ensure_future(self.reader.readline())
        self.writer.write(head.encode() + b"\r\n")
        early = False
        for start in range(0, len(body), SEND_PIECE):
            self.writer.write(body[start : start + SEND_PIECE])
            sending = asyncio.ensure_future(self.writer.drain())
            await asyncio.wait({reading, sending}, return_when=asyncio.FIRST_COMPLETED)
            if not sending.done():
                sending.cancel()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await sending
            if reading.done():
                early = start + SEND_PIECE < len(body)
                break
        status_line = await reading
        if not status_line:
            raise ValueError("connection closed")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close or early:
            await self.close()
        return Outcome(status, time.perf_counter() - started, payload)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def closed_loop(port: int, clients: int, seconds: float, make) -> list[Outcome]:
    """`clients` connections each send the next request as soon as the last one answered."""
    stop = time.perf_counter() + seconds
    outcomes: list[Outcome] = []

    async def client(i: int) -> None:
        conn = Connection(port)
        while time.perf_counter() < stop:
            method, path, body, ctype = make(i)
            outcomes.append(await conn.request(method, path, body, ctype))
        await conn.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return outcomes


async def probe(port: int, seconds: float, fresh: bool = False) -> list[Outcome]:
    """The cheap neighbour, in a process of its own: the crowd's client loop must not delay it."""
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        measured = await loop.run_in_executor(pool, _probe_process, port, seconds, fresh)
    return [Outcome(status, secs) for status, secs in measured]


def _probe_process(port: int, seconds: float, fresh: bool = False) -> list[tuple[int, float]]:
    return [(o.status, o.seconds) for o in asyncio.run(_probe(port, seconds, fresh=fresh))]


async def _probe(port: int, seconds: float, delay: float = 0.05, fresh: bool = False) -> list[Outcome]:
    """One 32x32 PNG every `delay` s on its own connection (`fresh`: a new one each time, so the
    time includes connecting)."""
    body, conn, outcomes = small_png(7), Connection(port), []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        outcomes.append(await conn.request("POST", "/v1/classify", body))
        if fresh:
            await conn.close()
        await asyncio.sleep(delay)
    await conn.close()
    return outcomes


def latency_summary(outcomes: list[Outcome]) -> dict[str, object]:
    statuses = Counter(o.status for o in outcomes)
    ok = sorted(o.seconds * 1000 for o in outcomes if o.status == 200)
    shed = sorted(o.seconds * 1000 for o in outcomes if o.status == 503)
    out: dict[str, object] = {"n": len(outcomes), "statuses": dict(sorted(statuses.items()))}
    if ok:
        out |= {"ok_p50_ms": _pct(ok, 50), "ok_p99_ms": _pct(ok, 99), "ok_max_ms": round(ok[-1], 1)}
    if shed:
        out |= {"shed_p99_ms": _pct(shed, 99), "shed_max_ms": round(shed[-1], 1)}
    return out


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


# --- server ---------------------------------------------------------------------------------


@dataclass
class Server:
    app_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    peak_mb: float = 0.0
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        env = os.environ | self.env | {"PYTHONPATH": str(self.app_dir)}
        cmd = [sys.executable, "-m", "app.cli.main", "serve", "--host", HOST, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=self.app_dir, env=env, stdout=subprocess.DEVNULL)
        threading.Thread(target=self._sample, daemon=True).start()
        deadline = time.monotonic() + 90
        while not self._ready():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)

    def _ready(self) -> bool:
        async def check() -> bool:
            conn = Connection(self.port)
            outcome = await conn.request("GET", "/readyz", timeout=2)
            await conn.close()
            return outcome.status == 200

        return asyncio.run(check())

    def rss_mb(self) -> float:
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _sample(self) -> None:
        while not self._stop.is_set() and self.proc is not None and self.proc.poll() is None:
            rss = self.rss_mb()
            self.peak_mb = max(self.peak_mb, rss)
            if rss > RSS_CEILING_MB:
                print(f"server RSS {rss:.0f} MB > {RSS_CEILING_MB} MB: stopping it", flush=True)
                self.proc.kill()
            time.sleep(0.01)

    def reset_peak(self) -> float:
        self.peak_mb = self.rss_mb()
        return self.peak_mb

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- phases ---------------------------------------------------------------------------------


async def phase_memory(server: Server) -> dict[str, object]:
    port, out = server.port, {}
    body, ctype = multipart([small_png(i) for i in range(32)])
    before = server.reset_peak()
    conn = Connection(port)
    batch = await conn.request("POST", "/v1/classify/batch?resolution=256", body, ctype, timeout=120)
    await conn.close()
    items = json.loads(batch.body)["results"] if batch.status == 200 else []
    item_statuses = Counter(item["status"] for item in items)
    await asyncio.sleep(3)
    out["batch256"] = {
        "status": batch.status,
        "items": dict(item_statuses),
        "seconds": round(batch.seconds, 2),
        "rss_before_mb": round(before),
        "rss_peak_mb": round(server.peak_mb),
        "rss_after_3s_mb": round(server.rss_mb()),
    }
    before = server.reset_peak()
    started = time.perf_counter()
    conns = [Connection(port) for _ in range(32)]
    path = "/v1/classify?resolution=256"
    singles = await asyncio.gather(
        *(c.request("POST", path, small_png(i), timeout=120) for i, c in enumerate(conns))
    )
    elapsed = time.perf_counter() - started
    for c in conns:
        await c.close()
    await asyncio.sleep(3)
    out["singles256_x32"] = {
        "statuses": dict(Counter(o.status for o in singles)),
        "seconds": round(elapsed, 2),
        "rss_before_mb": round(before),
        "rss_peak_mb": round(server.peak_mb),
        "rss_after_3s_mb": round(server.rss_mb()),
    }
    return out


async def phase_bombs(server: Server, seconds: float) -> dict[str, object]:
    bomb = bomb_png()
    server.reset_peak()
    crowd = asyncio.ensure_future(
        closed_loop(server.port, 64, seconds, lambda i: ("POST", "/v1/classify", bomb, "image/png"))
    )
    await asyncio.sleep(0.5)
    probed = await probe(server.port, seconds - 1.0)
    heavy = await crowd
    return {
        "bomb_bytes": len(bomb),
        "probe_32x32": latency_summary(probed),
        "bombs": {"n": len(heavy), "statuses": dict(Counter(o.status for o in heavy))},
        "rss_peak_mb": round(server.peak_mb),
    }


async def phase_maps(server: Server, seconds: float) -> dict[str, object]:
    conn = Connection(server.port)
    made = await conn.request("POST", "/v1/classify", small_png(3))
    await conn.close()
    prediction = json.loads(made.body)["id"]
    path = f"/v1/predictions/{prediction}/maps.png?size=512&overlay=true"
    server.reset_peak()
    crowd = asyncio.ensure_future(closed_loop(server.port, 8, seconds, lambda i: ("GET", path, b"", "")))
    await asyncio.sleep(0.5)
    probed = await probe(server.port, seconds - 1.0)
    renders = await crowd
    return {
        "probe_32x32": latency_summary(probed),
        "renders": {"n": len(renders), "statuses": dict(Counter(o.status for o in renders))},
        "rss_peak_mb": round(server.peak_mb),
    }


async def phase_overload(server: Server, seconds: float, peak_clients: int, factor: int) -> dict[str, object]:
    """Goodput (200s per second) from `peak_clients` and from `factor` times as many, with wrk
    when it is installed (one C thread: the client leaves the 2 cores to the server)."""
    bodies = [small_png(i) for i in range(16)]

    def make(i: int) -> tuple[str, str, bytes, str]:
        return "POST", "/v1/classify", bodies[i % len(bodies)], "image/png"

    out: dict[str, object] = {"client": "wrk" if loadgen.available("wrk") else "asyncio"}
    for label, clients in (("peak", peak_clients), ("overload", peak_clients * factor)):
        server.reset_peak()
        if loadgen.available("wrk"):
            url, headers = f"http://{HOST}:{server.port}/v1/classify", {"Content-Type": "image/png"}
            loadgen.run("wrk", url, bodies[0], headers, clients, 1.0)  # warm-up
            server.reset_peak()
            result = await asyncio.to_thread(loadgen.run, "wrk", url, bodies[0], headers, clients, seconds)
            out[label] = {
                "clients": clients,
                "goodput_rps": round(result.rps, 1),
                "requests": result.requests,
                "errors": result.error_detail,
                "p99_ms_all": round(result.p99_ms, 1),
                "rss_peak_mb": round(server.peak_mb),
            }
            continue
        await closed_loop(server.port, clients, 1.0, make)  # warm-up: connections, batches
        server.reset_peak()
        outcomes = await closed_loop(server.port, clients, seconds, make)
        statuses = Counter(o.status for o in outcomes)
        out[label] = {
            "clients": clients,
            "goodput_rps": round(statuses.get(200, 0) / seconds, 1),
            "statuses": dict(sorted(statuses.items())),
            "ok_p99_ms": _pct([o.seconds * 1000 for o in outcomes if o.status == 200] or [0.0], 99),
            "rss_peak_mb": round(server.peak_mb),
        }
    peak, over = out["peak"], out["overload"]
    assert isinstance(peak, dict) and isinstance(over, dict)
    out["goodput_ratio"] = round(over["goodput_rps"] / max(peak["goodput_rps"], 1e-9), 3)
    return out


async def phase_idle(
    server: Server, seconds: float, crowd: int = 1000, every_s: float = 3.0
) -> dict[str, object]:
    """`crowd` keep-alive connections hold the connection cap: each sends GET /healthz, idles
    `every_s` (under the 5 s keep-alive timeout) and sends again; one closed or refused connects
    again 0.2 s later. New clients arrive meanwhile: do they get in, and how fast?"""
    stop = time.perf_counter() + seconds + 1.5
    tally: Counter[int] = Counter()

    async def holder(i: int) -> None:
        conn = Connection(server.port)
        await asyncio.sleep(i * 0.001)  # open the crowd over ~1 s, as clients would arrive
        while time.perf_counter() < stop:
            status = (await conn.request("GET", "/healthz", timeout=10)).status
            tally[status] += 1
            await asyncio.sleep(every_s if status == 200 else 0.2)  # refused: take the place back
        await conn.close()

    probed = await probe_beside(server, seconds, [holder(i) for i in range(crowd)])
    return {
        "crowd": crowd,
        "new_clients_32x32": latency_summary(probed),
        "crowd_requests": dict(sorted(tally.items())),  # 0: the connection was closed under it
        "rss_peak_mb": round(server.peak_mb),
    }


async def probe_beside(server: Server, seconds: float, crowd: list[Awaitable[None]]) -> list[Outcome]:
    """Run the crowd; once it has connected (1.5 s), new clients probe for `seconds`."""
    crowd_task = asyncio.ensure_future(asyncio.gather(*crowd))
    await asyncio.sleep(1.5)
    probed = await probe(server.port, seconds, fresh=True)
    await crowd_task
    return probed


async def phase_silent(server: Server, seconds: float, crowd: int = 1000) -> dict[str, object]:
    """`crowd` connections that connect and never send a byte hold the connection cap; one the
    server closes (or refuses) connects again 0.2 s later. New clients arrive meanwhile: do
    they get in, and how fast? Without a place to take, each silent one would hold its place
    for header_timeout_s."""
    stop = time.perf_counter() + seconds + 1.5
    closed = 0

    async def holder(i: int) -> None:
        nonlocal closed
        await asyncio.sleep(i * 0.001)  # open the crowd over ~1 s
        while (left := stop - time.perf_counter()) > 0:
            try:
                reader, writer = await asyncio.open_connection(HOST, server.port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            try:
                await asyncio.wait_for(reader.read(), left)  # to the server's end of stream
                closed += 1
            except (TimeoutError, OSError):
                pass
            finally:
                writer.close()
            await asyncio.sleep(0.2)

    probed = await probe_beside(server, seconds, [holder(i) for i in range(crowd)])
    return {
        "crowd": crowd,
        "new_clients_32x32": latency_summary(probed),
        "silent_connections_closed_by_the_server": closed,
        "rss_peak_mb": round(server.peak_mb),
    }


async def phase_crowd(
    server: Server, seconds: float, clients: int, requests: list[tuple[str, str, bytes, str]], label: str
) -> dict[str, object]:
    """`clients` closed-loop clients cycling through `requests` while the 32x32 probe runs."""
    server.reset_peak()
    crowd = asyncio.ensure_future(
        closed_loop(server.port, clients, seconds, lambda i: requests[(i + int(time.time())) % len(requests)])
    )
    await asyncio.sleep(0.5)
    probed = await probe(server.port, seconds - 1.0)
    heavy = await crowd
    return {
        "probe_32x32": latency_summary(probed),
        label: {"n": len(heavy), "statuses": dict(Counter(o.status for o in heavy))},
        "rss_peak_mb": round(server.peak_mb),
    }


async def phase_echo(server: Server, seconds: float, clients: int = 128) -> dict[str, object]:
    """`clients` closed-loop clients post a valid V2 body whose `id` is 16 MB long beside the probe."""
    body, json_length = echo_bomb()
    header = f"Inference-Header-Content-Length: {json_length}\r\n"
    path = "/v2/models/nin-cifar10/infer"
    server.reset_peak()
    stop = time.perf_counter() + seconds
    outcomes: list[Outcome] = []

    async def client() -> None:
        conn = Connection(server.port)
        while time.perf_counter() < stop:
            sent = await conn.request("POST", path, body, "application/octet-stream", headers=header)
            outcomes.append(sent)
        await conn.close()

    crowd = asyncio.ensure_future(asyncio.gather(*(client() for _ in range(clients))))
    await asyncio.sleep(0.5)
    probed = await probe(server.port, seconds - 1.0)
    await crowd
    return {
        "id_bytes": json_length,
        "clients": clients,
        "probe_32x32": latency_summary(probed),
        "echo_bombs": {"n": len(outcomes), "statuses": dict(Counter(o.status for o in outcomes))},
        "rss_peak_mb": round(server.peak_mb),
    }


async def phase_uploads(server: Server, seconds: float, clients: int = 48) -> dict[str, object]:
    """`clients` closed-loop uploads of large bodies (a decodable 1400x1400 PNG, 8 MB of random
    bytes) beside the 32x32 probe: bytes in flight must not queue the cheap request."""
    noise = np.random.default_rng(11).integers(0, 256, 8 * 1024 * 1024, dtype=np.uint8).tobytes()
    uploads = [
        ("POST", "/v1/classify", large_png(), "image/png"),
        ("POST", "/v1/classify", noise, "image/jpeg"),
    ]
    result = await phase_crowd(server, seconds, clients, uploads, "uploads")
    return {"clients": clients, "upload_bytes": [len(u[2]) for u in uploads]} | result


async def run_phases(
    server: Server,
    phases: list[str],
    seconds: float,
    redis: subprocess.Popen[bytes] | None = None,
    repository: Path | None = None,
) -> dict[str, object]:
    results: dict[str, object] = {"baseline_rss_mb": round(server.rss_mb())}
    for phase in phases:
        print(f"-- {phase}", flush=True)
        if phase == "memory":
            results[phase] = await phase_memory(server)
        elif phase == "bombs":
            results[phase] = await phase_bombs(server, seconds)
        elif phase == "maps":
            results[phase] = await phase_maps(server, seconds)
        elif phase == "overload":
            results[phase] = await phase_overload(server, seconds, 64, 8)
        elif phase == "idle":
            results[phase] = await phase_idle(server, seconds)
        elif phase == "silent":
            results[phase] = await phase_silent(server, seconds)
        elif phase == "formats":
            bombs = [("POST", "/v1/classify", data, ctype) for ctype, data in format_bombs()]
            results[phase] = await phase_crowd(server, seconds, 4, bombs, "format_bombs")
        elif phase == "scanbomb":
            bomb = [("POST", "/v1/classify", scan_bomb(), "image/jpeg")]
            results[phase] = await phase_crowd(server, seconds, 2, bomb, "scan_bombs")
        elif phase == "jsonbomb":
            bomb = [("POST", "/v2/models/nin-cifar10/infer", json_bomb(), "application/json")]
            results[phase] = await phase_crowd(server, seconds, 4, bomb, "json_bombs")
        elif phase == "echo":
            results[phase] = await phase_echo(server, seconds)
        elif phase == "uploads":
            results[phase] = await phase_uploads(server, seconds)
        elif phase in REPOSITORY_PHASES and repository is not None:
            results[phase] = await repository_phase(server, phase, seconds, repository)
        elif phase == "redis" and redis is not None:
            from bench.redis_stall import phase_redis

            results[phase] = await phase_redis(server, redis, seconds)
        print(json.dumps(results[phase]), flush=True)
        await asyncio.sleep(2)
    results["final_rss_mb"] = round(server.rss_mb())
    return results


REPOSITORY_PHASES = ("churn", "configbomb", "loadbombs")  # bench/hostile_repository.py


async def repository_phase(server: Server, phase: str, seconds: float, root: Path) -> dict[str, object]:
    from bench import hostile_repository

    run = {
        "churn": hostile_repository.phase_churn,
        "configbomb": hostile_repository.phase_configbomb,
        "loadbombs": hostile_repository.phase_loadbombs,
    }[phase]
    return await run(server, seconds, root)


def repository_env(phases: list[str], stack: ExitStack) -> tuple[Path | None, dict[str, str]]:
    """With a repository phase, the server serves a temporary repository the phase writes to."""
    if not set(phases) & set(REPOSITORY_PHASES):
        return None, {}
    import tempfile

    from bench.hostile_repository import make_repository

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ninserve-repo-")))
    return root, make_repository(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="checkout whose app/ is served")
    parser.add_argument("--port", type=int, default=18150)
    parser.add_argument("--phases", default="memory,bombs,maps,overload")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--env", action="append", default=[], help="extra NINSERVE_X=value for the server")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--redis-port", type=int, help="the redis phase's redis-server (default: --port + 1)")
    args = parser.parse_args(argv)
    env = {
        "NINSERVE_DEVICE": "cpu",
        "NINSERVE_INTRA_OP_THREADS": str(args.threads),
        "NINSERVE_LOG_LEVEL": "warning",
    }
    env |= dict(item.split("=", 1) for item in args.env)
    phases = args.phases.split(",")
    with ExitStack() as stack:
        redis = None
        if "redis" in phases:
            from bench.redis_stall import REDIS_SERVER, redis_server

            if REDIS_SERVER is None:
                print("-- redis: skipped, redis-server is not installed (scripts/ci-deps.sh)", flush=True)
                phases.remove("redis")
            else:  # every phase then runs on the Redis result store
                redis_port = args.redis_port or args.port + 1
                redis = stack.enter_context(redis_server(redis_port))
                env["NINSERVE_RESULT_STORE"] = f"redis://127.0.0.1:{redis_port}/0"
        repository, repository_settings = repository_env(phases, stack)
        env |= repository_settings
        server = Server(args.app_dir.resolve(), args.port, env)
        server.start()
        try:
            results = asyncio.run(run_phases(server, phases, args.seconds, redis, repository))
        finally:
            server.stop()
    results |= {"app_dir": str(args.app_dir), "env": env, "server_peak_rss_mb": round(server.peak_mb)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
