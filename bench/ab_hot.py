"""The hot path, A/B in one run: the 32x32 PNG at c=1, 8, 64 against two checkouts' servers,
interleaved round by round so both see the same machine load (wrk, loopback only, bounded).

    .venv/bin/python -m bench.ab_hot --a /tmp/old-checkout --b . --rounds 3 --seconds 5

Each server runs alone while it is measured (the other idles: ONNX Runtime does not spin).
Prints req/s and p99 per concurrency for A and B, and B/A; the median over rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench import loadgen
from bench.hostile import HOST, ROOT, Server, small_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="checkout A (the baseline)")
    parser.add_argument("--b", type=Path, default=ROOT, help="checkout B (default: this one)")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--ports", default="18160,18161")
    args = parser.parse_args(argv)
    if not loadgen.available("wrk"):
        print("wrk is needed (bash bench/setup_peers.sh installs it)", file=sys.stderr)
        return 2
    env = {
        "NINSERVE_DEVICE": "cpu",
        "NINSERVE_INTRA_OP_THREADS": str(args.threads),
        "NINSERVE_LOG_LEVEL": "warning",
    }
    ports = [int(p) for p in args.ports.split(",")]
    servers = {"A": Server(args.a.resolve(), ports[0], env), "B": Server(args.b.resolve(), ports[1], env)}
    body, headers = small_png(1), {"Content-Type": "image/png"}
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, dict[int, list[tuple[float, float]]]] = {k: {c: [] for c in levels} for k in servers}
    try:
        for server in servers.values():
            server.start()
        for round_ in range(args.rounds):
            for c in levels:
                order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
                for name in order:
                    url = f"http://{HOST}:{servers[name].port}/v1/classify"
                    loadgen.run("wrk", url, body, headers, c, 1.0)  # warm-up
                    r = loadgen.run("wrk", url, body, headers, c, args.seconds)
                    results[name][c].append((r.rps, r.p99_ms))
                    print(f"round {round_} {name} c={c}: {r.rps:.1f} req/s p99 {r.p99_ms:.1f} ms", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    summary = {}
    for c in levels:
        a_rps = statistics.median(x[0] for x in results["A"][c])
        b_rps = statistics.median(x[0] for x in results["B"][c])
        a_p99 = statistics.median(x[1] for x in results["A"][c])
        b_p99 = statistics.median(x[1] for x in results["B"][c])
        summary[c] = {
            "A_rps": a_rps,
            "B_rps": b_rps,
            "B/A": round(b_rps / a_rps, 3),
            "A_p99": a_p99,
            "B_p99": b_p99,
        }
        line = f"c={c}: A {a_rps:.1f} req/s (p99 {a_p99:.1f} ms)  B {b_rps:.1f} req/s (p99 {b_p99:.1f} ms)"
        print(f"{line}  B/A {b_rps / a_rps:.3f}")
    print(json.dumps({"a": str(args.a), "b": str(args.b), "rounds": args.rounds, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
