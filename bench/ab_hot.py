"""The hot path, A/B in one run: a test image at c=1, 8, 64 against two checkouts' servers,
interleaved round by round so both see the same machine load (wrk, loopback only, bounded).

    .venv/bin/python -m bench.ab_hot --a /tmp/old-checkout --b . --rounds 3 --seconds 5
    .venv/bin/python -m bench.ab_hot --a /tmp/old-checkout --b . --image jpeg --multipart
    .venv/bin/python -m bench.ab_hot --a . --b . --a-env NINSERVE_ORT_ARENA=shared \
        --b-env NINSERVE_ORT_ARENA=off                  # one setting A/B, same checkout

The image is a 32x32 PNG by default (`--image jpeg`: bench.images' 640x480 JPEG), sent as the raw
body (`--multipart`: as the `file` field of a form, as bench.run sends it).

Each server runs alone while it is measured (the other idles: ONNX Runtime does not spin).
Prints req/s, p50, p99 and the server's CPU per request (user + system from /proc, less
sensitive than req/s to what else a shared machine runs): all threads (ORT's included), the
event-loop thread alone, where HTTP parsing, middleware and handlers run, and `out`: the threads
outside ONNX Runtime (event loop, decode pool, lanes; found by name with `py-spy dump`, so
without py-spy it equals `loop`). Per concurrency for A
and B, and B/A; the median over rounds is reported. An image that is the only one in the server
runs its ORT call in its decode thread (app/core/batcher.py, `try_alone`), so for a checkout with
that path `out` counts that call too, mostly at c=1: compare `cpu` and `loop` across such trees.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench import images, loadgen, procs
from bench.hostile import HOST, ROOT, Server, small_png

# One round's point: req/s, p50 and p99 (ms), server CPU per request (ms): all threads, the event
# loop, and every thread outside ONNX Runtime (event loop, decode pool, lanes).
FIELDS = ("rps", "p50", "p99", "cpu", "loop", "out")
OUTSIDE_ORT = ("MainThread", "ninserve-io", "ninserve-large-decode", "ninserve-render")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="checkout A (the baseline)")
    parser.add_argument("--b", type=Path, default=ROOT, help="checkout B (default: this one)")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--ports", default="18160,18161")
    parser.add_argument(
        "--image",
        choices=["png32", "jpeg", "small"],
        default="small",
        help="bench.images' png32 or jpeg; small: hostile's 32x32 PNG (the default)",
    )
    parser.add_argument("--multipart", action="store_true", help="send a multipart form, not the raw body")
    parser.add_argument("--a-env", default="", help="KEY=VALUE,... for A's server only (A/B a setting)")
    parser.add_argument("--b-env", default="", help="KEY=VALUE,... for B's server only")
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
    servers = {
        "A": Server(args.a.resolve(), ports[0], env | _pairs(args.a_env)),
        "B": Server(args.b.resolve(), ports[1], env | _pairs(args.b_env)),
    }
    if args.image == "small":
        image, (content_type, ext) = small_png(1), ("image/png", "png")
    else:
        image, (content_type, ext) = images.make(args.image), images.IMAGES[args.image]
    body, headers = (
        loadgen.request_for("multipart", image, content_type, f"x.{ext}")
        if args.multipart
        else (image, {"Content-Type": content_type})
    )
    levels = [int(c) for c in args.concurrency.split(",")]
    # per server and concurrency, one FIELDS tuple per round
    results: dict[str, dict[int, list[tuple[float, ...]]]] = {k: {c: [] for c in levels} for k in servers}
    try:
        for server in servers.values():
            server.start()
        for round_ in range(args.rounds):
            for c in levels:
                order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
                for name in order:
                    url = f"http://{HOST}:{servers[name].port}/v1/classify"
                    loadgen.run("wrk", url, body, headers, c, 1.0)  # warm-up
                    outside = outside_ort_threads(servers[name])
                    before = server_cpu_s(servers[name], outside)
                    r = loadgen.run("wrk", url, body, headers, c, args.seconds)
                    after = server_cpu_s(servers[name], outside)
                    n = max(r.requests, 1)
                    cpu_ms, loop_ms, out_ms = ((b - a) * 1000 / n for a, b in zip(before, after, strict=True))
                    results[name][c].append((r.rps, r.p50_ms, r.p99_ms, cpu_ms, loop_ms, out_ms))
                    print(
                        f"round {round_} {name} c={c}: {r.rps:.1f} req/s p50 {r.p50_ms:.2f} ms "
                        f"p99 {r.p99_ms:.1f} ms cpu {cpu_ms:.3f} loop {loop_ms:.3f} out {out_ms:.3f} ms/req "
                        f"errors {r.errors}",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.stop()
    summary = {}
    for c in levels:
        a, b = (
            dict(zip(FIELDS, map(statistics.median, zip(*results[k][c], strict=True)), strict=True))
            for k in ("A", "B")
        )
        summary[c] = {f"A_{k}": round(v, 3) for k, v in a.items()} | {
            f"B_{k}": round(v, 3) for k, v in b.items()
        }
        summary[c] |= {f"B/A_{k}": round(b[k] / a[k], 3) for k in FIELDS if k != "p99"}
        ratios = ", ".join(f"{k} {summary[c][f'B/A_{k}']:.3f}" for k in FIELDS if k != "p99")
        print(f"c={c}: A {_point(a)}  B {_point(b)}  B/A {ratios}")
    print(json.dumps({"a": str(args.a), "b": str(args.b), "rounds": args.rounds, "summary": summary}))
    return 0


def _pairs(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(",") if pair)


def _point(m: dict[str, float]) -> str:
    return (
        f"{m['rps']:.1f} req/s (p50 {m['p50']:.2f}, p99 {m['p99']:.1f} ms; "
        f"cpu {m['cpu']:.3f}, loop {m['loop']:.3f}, outside ORT {m['out']:.3f} ms/req)"
    )


def server_cpu_s(server: Server, outside: list[int]) -> tuple[float, float, float]:
    """(all threads, the main thread: uvicorn's event loop, the `outside` threads) user + system
    seconds so far."""
    assert server.proc is not None
    pid = server.proc.pid
    return procs.usage(pid).cpu_s, thread_cpu_s(pid, pid), sum(thread_cpu_s(pid, tid) for tid in outside)


def thread_cpu_s(pid: int, tid: int) -> float:
    try:
        fields = (Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1]).split()
    except OSError:  # the thread has ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / procs.TICKS  # utime, stime


def outside_ort_threads(server: Server) -> list[int]:
    """Native ids of the server's Python threads outside ONNX Runtime, named by `py-spy dump`
    (the pools start threads as work arrives, so ask after the warm-up); the main thread alone
    when py-spy is missing or cannot attach."""
    assert server.proc is not None
    pid = server.proc.pid
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        dump = subprocess.run([spy, "dump", "--pid", str(pid), "--json"], capture_output=True, timeout=30)
        threads = json.loads(dump.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return [pid]
    names = {t.get("os_thread_id"): re.sub(r"_\d+$", "", t.get("thread_name") or "") for t in threads}
    return [tid for tid, name in names.items() if tid and name in OUTSIDE_ORT] or [pid]


if __name__ == "__main__":
    sys.exit(main())
