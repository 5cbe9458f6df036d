"""Where a request's CPU goes: py-spy samples ninserve while wrk loads it, then a summary.

    .venv/bin/python -m bench.profile --concurrency 64 --seconds 10 [--image jpeg] [--port 8100]
    .venv/bin/python -m bench.profile --app-dir /tmp/old-checkout     # profile another checkout

Prints the throughput under the profiler, how busy the machine's CPUs were, each server thread's
share of the window (ORT runs in `ninserve-ort`, decoding in `ninserve-io`) and what the threads
outside ORT (event loop, decode pool and lanes) cost per request in core-ms, the event-loop
thread's samples by package (leaf frame), and its heaviest app/ frames (inclusive). Samples count
a thread waiting for the GIL as busy, so on a loaded machine the per-request figure is an upper
bound. The raw
py-spy output (flamegraph-ready "folded" stacks) is kept under scratch/bench/profile/.
py-spy needs ptrace rights over the server (root, or kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench import images, loadgen
from bench.servers import ROOT, Options, Server, build

RATE_HZ = 200


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


# Python threads that do the serving work around ORT: the event loop, the decode pool, the lanes.
OUTSIDE_ORT = ("MainThread", "ninserve-io", "ninserve-large-decode", "ninserve-render")


def summarize(folded: Path, seconds: float, requests: int = 0, top: int = 12) -> str:
    threads: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    app_frames: Counter[str] = Counter()
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        threads[re.sub(r"_\d+$", "", thread)] += n
        if thread != "MainThread":
            continue
        match = re.search(r"\(([\w.]+)[/.]", frames[-1])
        packages[match.group(1) if match else frames[-1]] += n
        for frame in set(frames[1:]):
            if "(app/" in frame:
                app_frames[frame] += n
    possible = seconds * RATE_HZ
    lines = ["thread busy share of the window (samples / possible):"]
    lines += [f"  {name:<16} {n / possible:6.1%}" for name, n in threads.most_common()]
    if requests:
        outside = sum(n for name, n in threads.items() if name in OUTSIDE_ORT) / RATE_HZ
        loop = threads["MainThread"] / RATE_HZ
        lines.append(
            f"outside ORT: {outside * 1000 / requests:.3f} core-ms per request "
            f"(event loop {loop * 1000 / requests:.3f})"
        )
    main = threads["MainThread"] or 1
    lines.append("event-loop thread by package (leaf frame):")
    lines += [f"  {name:<24} {n / main:6.1%}" for name, n in packages.most_common(top)]
    lines.append("event-loop thread, app/ frames (inclusive):")
    lines += [f"  {n / main:6.1%}  {frame}" for frame, n in app_frames.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--image", choices=["png32", "jpeg"], default="png32")
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    p.add_argument("--int8", action="store_true", help="profile the int8 artifact")
    p.add_argument("--port", type=int, default=None, help="port to serve on (default: bench.run's)")
    p.add_argument("--app-dir", type=Path, default=None, help="serve this checkout (default: this one)")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists() or not loadgen.available("wrk"):
        print("needs py-spy (pip install py-spy) and wrk (apt-get install wrk)", file=sys.stderr)
        return 2

    opts = Options(threads=args.threads, max_wait_ms=0.0)
    spec = build("ninserve-int8" if args.int8 else "ninserve", opts, args.port)
    if args.app_dir is not None:
        app_dir = args.app_dir.resolve()
        spec = dataclasses.replace(spec, cwd=app_dir, env=spec.env | {"PYTHONPATH": str(app_dir)})
    out_dir = ROOT / "scratch" / "bench" / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folded = out_dir / f"{stamp}.folded"
    content_type, ext = images.IMAGES[args.image]
    body, headers = loadgen.request_for("multipart", images.make(args.image), content_type, f"x.{ext}")
    server = Server(spec, out_dir / f"{stamp}.log")
    server.start()
    try:
        server.wait_ready((body, headers), timeout=60)
        loadgen.run("wrk", spec.url, body, headers, args.concurrency, 2)  # warm-up
        record = [spy, "record", "-p", str(server.pid), "-d", str(args.seconds), "-r", str(RATE_HZ)]
        record += ["-f", "raw", "-o", str(folded), "--threads", "--nonblocking"]
        profiler = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        busy0, total0 = cpu_times()
        load = loadgen.run("wrk", spec.url, body, headers, args.concurrency, args.seconds)
        busy1, total1 = cpu_times()
        profiler.wait(30)
    finally:
        server.stop()
    if not folded.is_file():
        print("py-spy wrote nothing: does it have ptrace rights over the server?", file=sys.stderr)
        return 1
    print(
        f"{spec.name} {args.image} c={args.concurrency}: {load.rps:.0f} req/s under the profiler, "
        f"p50 {load.p50_ms:.2f} ms, errors {load.errors}; CPUs busy "
        f"{(busy1 - busy0) / max(total1 - total0, 1):.0%}"
    )
    print(summarize(folded, args.seconds, load.requests))
    print(f"raw stacks: {folded.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
