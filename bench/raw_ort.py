"""The limit: ONNX Runtime on the artifact, in-process, with the servers' session options.

No HTTP, no queue, no framework: what remains when every server cost is zero. Measured per
artifact (fp32 and, when it exists, the static int8 one):

- `ort`: `session.run` on ready pixels: batch 1 latency (p50/p99) and batched throughput.
- `e2e/<image>`: decode + preprocess + `session.run`, per image, for each test image: servers
  must decode too, so this is the fair ceiling for a server's requests/s at the same batch size.
  Decoding is serial here (one thread feeds the batch), as in a server with one decode thread.

    .venv/bin/python -m bench.raw_ort --threads 2 --seconds 3 --json scratch/bench/raw.json

The session options come from bench/peers/common.py (the same as ninserve's Engine on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench import images
from bench.peers import common

ARTIFACTS = common.ROOT / "model" / "artifacts"
DEFAULT_MODELS = {"fp32": ARTIFACTS / "nin-cifar10.onnx", "int8": ARTIFACTS / "nin-cifar10-int8.onnx"}
BATCHES = (1, 8, 64)


def measure(fn: Callable[[], object], seconds: float, min_iters: int = 5) -> np.ndarray:
    """Call `fn` repeatedly for `seconds` (after one untimed warm-up call); each call's ms."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < min_iters:
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return np.asarray(times)


def summarize(ms: np.ndarray, batch: int) -> dict[str, float]:
    """Per-call latency percentiles and the throughput they imply (images/s, one caller)."""
    return {
        "batch": batch,
        "calls": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "images_per_s": float(batch * ms.size / (ms.sum() / 1000.0)),
    }


def bench_model(path: Path, threads: int, seconds: float, batches: tuple[int, ...]) -> dict[str, Any]:
    session = common.make_session(path, threads)
    rng = np.random.default_rng(0)
    ort_rows = {}
    for n in batches:
        pixels = rng.integers(0, 256, (n, common.SIZE, common.SIZE, 3), dtype=np.uint8)
        ms = measure(lambda p=pixels: session.run(None, {"image": p}), seconds)
        ort_rows[str(n)] = summarize(ms, n)
    e2e: dict[str, Any] = {}
    for name in images.IMAGES:
        data = images.make(name)
        decode_ms = measure(lambda d=data: common.preprocess(d), seconds / 2)
        rows = {}
        for n in batches:
            payload = [data] * n
            ms = measure(
                lambda p=payload: session.run(None, {"image": np.stack([common.preprocess(b) for b in p])}),
                seconds,
            )
            rows[str(n)] = summarize(ms, n)
        e2e[name] = {"bytes": len(data), "decode_p50_ms": float(np.percentile(decode_ms, 50)), "batch": rows}
    return {"path": str(path), "ort": ort_rows, "e2e": e2e}


def run(
    models: dict[str, Path], threads: int, seconds: float, batches: tuple[int, ...] = BATCHES
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "threads": threads,
        "seconds_per_point": seconds,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "models": {},
    }
    for name, path in models.items():
        if not path.is_file():
            out["models"][name] = {"path": str(path), "missing": "artifact not found"}
            continue
        out["models"][name] = bench_model(path, threads, seconds, batches)
    return out


def table(result: dict[str, Any]) -> str:
    """Plain-text table: one row per model x (ort | e2e image) x batch."""
    lines = [
        f"raw ONNX Runtime {result['onnxruntime']}, {result['threads']} intra-op threads, "
        f"{result['seconds_per_point']} s per point",
        f"{'model':6} {'what':12} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>9}",
    ]
    for model, res in result["models"].items():
        if "missing" in res:
            lines.append(f"{model:6} missing: {res['path']}")
            continue
        groups = [("ort", res["ort"])] + [(f"e2e/{k}", v["batch"]) for k, v in res["e2e"].items()]
        for what, rows in groups:
            for n, row in rows.items():
                lines.append(
                    f"{model:6} {what:12} {n:>5} {row['p50_ms']:8.3f} {row['p99_ms']:8.3f} "
                    f"{row['images_per_s']:9.0f}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per point")
    parser.add_argument("--batches", default="1,8,64", help="comma-separated batch sizes")
    parser.add_argument("--fp32", type=Path, default=DEFAULT_MODELS["fp32"])
    parser.add_argument("--int8", type=Path, default=DEFAULT_MODELS["int8"])
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))
    result = run({"fp32": args.fp32, "int8": args.int8}, args.threads, args.seconds, batches)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
