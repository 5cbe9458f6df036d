"""A hostile round on the gRPC port of a real `ninserve serve` process (API keys on): oversize
messages, malformed protobuf, wrong dtypes and shapes, many streams on one connection, more
message bytes at once than the budget holds, slow clients at the HTTP/2 and the message level,
calls without a key. Every answer is a clear status code (never INTERNAL or UNKNOWN), the
process's peak RSS stays under its memory budget, it still serves afterwards, and SIGTERM drains
a call in flight and ends cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2_grpc

from tests.app.grpc.conftest import KEY
from tests.app.grpc.flood import CLIENT_OPTIONS, crowd, flood_beside_a_client, infer_request, peak_rss_mb
from tests.app.helpers import free_port, pattern, printed, wait_until_ready

ROOT = Path(__file__).resolve().parents[3]
INFER = "/inference.GRPCInferenceService/ModelInfer"
AUTH = (("authorization", f"Bearer {KEY}"),)
BUDGET_MB = 800
UNLIMITED = CLIENT_OPTIONS  # clients may send as much as they like: the limits under test are the server's
STREAMS = 8  # grpc_max_streams_per_connection's default


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[tuple[subprocess.Popen, str, str]]:
    http_port, grpc_port = free_port(), free_port()
    env = os.environ | {
        "NINSERVE_PORT": str(http_port),
        "NINSERVE_GRPC_PORT": str(grpc_port),
        "NINSERVE_MODEL_PATH": str(tiny_model),
        "NINSERVE_DEVICE": "cpu",
        "NINSERVE_LOG_LEVEL": "warning",
        "NINSERVE_INTRA_OP_THREADS": "1",
        "NINSERVE_API_KEYS": KEY,
        "NINSERVE_MEMORY_BUDGET_MB": str(BUDGET_MB),
        "NINSERVE_HEADER_TIMEOUT_S": "2",
        "NINSERVE_BODY_TIMEOUT_S": "2",
        "NINSERVE_GRPC_MAX_CONNECTION_AGE_S": "3",
        "NINSERVE_GRACEFUL_SHUTDOWN_S": "5",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "app.cli.main", "serve"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until_ready(proc, url, why=lambda: printed(proc))
        yield proc, url, f"127.0.0.1:{grpc_port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def code_of(call) -> str:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code().name
    return "OK"


def test_hostile_round(server: tuple[subprocess.Popen, str, str]) -> None:
    proc, url, target = server
    seen: Counter[str] = Counter()
    with grpc.insecure_channel(target, options=UNLIMITED) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def expect(code: str, call) -> None:
            got = code_of(call)
            seen[got] += 1
            assert got == code, call

        good = infer_request(pattern(1)[None])
        expect("OK", lambda: stub.ModelInfer(good, metadata=AUTH, timeout=30))
        # no key, a wrong key, a malformed header: refused before the message is parsed
        expect("UNAUTHENTICATED", lambda: stub.ModelInfer(good, timeout=30))
        expect(
            "UNAUTHENTICATED",
            lambda: stub.ModelInfer(good, metadata=(("authorization", "Bearer " + "x" * 30),)),
        )
        expect("UNAUTHENTICATED", lambda: stub.ModelInfer(good, metadata=(("authorization", "Basic Zm9v"),)))
        # oversize: messages past the limit (256 KiB: 128 MiB in flight / 2 x 16 x 16 streams), one past
        # max_body_bytes (16 MiB), and metadata past max_header_bytes
        for side in (840, 2400):
            huge = infer_request(np.zeros((1, side, side, 3), np.uint8))
            expect("RESOURCE_EXHAUSTED", lambda huge=huge: stub.ModelInfer(huge, metadata=AUTH, timeout=30))
        expect(
            "RESOURCE_EXHAUSTED", lambda: stub.ModelInfer(good, metadata=AUTH + (("x-pad", "a" * 20_000),))
        )
        # malformed protobuf, through a method that sends raw bytes
        raw = channel.unary_unary(INFER)
        for junk in (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", os.urandom(4096)):
            expect("INVALID_ARGUMENT", lambda junk=junk: raw(junk, metadata=AUTH, timeout=30))
        # wrong dtypes, shapes, sizes, names
        for bad in (
            infer_request(np.zeros((1, 32, 32, 3), np.float32), "FP32"),
            infer_request(np.zeros((1, 32, 32, 4), np.uint8)),
            infer_request(np.zeros((1, 32, 32), np.uint8)),
            infer_request(np.zeros((40, 32, 32, 3), np.uint8)),
            infer_request(np.zeros((1, 33, 32, 3), np.uint8)),
            infer_request(np.zeros((1, 264, 264, 3), np.uint8)),  # over max_resolution
            infer_request(np.zeros((1, 32, 32, 3), np.uint8), "BYTES"),
        ):
            expect("INVALID_ARGUMENT", lambda bad=bad: stub.ModelInfer(bad, metadata=AUTH, timeout=30))
        lying = infer_request(pattern(1)[None])
        lying.inputs[0].shape[:] = [1_000_000, 1_000_000, 1_000_000, 3]
        expect("INVALID_ARGUMENT", lambda: stub.ModelInfer(lying, metadata=AUTH, timeout=30))
        expect(
            "NOT_FOUND",
            lambda: stub.ModelInfer(infer_request(pattern(1)[None], model="x" * 5000), metadata=AUTH),
        )

    # many streams on one connection: more than it may open (grpc_max_streams_per_connection,
    # 8); streams past it are refused unstarted (REFUSED_STREAM: UNAVAILABLE, safe to retry) or
    # wait in the client. Then floods of messages just under the limit (0.24 MB of 256 KiB), 400 at
    # once on one connection and spread over 40 (past grpc_max_connections: UNAVAILABLE), and 32
    # of 15 MB, each while a well-behaved client on its own connection keeps calling. One event
    # loop for all of them: gRPC's asyncio channels are closed before it ends.
    near_limit = infer_request(np.zeros((1, 280, 280, 3), np.uint8))
    huge = infer_request(np.zeros((1, 2236, 2236, 3), np.uint8))

    async def floods() -> list[tuple[Counter[str], Counter[str]]]:
        return [
            (await crowd(target, 400, good, AUTH), Counter()),
            await flood_beside_a_client(target, 400, near_limit, good, AUTH, connections=1),
            await flood_beside_a_client(target, 400, near_limit, good, AUTH, connections=40),
            await flood_beside_a_client(target, 32, huge, good, AUTH, connections=1),
        ]

    (streams, _), *heavy = asyncio.run(floods())
    seen.update(streams)
    assert set(streams) <= {"OK", "UNAVAILABLE"} and streams["OK"] >= STREAMS, streams
    for flooded, normal in heavy:
        seen.update(flooded)
        assert set(flooded) <= {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}, flooded
        assert normal["OK"] >= 2 and set(normal) <= {"OK", "RESOURCE_EXHAUSTED"}, normal  # still served

    # slow clients: one trickling the HTTP/2 preface, one trickling a message's bytes
    assert slow_preface_is_cut_off(target) < 6
    assert slow_message_is_cut_off(target) < 12

    # still serving, within the memory budget, nothing crashed
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert code_of(lambda: stub.ModelInfer(good, metadata=AUTH, timeout=30)) == "OK"
    assert proc.poll() is None
    peak = peak_rss_mb(proc.pid)
    assert peak < BUDGET_MB, peak
    assert not {"INTERNAL", "UNKNOWN"} & set(seen), seen
    print(f"\ngRPC hostile round: {dict(seen)}; peak RSS {peak:.0f} MB of a {BUDGET_MB} MB budget")


def slow_preface_is_cut_off(target: str) -> float:
    """Seconds until the server closes a connection whose HTTP/2 preface comes a byte at a time."""
    host, port = target.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        try:
            for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n":
                sock.sendall(bytes([byte]))
                time.sleep(0.5)
        except OSError:
            return time.monotonic() - started
        sock.recv(1024)  # what the server sent, then its close
    return time.monotonic() - started


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, with a literal name (names and values < 127)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def slow_message_is_cut_off(target: str) -> float:
    """Seconds until the server ends a call whose message arrives a byte every 0.5 s: the
    connection's age (3 s here) plus the time its calls get to finish (body_timeout_s, 2 s)."""
    host, port = target.rsplit(":", 1)
    headers = b"".join(
        _literal(n, v)
        for n, v in (
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", INFER.encode()),
            (b":authority", target.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"authorization", f"Bearer {KEY}".encode()),
        )
    )
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b""))
        sock.sendall(_frame(1, 4, 1, headers) + _frame(0, 0, 1, b"\x00" + struct.pack(">I", 100_000)))
        sock.settimeout(0.5)
        received = b""
        while time.monotonic() - started < 30:
            try:
                sock.sendall(_frame(0, 0, 1, b"\x00"))
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            received += chunk
            if b"grpc-status" in received or _has_rst(received):
                break
    return time.monotonic() - started


