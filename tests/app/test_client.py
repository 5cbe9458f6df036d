"""`ninserve predict` against a live `ninserve serve` subprocess (the installed CLI path)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.cli import main as cli_main
from app.client import format_result
from tests.app.helpers import free_port, png

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def serve_process(tiny_model: Path) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "NINSERVE_DECODE_THREADS": "1",
        "NINSERVE_INTRA_OP_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--port",
        str(port),
        "--model",
        str(tiny_model),
        "--device",
        "cpu",
        "--log-level",
        "warning",
    ]
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_predict_prints_top_k_and_saves_maps(serve_process: str, tmp_path: Path, capsys) -> None:
    images = []
    for seed in (1, 2):
        path = tmp_path / f"img{seed}.png"
        path.write_bytes(png(seed, size=48))
        images.append(str(path))
    maps_dir = tmp_path / "maps"
    rc = cli_main(["predict", *images, "--url", serve_process, "--top-k", "3", "--maps", str(maps_dir)])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("model tiny@tiny-0001") == 2 and "48x48" in out
    table = [line for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert len(table) == 6  # 3 rows per image
    written = sorted(p.name for p in maps_dir.iterdir())
    assert len(written) == 2 * (1 + 3) and "img1.grid.png" in written
    for name in written:
        with Image.open(maps_dir / name) as img:
            assert img.format == "PNG"
            assert img.size == (256, 256) or name.endswith("grid.png")


def test_predict_reports_failures(serve_process: str, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    rc = cli_main(["predict", str(bad), str(tmp_path / "missing.png"), "--url", serve_process])
    err = capsys.readouterr().err
    assert rc == 1 and "400" in err and "missing.png" in err
    assert cli_main(["predict", str(bad), "--url", "http://127.0.0.1:9"]) == 2


def test_predict_json_output(serve_process: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png(3))
    assert cli_main(["predict", str(path), "--url", serve_process, "--json", "--top-k", "2"]) == 0
    assert '"top":[' in capsys.readouterr().out


def test_serve_rejects_bad_settings(tmp_path: Path, capsys) -> None:
    assert cli_main(["serve", "--model", str(tmp_path / "none.onnx")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_format_result() -> None:
    result = {
        "id": "abc",
        "model": {"name": "m", "version": "v"},
        "image": {"width": 3, "height": 4},
        "timing_ms": {"total": 1.5},
        "top": [{"label": "cat", "index": 3, "score": 0.5}],
    }
    text = format_result("x.png", result)
    assert "x.png  3x4  model m@v  1.5 ms" in text and "cat" in text and "#" * 12 in text
    assert io.StringIO(text).readline().startswith("x.png")
