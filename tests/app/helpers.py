"""Test helpers: a tiny contract-compatible ONNX model, generated images, a live uvicorn server."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from PIL import Image

from app.config import Settings
from app.http.main import create_app

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


def build_tiny_model(
    path: Path, *, version: str = "tiny-0001", classes: list[str] = CLASSES, seed: int = 0
) -> Path:
    """The artifact contract in six ops: uint8 NHWC -> normalise -> 4x4 avg-pool -> 1x1 conv (maps)
    -> mean over h, w -> softmax. Weights are fixed by `seed`, so results are deterministic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = len(classes)
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 2.0, size=(k, 3, 1, 1)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, size=(k,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(MEAN, np.float32).reshape(1, 3, 1, 1) * 255, "mean"),
        numpy_helper.from_array(np.array(STD, np.float32).reshape(1, 3, 1, 1) * 255, "std"),
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(bias, "b"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["x_nchw", "mean"], ["x_c"]),
        helper.make_node("Div", ["x_c", "std"], ["x_n"]),
        helper.make_node("AveragePool", ["x_n"], ["x_p"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["x_p", "w", "b"], ["confidence_maps"]),
        helper.make_node("ReduceMean", ["confidence_maps"], ["logits"], axes=[2, 3], keepdims=0),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_nin",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k]),
            helper.make_tensor_value_info("confidence_maps", TensorProto.FLOAT, ["N", k, "h", "w"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    meta = {
        "classes": json.dumps(classes),
        "native_size": "32",
        "dataset": "generated",
        "val_top1": "0.1",
        "model_version": version,
        "producer_command": "tests",
        "export_date": "2026-01-01T00:00:00+00:00",
        "source_commit": "test",
        "mean": json.dumps(MEAN),
        "std": json.dumps(STD),
    }
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def pattern(seed: int, size: int = 32) -> np.ndarray:
    """A deterministic uint8 [size, size, 3] image per seed (arithmetic only, no RNG streams)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    phase = seed * 0.7
    r = 127.5 * (1 + np.sin(2 * np.pi * (x * (1 + seed % 3) + phase)))
    g = 127.5 * (1 + np.cos(2 * np.pi * (y * (1 + seed % 5) - phase)))
    b = 255.0 * ((x + y + seed * 0.13) % 1.0)
    return np.stack([r, g, b], axis=-1).round().clip(0, 255).astype(np.uint8)


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **options) -> bytes:
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(seed: int = 0, size: int = 32) -> bytes:
    return encode(pattern(seed, size))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC, to splice into an encoded PNG."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def server_env(model: Path, **settings: str) -> dict[str, str]:
    """The environment for a `ninserve serve` subprocess on `model`: CPU, one ORT thread, and
    NINSERVE_<NAME> for each keyword (`graceful_shutdown_s="2"`)."""
    base = {"NINSERVE_MODEL_PATH": str(model), "NINSERVE_DEVICE": "cpu", "NINSERVE_INTRA_OP_THREADS": "1"}
    return os.environ | base | {f"NINSERVE_{name.upper()}": value for name, value in settings.items()}


def wait_until_ready(
    proc: subprocess.Popen, url: str, timeout_s: float = 60.0, why: Callable[[], str] | None = None
) -> None:
    """Poll `url`/readyz until a `ninserve serve` subprocess answers 200; AssertionError when the
    process exits first or `timeout_s` passes, with `why()` (what it printed) as the message."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready_soon = proc.poll() is None and time.monotonic() < deadline
        assert ready_soon, why() if why else "ninserve serve did not become ready"
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def printed(proc: subprocess.Popen) -> str:
    """What a `ninserve serve` started with stdout=PIPE printed, once it has exited; reading a
    running one's pipe would block."""
    if proc.poll() is None or proc.stdout is None:
        return "ninserve serve did not become ready"
    return f"ninserve serve exited: {proc.stdout.read().decode()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(target: Settings | FastAPI, *, wait_ready: bool = True) -> Iterator[str]:
    """Run `create_app(settings)` (or an app) under uvicorn on a free port in a thread; yields the URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = target if isinstance(target, FastAPI) else create_app(target)
    config = uvicorn.Config(app, log_level="warning", ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        if wait_ready:
            with httpx.Client(base_url=url) as client:
                while client.get("/readyz").status_code != 200:
                    if time.monotonic() > deadline:
                        raise RuntimeError("server did not become ready")
                    time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
