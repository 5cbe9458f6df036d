"""The worked example of docs/repository.md, run as written: every `$ ` command of its first
block is executed here (paths under a temporary folder, the server on a free port), so the
document cannot drift from what the tools do. Tiny dataset (model/shapes.py), 1 epoch of
training, export into the repository as the next version with its int8 variant, a running
server polls it in, then the model is named over v1 (predict, curl) and V2 (curl)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from app.cli.main import main as cli_main
from app.config import Settings
from tests.app.helpers import live_server

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "repository.md"
EX, PORT = "/tmp/ex", "8000"


def example_commands() -> list[str]:
    """The `$ ` lines of the worked example's first shell block, continuation lines joined."""
    section = DOC.read_text().split("## Worked example", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    for line in block.replace("\\\n", " ").splitlines():
        if line.startswith("$ "):
            commands.append(" ".join(line[2:].split()))
    return commands


def test_the_doc_has_the_whole_flow() -> None:
    heads = [" ".join(c.split()[:2]) for c in example_commands()]
    for step in ("python -m", "ninserve train", "ninserve export", "ninserve models", "ninserve predict"):
        assert step in heads or any(h.endswith(step) for h in heads), (step, heads)
    assert any("/v1/models/shapes/classify" in c for c in example_commands())
    assert any("/v2/models/shapes/infer" in c for c in example_commands())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The checkout's place for runs/ and repository/ (untracked): a temporary folder here."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_the_worked_example_runs_as_written(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ex = workdir / "ex"
    outputs: list[str] = []
    with ExitStack() as stack:
        url = ""
        for command in example_commands():
            line = command.replace(EX, str(ex))
            if url:
                line = line.replace(f"localhost:{PORT}", url.removeprefix("http://"))
            words = shlex.split(line.rstrip(" &"))
            if words[0] == "python" and words[1:3] == ["-m", "model.shapes"]:
                from model.shapes import main as shapes

                assert shapes(words[3:]) == 0
            elif words[:2] == ["mkdir", "-p"]:
                Path(words[2]).mkdir(parents=True)
            elif words[0] == "cp":
                shutil.copy(ROOT / words[1], words[2])
            elif "serve" in words:
                env = dict(w.split("=", 1) for w in words if "=" in w and w.startswith("NINSERVE_"))
                settings = Settings(
                    model_repository=Path(words[words.index("--repository") + 1]),
                    repository_poll_s=float(env["NINSERVE_REPOSITORY_POLL_S"]),
                    device="cpu",
                    intra_op_threads=1,
                )
                url = stack.enter_context(live_server(settings))
                monkeypatch.setenv("NINSERVE_URL", url)
            elif words[0] == "ninserve":
                assert cli_main(words[1:]) == 0, line
                if words[1] == "export":
                    _wait_for(url, "shapes")
            elif words[0] == "curl" or words[0] == "printf":
                shell = subprocess.run(
                    line, shell=True, capture_output=True, text=True, timeout=60, cwd=workdir
                )
                assert shell.returncode == 0, (line, shell.stderr)
                outputs.append(shell.stdout)
            else:
                raise AssertionError(f"the example runs a command this test does not know: {command}")
            outputs.append(capsys.readouterr().out)
    text = "\n".join(outputs)
    assert "24 images in" in text
    assert re.search(r"exported shapes version 1: .*/repo/shapes/1/ \(model-int8.onnx, model.onnx\)", text)
    assert re.search(r"shapes\s+1\s+int8\s+circle, square", text)  # ninserve models
    assert "model shapes@1" in text  # ninserve predict --model shapes
    answers = [json.loads(o) for o in outputs if o.startswith("{")]
    v1 = next(a for a in answers if "top" in a)
    assert v1["model"] == {"name": "shapes", "version": "1"} and {t["label"] for t in v1["top"]} == {
        "circle",
        "square",
    }
    v2 = next(a for a in answers if "outputs" in a)
    assert v2["model_name"] == "shapes" and v2["outputs"][0]["data"][0].split(":")[2] in ("circle", "square")
    assert (workdir / "runs" / "shapes" / "checkpoint.pt").is_file()  # the run stayed out of model/training


def _wait_for(url: str, model: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        models = httpx.get(f"{url}/v1/models").json()["models"]
        if any(m["name"] == model for m in models):
            return
        time.sleep(0.2)
    raise AssertionError(f"the server did not poll {model} in within {timeout_s} s")


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout: tracked files come from git")
def test_tracked_files_need_the_flag(tmp_path: Path, capsys) -> None:
    shipped = ROOT / "model" / "artifacts" / "nin-cifar10.onnx"
    assert cli_main(["export", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(shipped)]) == 1
    err = capsys.readouterr().err
    assert "would replace files that git tracks (model/artifacts/nin-cifar10.onnx)" in err
    assert "--overwrite-tracked" in err
    assert cli_main(["train", "--run-dir", str(ROOT / "model" / "training"), "--epochs", "1"]) == 1
    assert "--run-dir" in capsys.readouterr().err and os.path.getsize(shipped) > 1_000_000
