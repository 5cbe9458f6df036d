"""Message floods on a gRPC port, for tests/app/grpc/test_hostile.py and the measurements in
docs/api.md#memory-under-a-flood: many near-limit ModelInfer calls at once, on one connection or
spread over many, while a well-behaved client on its own connection keeps calling.

    python -m tests.app.grpc.flood 127.0.0.1:18650 --calls 400 --side 800 --connections 1 --key KEY --pid PID

prints the status codes the flood got, those of the well-behaved client, and the server's peak RSS
(VmHWM of --pid, which must run on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

# Clients may send as much as they like: the limits under test are the server's. Each channel
# keeps its own connection (a shared subchannel pool would put every channel on one).
CLIENT_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.use_local_subchannel_pool", 1),
]


def infer_request(
    images: np.ndarray, datatype: str = "UINT8", model: str = "tiny"
) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="image", datatype=datatype, shape=list(images.shape))
    request.raw_input_contents.append(images.tobytes())
    return request


async def _call(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    request: service_pb2.ModelInferRequest,
    metadata: tuple[tuple[str, str], ...],
    timeout: float,
) -> str:
    try:
        await stub.ModelInfer(request, metadata=metadata, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


async def crowd(
    target: str,
    calls: int,
    request: service_pb2.ModelInferRequest,
    metadata: tuple[tuple[str, str], ...] = (),
    *,
    connections: int = 1,
    timeout: float = 60,
) -> Counter[str]:
    """`calls` ModelInfer calls at once, spread evenly over `connections` connections."""
    channels = [grpc.aio.insecure_channel(target, options=CLIENT_OPTIONS) for _ in range(connections)]
    try:
        stubs = [service_pb2_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
        codes = await asyncio.gather(
            *(_call(stubs[i % connections], request, metadata, timeout) for i in range(calls))
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return Counter(codes)


async def steady(
    target: str,
    request: service_pb2.ModelInferRequest,
    metadata: tuple[tuple[str, str], ...],
    stop: asyncio.Event,
    *,
    timeout: float = 30,
) -> Counter[str]:
    """One small call at a time on its own connection until `stop`: what a normal client gets."""
    codes: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(target, options=CLIENT_OPTIONS) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        while not stop.is_set():
            codes[await _call(stub, request, metadata, timeout)] += 1
            await asyncio.sleep(0.05)
        # and one more once the flood has ended: the server still serves
        codes[await _call(stub, request, metadata, timeout)] += 1
    return codes


async def flood_beside_a_client(
    target: str,
    calls: int,
    heavy: service_pb2.ModelInferRequest,
    light: service_pb2.ModelInferRequest,
    metadata: tuple[tuple[str, str], ...] = (),
    *,
    connections: int = 1,
) -> tuple[Counter[str], Counter[str]]:
    """(the flood's codes, the well-behaved client's codes), run at the same time."""
    stop = asyncio.Event()
    normal = asyncio.create_task(steady(target, light, metadata, stop))
    await asyncio.sleep(0.2)  # the normal client is connected and calling first
    try:
        flooded = await crowd(target, calls, heavy, metadata, connections=connections)
    finally:
        stop.set()
    return flooded, await normal


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="host:port of the gRPC listener")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--side", type=int, default=800, help="each message: one side x side x 3 uint8 image")
    parser.add_argument("--images", type=int, default=1, help="images in each message")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--model", default="nin-cifar10")
    parser.add_argument("--key", default="", help="an API key, when the server needs one")
    parser.add_argument("--pid", type=int, help="the server's process id, for its peak RSS")
    args = parser.parse_args()
    metadata = (("authorization", f"Bearer {args.key}"),) if args.key else ()
    heavy = infer_request(np.zeros((args.images, args.side, args.side, 3), np.uint8), model=args.model)
    light = infer_request(np.zeros((1, 32, 32, 3), np.uint8), model=args.model)
    started = time.monotonic()
    flooded, normal = asyncio.run(
        flood_beside_a_client(args.target, args.calls, heavy, light, metadata, connections=args.connections)
    )
    size = heavy.ByteSize() / 1e6
    print(f"flood: {args.calls} calls of {size:.2f} MB on {args.connections} connection(s): {dict(flooded)}")
    print(f"normal client meanwhile: {dict(normal)}; {time.monotonic() - started:.1f} s")
    if args.pid:
        print(f"server peak RSS: {peak_rss_mb(args.pid):.0f} MB")


if __name__ == "__main__":
    main()
