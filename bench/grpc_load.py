"""A closed-loop gRPC load generator for `bench.run`'s gRPC points: `c` calls in flight, each
sending the next as soon as the last answers, for a fixed time, on as few connections as the
server lets them share (it takes `grpc_max_streams_per_connection`, 8 by default, calls at once
on one connection; a client keeping more would queue them itself). The request is serialised
once and sent as bytes, so the client's own cost per call is grpc's, not protobuf's; its CPU
seconds are reported beside the results, since on a shared 2-core machine they come out of the
server's share (wrk's C loop costs less).

    .venv/bin/python -m bench.grpc_load 127.0.0.1:8001 request.bin -c 8 -d 10

prints one line `BENCH_JSON {...}` with the same fields as bench/loadgen.py's wrk result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench.loadgen import TIMEOUT_S, LoadResult

METHOD = "/inference.GRPCInferenceService/ModelInfer"
STREAMS_PER_CONNECTION = 8  # the server's default grpc_max_streams_per_connection
# Each channel its own connection: a shared subchannel pool would put every channel on one.
SEPARATE = [("grpc.use_local_subchannel_pool", 1)]
ROOT = Path(__file__).resolve().parent.parent


def infer_request(model: str, image: bytes) -> bytes:
    """The ModelInferRequest for one encoded image: BYTES [1, 1], as PyTriton's HTTP body carries it."""
    from app.grpc.proto import inference_pb2 as pb

    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="image", datatype="BYTES", shape=[1, 1])
    request.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
    request.outputs.add(name="scores")
    return request.SerializeToString()


async def _load(target: str, body: bytes, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    channels = [
        grpc.aio.insecure_channel(target, options=SEPARATE)
        for _ in range(-(-concurrency // STREAMS_PER_CONNECTION))
    ]
    try:
        # bytes in, bytes out: no per-call (de)serialisation
        calls = [channel.unary_unary(METHOD) for channel in channels]
        for call in calls:
            await call(body, timeout=TIMEOUT_S)  # connected before the clock starts
        started = time.perf_counter()
        end = started + seconds

        async def client(call: grpc.aio.UnaryUnaryMultiCallable) -> None:
            while (t := time.perf_counter()) < end:
                try:
                    await call(body, timeout=TIMEOUT_S)
                    latencies.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

        await asyncio.gather(*(client(calls[i % len(calls)]) for i in range(concurrency)))
        duration = time.perf_counter() - started
    finally:
        for channel in channels:
            await channel.close()
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "concurrency": concurrency,
        "seconds": duration,
        "requests": len(latencies) + sum(errors.values()),
        "rps": len(latencies) / duration,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "errors": sum(errors.values()),
        "error_detail": errors,
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def run(target: str, body: bytes, concurrency: int, seconds: float) -> tuple[LoadResult, float]:
    """One point and the client's CPU seconds, in its own process (as wrk is), so the benchmark's
    own process stays idle."""
    with tempfile.NamedTemporaryFile(prefix="ninbench-grpc-", suffix=".bin") as request:
        request.write(body)
        request.flush()
        cmd = [sys.executable, "-m", "bench.grpc_load", target, request.name]
        cmd += ["-c", str(concurrency), "-d", str(seconds)]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"bench.grpc_load printed no result (rc {out.returncode}): {out.stderr[-500:]}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    client_cpu_s = result.pop("client_cpu_s")
    return LoadResult(**result), client_cpu_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", help="host:port of the gRPC server")
    p.add_argument("request", type=Path, help="a serialised ModelInferRequest")
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("-d", "--duration", type=float, default=10.0, help="seconds")
    args = p.parse_args(argv)
    result = asyncio.run(_load(args.target, args.request.read_bytes(), args.concurrency, args.duration))
    print("BENCH_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
