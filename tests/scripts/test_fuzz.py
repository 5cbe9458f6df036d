"""scripts/fuzz.py: each target runs briefly and finds nothing (a longer run is the script's job)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz.py"


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris (dev extra) is not installed"
)
@pytest.mark.parametrize("target", ["decode", "multipart", "codec"])
def test_a_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), target, "--runs", "1500", "-seed=14"],
        cwd=tmp_path,  # where libFuzzer would write a crash-* input
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done 1500 runs" in result.stderr
    assert not list(tmp_path.glob("crash-*"))
