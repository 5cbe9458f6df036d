"""ONNX Runtime's CPU arena policies (app/core/engine.py `arena`), measured on the shipped model:
time per run for the 32x32 hot path and at resolution 256, and what RSS the process keeps.

    .venv/bin/python -m bench.arena [--rounds 5] [--model model/artifacts/nin-cifar10.onnx]

Timing runs the three engines in one process, interleaved round by round (the minimum over
rounds is reported: the machine is shared). Memory runs each policy in a fresh process: RSS
after warm-up, the peak (VmHWM) of one resolution-256 run, and RSS after it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from app.config import DEFAULT_MODEL_PATH
from app.core.engine import Engine

POLICIES = ("keep", "off", "shrink")
CASES = ((1, 32, 200), (32, 32, 20), (1, 256, 4), (4, 128, 4))  # (images, side, runs per round)


def status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def memory_of(policy: str, model: Path, threads: int) -> dict[str, float]:
    """In this (fresh) process: one policy's RSS around a resolution-256 run."""
    engine = Engine(model, device="cpu", intra_op_threads=threads, arena=policy, shrink_above_images=32)
    engine.warmup((1, 32))
    warm = status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:  # reset VmHWM to the current RSS
        refs.write("5")
    engine.run(np.random.default_rng(0).integers(0, 255, (1, 256, 256, 3), dtype=np.uint8))
    return {"rss_warm_mb": warm, "peak_mb": status_mb("VmHWM"), "rss_after_mb": status_mb("VmRSS")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-of", choices=POLICIES, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of, args.model, args.threads)))
        return 0
    engines = {
        p: Engine(args.model, device="cpu", intra_op_threads=args.threads, arena=p, shrink_above_images=32)
        for p in POLICIES
    }
    rng = np.random.default_rng(1)
    out: dict[str, dict[str, object]] = {p: {} for p in POLICIES}
    for n, side, reps in CASES:
        images = rng.integers(0, 255, (n, side, side, 3), dtype=np.uint8)
        best = dict.fromkeys(POLICIES, float("inf"))
        for _ in range(args.rounds):
            for policy, engine in engines.items():
                engine.run(images)
                started = time.perf_counter()
                for _ in range(reps):
                    engine.run(images)
                best[policy] = min(best[policy], (time.perf_counter() - started) / reps * 1000)
        for policy in POLICIES:
            out[policy][f"{n}x{side}_ms"] = round(best[policy], 3)
        line = "  ".join(f"{p} {best[p]:.2f} ms ({best[p] / best['keep']:.3f}x)" for p in POLICIES)
        print(f"{n} x {side}x{side}: {line}", flush=True)
    for policy in POLICIES:
        cmd = [sys.executable, "-m", "bench.arena", "--memory-of", policy, "--model", str(args.model)]
        cmd += ["--threads", str(args.threads)]
        child = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[policy] |= {k: round(v) for k, v in json.loads(child.stdout.splitlines()[-1]).items()}
        print(f"{policy}: {out[policy]}", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
