"""`ninserve serve` with a gRPC port: the banner says where, a taken port is one line and exit 4
before the model loads, and settings refuse one port for both protocols."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.cli.commands import EXIT_CANNOT_BIND, serve_banner
from app.config import Settings

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
