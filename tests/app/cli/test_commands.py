"""app/cli/commands.py `ninserve serve` and `ninserve predict` as installed commands (subprocesses):
settings from the environment, what serve prints, `make serve` passing flags only when asked to,
and a process that cannot serve exiting non-zero with the reason (so a restart policy or a
rollout sees the failure instead of a live but unready server)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.cli.commands import EXIT_CANNOT_BIND, EXIT_CANNOT_SERVE
from app.cli.main import main as cli_main
from app.core.engine import cuda_problem
from tests.app.helpers import free_port, png, printed, wait_until_ready

ROOT = Path(__file__).resolve().parents[3]


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
    command = [sys.executable, "-m", "app.cli.main", "serve"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, url, why=lambda: printed(proc))
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
            [sys.executable, "-m", "app.cli.main", "predict", str(image), "--top-k", "2"],
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


def test_a_settings_error_is_one_line_and_never_shows_a_key(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    key = "k3y-0123456789abcdef-SECRET-xyz"  # 31 characters
    monkeypatch.setenv("NINSERVE_API_KEYS", key)
    monkeypatch.setenv("NINSERVE_MAX_QUEUE", "8")  # below max_batch_size: a model-level check fails
    assert cli_main(["serve", "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "ninserve serve: invalid settings: max_queue must be at least max_batch_size, "
        "or batches can never fill\n"
    )
    assert "input_value" not in err and key[:6] not in err


def test_the_uvicorn_factory_fails_on_bad_settings_in_one_line(tiny_model: Path) -> None:
    key = "k3y-0123456789abcdef-SECRET-xyz"
    env = os.environ | {
        "NINSERVE_API_KEYS": key,
        "NINSERVE_MAX_QUEUE": "8",
        "NINSERVE_PORT": "x",
        "NINSERVE_MODEL_PATH": str(tiny_model),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-c", "from app.http.main import app_from_env; app_from_env()"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_CANNOT_SERVE
    assert done.stderr.startswith("ninserve: invalid settings: port: Input should be a valid integer")
    assert done.stderr.count("\n") == 1 and key[:6] not in done.stderr


def test_a_taken_port_fails_in_one_line_before_anything_starts(tiny_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = os.environ | {"NINSERVE_RESULT_STORE": "memory", "PYTHONPATH": str(ROOT)}
        command = [
            sys.executable,
            "-m",
            "app.cli.main",
            "serve",
            "--model",
            str(tiny_model),
            "--port",
            str(port),
        ]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_CANNOT_BIND != 0
    assert done.stderr == (
        f"ninserve serve: port {port} on 127.0.0.1 is taken; "
        "choose another with PORT= (make serve) or NINSERVE_PORT / --port\n"
    )


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
    command = [sys.executable, "-m", "app.cli.main", "serve", "--port", "0", *args]
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
    assert "ninserve serve: model failed to load: junk.onnx is not a valid ONNX model" in result.stderr
    assert "Application shutdown complete" in result.stderr  # stopped cleanly, not killed


def test_a_model_that_cannot_load_stops_every_worker(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    result = serve("--model", str(junk), "--device", "cpu", "--workers", "2", "--log-level", "warning")
    assert result.returncode == EXIT_CANNOT_SERVE
    assert "model failed to load: junk.onnx is not a valid ONNX model" in result.stderr  # each worker's log
    assert result.stderr.rstrip().endswith(
        "ninserve serve: a worker could not load the model (the reason is logged above)"
    )


def test_two_workers_serve_on_one_port_and_stop_cleanly(tiny_model: Path) -> None:
    port = free_port()
    env = os.environ | {"NINSERVE_RESULT_STORE": "memory", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "app.cli.main", "serve", "--model", str(tiny_model), "--device", "cpu"]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "two workers did not become ready"
            time.sleep(0.1)
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output  # the banner, printed once the port was bound
