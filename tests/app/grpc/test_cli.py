"""`ninserve serve` with a gRPC port: the banner says where, a taken port is one line and exit 4
before the model loads, settings refuse one port for both protocols, and worker processes share
the port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from pydantic import ValidationError

from app.cli.commands import EXIT_CANNOT_BIND, serve_banner
from app.config import Settings
from tests.app.helpers import free_port, pattern, wait_until_ready

ROOT = Path(__file__).resolve().parents[3]


def test_the_banner_names_the_grpc_port() -> None:
    banner = serve_banner("0.0.0.0", 8000, "nin-cifar10", grpc_port=8001)
    assert "  gRPC      127.0.0.1:8001 (KServe V2 / Open Inference Protocol" in banner
    assert "gRPC" not in serve_banner("127.0.0.1", 8000, "nin-cifar10")


def test_a_taken_grpc_port_is_one_line_and_exit_4(tiny_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "app.cli.main",
            "serve",
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
        ]
        command += ["--port", "0", "--grpc-port", str(port)]
        done = subprocess.run(
            command, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True
        )
    assert done.returncode == EXIT_CANNOT_BIND
    assert done.stderr.strip() == (
        f"ninserve serve: gRPC: port {port} on 127.0.0.1 is taken; choose another with "
        "NINSERVE_GRPC_PORT / --grpc-port"
    )


def test_one_port_cannot_serve_both_protocols(tiny_model: Path) -> None:
    with pytest.raises(ValidationError, match="grpc_port must differ from port"):
        Settings(model_path=tiny_model, port=9000, grpc_port=9000)
    assert Settings(model_path=tiny_model).grpc_port is None  # off unless asked for


def listeners(port: int) -> int:
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    return len(listening.stdout.strip().splitlines())


def test_two_workers_share_the_grpc_port(tiny_model: Path) -> None:
    """Each worker process serves the gRPC port (SO_REUSEPORT); both stop on SIGTERM."""
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "app.cli.main", "serve", "--model", str(tiny_model), "--device", "cpu"]
    command += [
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--workers",
        "2",
        "--log-level",
        "warning",
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT), "NINSERVE_INTRA_OP_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # two processes load the model on a busy machine
        wait_until_ready(proc, f"http://127.0.0.1:{port}", 120, lambda: "two workers did not become ready")
        deadline = time.monotonic() + 120
        # /readyz answers once one worker is up; the other may still be loading and binding
        while listeners(grpc_port) < 2:  # one listener per worker
            assert proc.poll() is None and time.monotonic() < deadline, "the second worker did not listen"
            time.sleep(0.1)
        tensor = triton.InferInput("image", [1, 32, 32, 3], "UINT8")
        tensor.set_data_from_numpy(pattern(1)[None])
        for _ in range(4):  # new connections, spread by the kernel
            client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            try:
                assert client.infer("tiny", [tensor], client_timeout=30).as_numpy("scores").shape == (1, 10)
            finally:
                client.close()  # a channel left open is an unraisable warning at collection
        proc.terminate()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0