def _has_rst(data: bytes) -> bool:
    """Whether the server sent RST_STREAM (3) or a GOAWAY (7) that ended the stream."""
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        if data[pos + 3] == 3:
            return True
        pos += 9 + length
    return False


def test_a_client_keeping_its_calls_per_connection_is_never_refused(
    server: tuple[subprocess.Popen, str, str],
) -> None:
    """8 calls in flight on one channel, the documented most: gRPC counts a stream until its call
    is torn down, so with the stream limit at 8 one call in seven was refused (REFUSED_STREAM)."""
    _, _, target = server
    good = infer_request(pattern(1)[None])

    async def keep_eight() -> Counter[str]:
        codes: Counter[str] = Counter()
        async with grpc.aio.insecure_channel(target, options=UNLIMITED) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def client() -> None:
                for _ in range(40):
                    try:
                        await stub.ModelInfer(good, metadata=AUTH, timeout=30)
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        codes[exc.code().name] += 1

            await asyncio.gather(*(client() for _ in range(STREAMS)))
        return codes

    assert asyncio.run(keep_eight()) == Counter(OK=40 * STREAMS)


def test_sigterm_drains_a_call_in_flight_and_ends_cleanly(server: tuple[subprocess.Popen, str, str]) -> None:
    """Runs last: the server stops. A call started before SIGTERM is answered, never INTERNAL."""
    proc, _, target = server
    images = pattern(0, 256)[None]  # under the 256 KiB message cap

    async def in_flight() -> str:
        async with grpc.aio.insecure_channel(target, options=UNLIMITED) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            call = stub.ModelInfer(infer_request(images), metadata=AUTH, timeout=30)
            await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            try:
                await call
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return "OK"

    assert asyncio.run(in_flight()) in ("OK", "UNAVAILABLE")
    # uvicorn re-raises the signal it handled once it has shut down: the exit is by SIGTERM
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Traceback" not in proc.stdout.read().decode()
