"""Per-stage CPU of one v1 classify request, in-process: what each stage costs the thread it runs on.

    PYTHONPATH=. .venv/bin/python -m bench.stages [--image jpeg] [--requests 1000]
    PYTHONPATH=/tmp/old-checkout .venv/bin/python -m bench.stages    # another checkout's app

Times the stages on their own (µs per call, best of 5 repeats: pricing from the header, the
multipart parse, the decode, the v1 result body and the store write), then drives the whole app
in-process (ASGI, no uvicorn, no socket) with the test image as a multipart form, one request at a
time, and reports the event-loop thread's CPU per request (thread_time) and the wall time. The
ONNX Runtime model is the bundled one as shipped (precision=auto: int8 on the CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

from app.config import Settings
from app.core.decode import decode_image
from app.core.memory import decode_cost
from bench import images, loadgen

PATH = "/v1/classify"


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def stage_costs(image: str, number: int) -> dict[str, float]:
    from python_multipart.multipart import MultipartParser

    from app.http.multipart import _Collector

    data = images.make(image)
    ctype, ext = images.IMAGES[image]
    body, headers = loadgen.request_for("multipart", data, ctype, f"x.{ext}")
    boundary = headers["Content-Type"].split("boundary=")[1].encode()

    def parse() -> None:
        collector = _Collector(1, 100)
        parser = MultipartParser(boundary, collector.callbacks())
        for i in range(0, len(body), 65536):
            parser.write(body[i : i + 65536])

    limit = Settings().max_image_pixels
    return {
        "price (header)": per_call_us(lambda: decode_cost(data, 32, limit), number),
        "multipart parse": per_call_us(parse, max(1, number // 10)),
        "decode": per_call_us(
            lambda: decode_image(data, 32, max_pixels=limit, preview_size=512, keep_bytes=256 * 1024),
            max(1, number // 20),
        ),
    }


def classify_request(app: Any, image: str) -> Callable[[], Awaitable[int]]:
    """One v1 classify request of the test image as a multipart form, driven through `app` in
    process (ASGI, no socket); each call sends it once and returns the status."""
    ctype, ext = images.IMAGES[image]
    body, headers = loadgen.request_for("multipart", images.make(image), ctype, f"x.{ext}")
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-length", str(len(body)).encode()), (b"host", b"bench")]
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    async def one() -> int:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        messages = iter(
            [
                {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)
            ]
        )
        status = 0

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return one


async def until_ready(one: Callable[[], Awaitable[int]], warmup: int = 100) -> None:
    """Retry until the model (loading in the background) answers, then `warmup` more requests."""
    for _ in range(3000):
        if await one() == 200:
            break
        await asyncio.sleep(0.1)
    for _ in range(warmup):
        await one()


async def app_costs(image: str, requests: int) -> dict[str, float]:
    from app.http.main import create_app

    app = create_app(Settings())
    one = classify_request(app, image)
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        await until_ready(one)
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for _ in range(requests):
            await one()
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    return {"event loop CPU per request": cpu / requests * 1e6, "wall per request": wall / requests * 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", choices=list(images.IMAGES), default="jpeg")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--number", type=int, default=2000, help="calls per timing of the cheapest stage")
    args = p.parse_args(argv)
    costs = stage_costs(args.image, args.number) | asyncio.run(app_costs(args.image, args.requests))
    for name, us in costs.items():
        print(f"{args.image:6} {name:28} {us:8.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
