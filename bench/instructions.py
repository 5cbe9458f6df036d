"""Instructions the event loop executes per v1 request, counted by valgrind (callgrind): a cost
measure that a shared machine's noise does not move, for A/B-ing the hot path.

    .venv/bin/python -m bench.instructions [--image jpeg] [--requests 200]
    PYTHONPATH=/tmp/old-checkout .venv/bin/python -m bench.instructions    # another checkout's app

Drives the whole app in-process (ASGI, no socket) one request at a time, the test image as a
multipart form, with ONNX Runtime replaced by a fixed answer (the model's cost is the same for
every server; this counts what the server adds: middleware, multipart, pricing, decode, batcher
hand-off, result body, store and metrics). Counting is switched on only around the measured
requests (`callgrind_control`), after start-up and 50 warm-up requests. Needs valgrind
(`apt-get install valgrind`); one image takes ~20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench import images
from bench.stages import classify_request, until_ready


def _fake_engine() -> None:
    """Every batch answered at once without ORT, on the event loop (no thread hand-off either)."""
    from app.core import batcher

    answer = batcher.BatchResult(np.full(10, 0.1, np.float32), np.zeros((10, 8, 8), np.float32), 0.0, 0.5, 1)

    async def submit(self: batcher.Batcher, pixels: np.ndarray, *, deadline: float | None = None) -> Any:
        return answer

    batcher.Batcher.submit = submit  # type: ignore[method-assign]
    batcher.Batcher.try_alone = lambda self, pixels, deadline: None  # type: ignore[method-assign]


async def _drive(image: str, requests: int) -> None:
    from app.config import Settings
    from app.http.main import create_app

    app = create_app(Settings())
    one = classify_request(app, image)
    toggle = ["callgrind_control", "-i"]
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        await until_ready(one, warmup=50)
        subprocess.run([*toggle, "on", str(os.getpid())], check=True, capture_output=True)
        for _ in range(requests):
            assert await one() == 200
        subprocess.run([*toggle, "off", str(os.getpid())], check=True, capture_output=True)


def count(image: str, requests: int) -> int:
    """Run this module under callgrind for one image; instructions per request."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--inside",
                "--image",
                image,
                "--requests",
                str(requests),
            ],
            capture_output=True,
            text=True,
            env=os.environ | {"NINSERVE_DEVICE": "cpu"},
            timeout=1800,
        )
        found = re.search(r"Collected : ([\d,]+)", run.stderr)
        if run.returncode != 0 or found is None:
            raise RuntimeError(f"callgrind failed (rc {run.returncode}): {run.stderr[-800:]}")
        return int(found.group(1).replace(",", "")) // requests


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", choices=list(images.IMAGES), action="append")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # the run under valgrind
    args = p.parse_args(argv)
    chosen = args.image or list(images.IMAGES)
    if args.inside:
        _fake_engine()
        asyncio.run(_drive(chosen[0], args.requests))
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    for image in chosen:
        print(f"{image:6} {count(image, args.requests):>10,} instructions per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
