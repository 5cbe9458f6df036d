"""app/commands.py `ninserve serve`: a process that cannot serve exits non-zero with the reason,
so that a restart policy or a rollout sees the failure (instead of a live but unready server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.commands import EXIT_CANNOT_SERVE
from app.engine import cuda_problem

ROOT = Path(__file__).resolve().parents[2]


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"NINSERVE_RESULT_STORE": "memory"}
    command = [sys.executable, "-m", "app.cli", "serve", "--port", "0", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(cuda_problem() is None, reason="CUDA is usable here: nothing to refuse")
def test_cuda_requested_but_unavailable_exits_before_serving(tiny_model: Path) -> None:
    result = serve("--model", str(tiny_model), "--device", "cuda")
    assert result.returncode == EXIT_CANNOT_SERVE != 0
    assert "ninserve serve: NINSERVE_DEVICE=cuda but" in result.stderr
    assert "Uvicorn running" not in result.stderr  # refused before binding the port


def test_model_that_cannot_load_stops_the_server(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    result = serve("--model", str(junk), "--device", "cpu")
    assert result.returncode == EXIT_CANNOT_SERVE
    assert "ninserve serve: model failed to load: ModelLoadError: cannot load" in result.stderr
    assert "Application shutdown complete" in result.stderr  # stopped cleanly, not killed
