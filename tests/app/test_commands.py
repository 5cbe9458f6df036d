"""app/commands.py `ninserve serve` and `ninserve predict` as installed commands (subprocesses):
settings from the environment, what serve prints, `make serve` passing flags only when asked to,
and a process that cannot serve exiting non-zero with the reason (so a restart policy or a
rollout sees the failure instead of a live but unready server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.cli import main as cli_main
from app.commands import EXIT_CANNOT_SERVE
from app.engine import cuda_problem
from tests.app.helpers import free_port, png

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served_from_env(tiny_model: Path) -> Iterator[tuple[str, str]]:
    """`ninserve serve` with no flags: port, model and the rest from NINSERVE_*."""
    port = free_port()
    env = os.environ | {
        "NINSERVE_PORT": str(port),
        "NINSERVE_MODEL_PATH": str(tiny_model),
        "NINSERVE_DEVICE": "cpu",
        "NINSERVE_LOG_LEVEL": "warning",
        "NINSERVE_DECODE_THREADS": "1",
        "NINSERVE_INTRA_OP_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "app.cli", "serve"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ninserve serve exited: {proc.stdout.read().decode()}")
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("ninserve serve did not become ready")
            time.sleep(0.1)
        proc.terminate()  # stopped, so that everything it printed can be read
        output = proc.communicate(timeout=15)[0].decode()
        yield url, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_serve_takes_its_port_from_the_environment_and_says_where_to_look(
    served_from_env: tuple[str, str],
) -> None:
    url, output = served_from_env
    for line in (f"page      {url}/", f"API docs  {url}/docs", f"API       {url}/v1/classify"):
        assert line in output


def test_predict_takes_the_server_url_from_the_environment(tiny_model: Path, tmp_path: Path) -> None:
    from app.config import Settings
    from tests.app.helpers import live_server

    image = tmp_path / "one.png"
    image.write_bytes(png(2))
    settings = Settings(model_path=tiny_model, device="cpu", intra_op_threads=1, decode_threads=1)
    with live_server(settings) as url:
        env = os.environ | {"NINSERVE_URL": url, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "predict", str(image), "--top-k", "2"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert "model tiny@tiny-0001" in done.stdout


def test_serve_rejects_bad_settings(tmp_path: Path, capsys) -> None:
    assert cli_main(["serve", "--model", str(tmp_path / "none.onnx")]) == 2
    assert "model file not found" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(
    ("make_args", "env", "flags"),
    [
        ([], {"NINSERVE_PORT": "18002"}, ""),  # the setting decides, as for any start
        (["PORT=9001"], {"NINSERVE_PORT": "18002"}, "--port 9001"),
        (["PORT=9001", "HOST=0.0.0.0"], {}, "--host 0.0.0.0 --port 9001"),
    ],
)
def test_make_serve_passes_flags_only_when_given(
    make_args: list[str], env: dict[str, str], flags: str
) -> None:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "serve", *make_args],
        cwd=ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    (serve_line,) = [line for line in done.stdout.splitlines() if "ninserve serve" in line]
    assert serve_line.split("ninserve serve", 1)[1].split() == flags.split()


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
