"""RSS per loaded model version under ONNX Runtime's CPU allocator choices (app/core/engine.py):

    session  each session keeps its own CPU arena (ORT's default; ninserve before the shared one)
    shared   one arena in ORT's environment, shared by every session (session.use_env_allocators)
    off      no arena: every run allocates and frees

    .venv/bin/python -m bench.model_memory [--versions 3] [--rounds 3]

Each (allocator, precision) runs in a fresh process: it loads `--versions` sessions of the
bundled artifact one after another, each warmed up as the registry does (batch 1 and 32 at
32x32), and prints the RSS growth per version. Then the same process times runs of batch 1 and
32 (minimum over rounds; the machine is shared), so the cost of the choice on the hot path shows
beside its memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from app.config import DEFAULT_MODEL_PATH, INT8_MODEL_PATH

ALLOCATORS = ("session", "shared", "off")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(allocator: str, precision: str, versions: int, rounds: int) -> dict[str, object]:
    from app.core import engine as engine_module
    from app.core.memory import return_large_frees_to_the_os

    return_large_frees_to_the_os()  # as the server does at start

    path = INT8_MODEL_PATH if precision == "int8" else DEFAULT_MODEL_PATH
    arena = {"session": "keep", "shared": "shared", "off": "off"}[allocator]
    base = rss_mb()
    growth, engines = [], []
    for _ in range(versions):
        before = rss_mb()
        eng = engine_module.Engine(path, device="cpu", intra_op_threads=2, arena=arena)  # type: ignore[arg-type]
        eng.warmup((1, 32))
        engines.append(eng)
        growth.append(round(rss_mb() - before, 1))
    timing = {}
    for n in (1, 32):
        images = np.zeros((n, 32, 32, 3), dtype=np.uint8)
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            runs = 200 if n == 1 else 20
            for _ in range(runs):
                engines[0].run(images)
            best = min(best, (time.perf_counter() - start) / runs * 1000)
        timing[f"ms_batch{n}"] = round(best, 3)
    return {
        "allocator": allocator,
        "precision": precision,
        "rss_growth_mb": growth,
        "total_mb": round(rss_mb() - base, 1),
        **timing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("ALLOCATOR", "PRECISION"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.versions, args.rounds)))
        return 0
    for precision in ("fp32", "int8"):
        for allocator in ALLOCATORS:
            command = [sys.executable, "-m", "bench.model_memory", "--versions", str(args.versions)]
            command += ["--rounds", str(args.rounds), "--child", allocator, precision]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            print(out.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
