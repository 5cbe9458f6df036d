"""Slow and greedy clients against a running server: how long it lets them hold connections and
memory (the numbers in docs/security.md). Loopback only; every phase is bounded by --duration.

    python scripts/slow_clients.py --port 8000 --connections 400 --duration 70 --pid <server pid>

Phases: `headers` (each connection sends one header line every --every seconds), `body` (a
request with Content-Length, then one body byte every --every seconds), `big-headers` (four
connections each streaming a 64 MB header, server RSS sampled from /proc/<pid>), `many-headers`
(one request with 100,000 header lines: the status it gets).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

CRLF = b"\r\n"


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


async def _drip(port: int, head: bytes, drip: bytes, every: float, duration: float) -> float | None:
    """Seconds until the server closed the connection; None if still open after `duration`."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0
    reading = asyncio.ensure_future(reader.read())
    try:
        writer.write(head)
        while time.monotonic() - started < duration:
            done, _ = await asyncio.wait([reading], timeout=every)
            if done:
                return time.monotonic() - started
            try:
                writer.write(drip)
                await writer.drain()
            except OSError:
                return time.monotonic() - started
        return None
    finally:
        reading.cancel()
        writer.close()


async def slow(port: int, mode: str, count: int, every: float, duration: float) -> None:
    if mode == "headers":
        head, drip = b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n"
    else:
        head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        head += b"Content-Length: 100000\r\n\r\n"
        drip = b"x"
    started = time.monotonic()
    results = await asyncio.gather(*(_drip(port, head, drip, every, duration) for _ in range(count)))
    closed = sorted(r for r in results if r is not None)
    still_open = count - len(closed)
    print(f"{mode}: {count} connections, one {'line' if mode == 'headers' else 'byte'} every {every:g} s")
    if closed:
        print(
            f"  closed by the server: {len(closed)}; "
            f"first after {closed[0]:.1f} s, last after {closed[-1]:.1f} s"
        )
    print(
        f"  still open after {duration:g} s: {still_open}   (phase took {time.monotonic() - started:.1f} s)"
    )


async def big_headers(port: int, pid: int | None, size_mb: int, count: int = 4) -> None:
    before = rss_mb(pid)
    peak = before or 0.0

    async def one() -> int:
        sent = 0
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * (1 << 20)
            while sent < size_mb << 20:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except OSError:
            pass
        return sent >> 20

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_mb(pid) or 0.0)
            await asyncio.sleep(0.05)

    sampler = asyncio.ensure_future(sample())
    sent = await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.sleep(0.5)
    sampler.cancel()
    print(f"big-headers: {count} connections streaming a {size_mb} MB header; MB taken before close: {sent}")
    if before is not None:
        print(f"  server RSS {before:.0f} MB before, peak {peak:.0f} MB, after {rss_mb(pid):.0f} MB")


async def many_headers(port: int, lines: int = 100_000) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-H: v\r\n" * lines + b"\r\n")
        await writer.drain()
    except OSError:
        pass
    try:
        answer = await asyncio.wait_for(reader.read(200), 30)
    except (OSError, TimeoutError):
        answer = b""
    writer.close()
    status = answer.split(CRLF, 1)[0].decode() or "(closed)"
    print(f"many-headers: {lines} header lines -> {status}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--pid", type=int, help="server process, for its RSS")
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between drips")
    parser.add_argument("--duration", type=float, default=70.0, help="give up on a slow connection after")
    parser.add_argument("--header-mb", type=int, default=64)
    parser.add_argument("phases", nargs="*", default=["headers", "body", "big-headers", "many-headers"])
    args = parser.parse_args()
    for phase in args.phases:
        if phase in ("headers", "body"):
            asyncio.run(slow(args.port, phase, args.connections, args.every, args.duration))
        elif phase == "big-headers":
            asyncio.run(big_headers(args.port, args.pid, args.header_mb))
        elif phase == "many-headers":
            asyncio.run(many_headers(args.port))


if __name__ == "__main__":
    main()
