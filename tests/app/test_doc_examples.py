"""The examples in README.md and docs/ print what the docs say they print.

A fenced `text` block right after a `python` or `sh` block is that example's output. Each such
pair is run here against a live server on the bundled model (the docs' `127.0.0.1:8000` pointed
at it, and their gRPC `127.0.0.1:8001` at its gRPC port, from a scratch folder that sees the
checkout's `app/` and `.venv/`) and compared with
doctest's checker: `...` (or `…`) stands for any text, whitespace runs compare equal, and every
number that is printed must match to the digits printed. So a doc cannot quote an output the
code no longer gives.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.http.main import create_app
from tests.app.helpers import live_server

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/client.md", "docs/api.md")
DOC_URL = "http://127.0.0.1:8000"
DOC_GRPC = "127.0.0.1:8001"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    lang: str
    code: str
    output: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def examples(doc: str) -> list[Example]:
    """Every code block of `doc` followed (blank lines apart) by a `text` block: its output."""
    text = (ROOT / doc).read_text()
    blocks = list(FENCE.finditer(text))
    found = []
    for block, after in zip(blocks, blocks[1:], strict=False):
        between = text[block.end() : after.start()]
        if after["lang"] == "text" and not between.strip() and block["lang"] in ("python", "sh"):
            line = text.count("\n", 0, block.start()) + 1
            found.append(Example(doc, line, block["lang"], block["body"], after["body"]))
    return found


ALL = [example for doc in DOCS for example in examples(doc)]


def test_each_doc_quotes_outputs_that_are_checked() -> None:
    """The convention is in use where the docs quote outputs (a rename would silently skip them)."""
    counts = {doc: sum(e.doc == doc for e in ALL) for doc in DOCS}
    assert counts["README.md"] >= 1 and counts["docs/client.md"] >= 3 and counts["docs/api.md"] >= 1, counts


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The HTTP URL; GRPC_TARGET[url] is the same server's gRPC port."""
    settings = Settings(device="cpu", intra_op_threads=1, grpc_port=0)  # precision auto, as `make serve`
    app = create_app(settings)
    with live_server(app) as url:
        GRPC_TARGET[url] = f"127.0.0.1:{app.state.grpc.port}"
        yield url


GRPC_TARGET: dict[str, str] = {}


@pytest.fixture
def checkout_view(tmp_path: Path) -> Path:
    """A scratch folder where the docs' relative paths work, so files an example writes land here."""
    (tmp_path / "app").symlink_to(ROOT / "app")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)  # this interpreter's env
    (tmp_path / ".venv" / "bin").exists() or pytest.skip("no virtual environment to run .venv/bin/...")
    return tmp_path


def run(example: Example, url: str, cwd: Path) -> str:
    code = example.code.replace(DOC_URL, url).replace(
        DOC_URL.removeprefix("http://"), url.removeprefix("http://")
    )
    code = code.replace(DOC_GRPC, GRPC_TARGET.get(url, DOC_GRPC))
    env = os.environ | {"NINSERVE_URL": url, "PYTHONPATH": str(ROOT)}
    if example.lang == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{example} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("example", ALL, ids=str)
def test_the_example_prints_what_the_doc_quotes(
    example: Example, server_url: str, checkout_view: Path
) -> None:
    got = run(example, server_url, checkout_view)
    want = example.output.replace("…", "...")
    if not CHECKER.check_output(want, got, FLAGS):
        diff = CHECKER.output_difference(doctest.Example("", want), got, FLAGS)
        pytest.fail(f"{example}: the doc quotes an output the example no longer prints\n{diff}")


def test_the_classify_response_in_api_md_is_the_real_one(server_url: str) -> None:
    """docs/api.md's `POST /v1/classify` example quotes cat.jpg's top class, scores, size and the
    model version: they are what the server answers (full precision, as the JSON has them)."""
    text = (ROOT / "docs/api.md").read_text()
    block = next(b["body"] for b in FENCE.finditer(text) if b["lang"] == "json" and '"top": [' in b["body"])
    answer = httpx.post(
        f"{server_url}/v1/classify",
        params={"top_k": 3},
        files={"file": ("cat.jpg", (ROOT / "app/web/samples/cat.jpg").read_bytes(), "image/jpeg")},
    ).json()
    top = re.search(r'"top": \[\{"label": "(\w+)", "index": (\d+), "score": ([\d.e-]+)\}', block)
    assert top is not None
    assert (top[1], int(top[2]), float(top[3])) == (
        answer["top"][0]["label"],
        answer["top"][0]["index"],
        answer["top"][0]["score"],
    )
    scores = re.search(r'"scores": \{(.*?)\}', block, re.S)[1]
    quoted = dict(re.findall(r'"(\w+)": ([\d.e-]+)', scores))
    assert quoted and {label: float(v) for label, v in quoted.items()} == {
        label: answer["scores"][label] for label in quoted
    }
    size = re.search(r'"image": \{"width": (\d+), "height": (\d+)\}', block)
    assert (int(size[1]), int(size[2])) == (answer["image"]["width"], answer["image"]["height"])
    assert f'"version": "{answer["model"]["version"]}"' in block
