"""HTTP V2 against gRPC on one ninserve process, interleaved round by round so both see the same
machine load: the same image in the same BYTES tensor, the same concurrency, HTTP with wrk and
gRPC with bench/grpc_load.py (loopback only, bounded in time).

    .venv/bin/python -m bench.protocol_ab --rounds 3 --seconds 5 --concurrency 1,8,64

Prints, per protocol and concurrency, the median over rounds of req/s, p50 and p99 (ms) and the
server's CPU per request (ms, all its threads, from /proc: less sensitive than req/s to what else
a shared machine runs), the gRPC client's own CPU per request, and gRPC / HTTP.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from bench import grpc_load, images, loadgen, procs
from bench.servers import ROOT, Options, Server, build

HTTP_PORT = 18420  # gRPC on HTTP_PORT + 50 (bench/servers.py: ninserve-grpc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="per point")
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--image", choices=list(images.IMAGES), default="png32")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    spec = build("ninserve-grpc", Options(threads=args.threads), port=HTTP_PORT)
    if spec.unavailable:
        print(spec.unavailable, file=sys.stderr)
        return 2
    assert spec.grpc_target is not None
    image = images.make(args.image)
    ctype, ext = images.IMAGES[args.image]
    http_body, headers = loadgen.request_for("triton", image, ctype, f"x.{ext}")
    grpc_body = grpc_load.infer_request("nin-cifar10", image)
    server = Server(spec, ROOT / "scratch" / "bench" / "logs" / "protocol_ab.log")
    server.start()
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        server.wait_ready((http_body, headers), 120)
        grpc_load.run(spec.grpc_target, grpc_body, max(levels), 2)  # warm both paths
        loadgen.run("wrk", spec.url, http_body, headers, max(levels), 2)
        for round_ in range(args.rounds):
            for c in levels:
                for protocol in ("http", "grpc"):
                    cpu0 = server.usage().cpu_s
                    client_ms = float("nan")
                    if protocol == "http":
                        res = loadgen.run("wrk", spec.url, http_body, headers, c, args.seconds)
                    else:
                        res, client_s = grpc_load.run(spec.grpc_target, grpc_body, c, args.seconds)
                        client_ms = client_s * 1000 / max(res.requests, 1)
                    cpu_ms = (server.usage().cpu_s - cpu0) * 1000 / max(res.requests, 1)
                    point = {"rps": res.rps, "p50": res.p50_ms, "p99": res.p99_ms, "cpu": cpu_ms}
                    results.setdefault((protocol, c), []).append(point | {"client": client_ms})
                    print(
                        f"round {round_ + 1} {protocol:4} c={c:<3} {res.rps:7.1f} req/s  "
                        f"p50 {res.p50_ms:7.2f}  p99 {res.p99_ms:7.2f} ms  "
                        f"server CPU {cpu_ms:5.2f} ms/req  errors {res.errors}",
                        flush=True,
                    )
    finally:
        server.stop()
    print(f"\nmedian of {args.rounds} rounds, {args.image}, load average now {procs.load_average():.2f}")
    print("| c | HTTP req/s | gRPC req/s | gRPC/HTTP | HTTP p50 / p99 ms | gRPC p50 / p99 ms |", end="")
    print(" server CPU ms/req HTTP / gRPC | gRPC client CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|")
    for c in levels:
        h, g = (_median(results[(proto, c)]) for proto in ("http", "grpc"))
        print(
            f"| {c} | {h['rps']:.0f} | {g['rps']:.0f} | {g['rps'] / h['rps']:.2f} "
            f"| {h['p50']:.2f} / {h['p99']:.2f} | {g['p50']:.2f} / {g['p99']:.2f} "
            f"| {h['cpu']:.2f} / {g['cpu']:.2f} | {g['client']:.2f} |"
        )
    return 0


def _median(points: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(p[key] for p in points) for key in points[0]}


if __name__ == "__main__":
    Path(ROOT / "scratch" / "bench" / "logs").mkdir(parents=True, exist_ok=True)
    raise SystemExit(main())
