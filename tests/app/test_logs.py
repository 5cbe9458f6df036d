"""NINSERVE_LOG_FORMAT (app/logs.py): `json` makes every line `ninserve serve` writes one JSON
object, with the request id the response returns; the default stays uvicorn's and ninserve's text."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.logs import REQUEST_ID, JsonFormatter, console
from tests.app.helpers import free_port, png, server_env


def serve_and_log(
    tiny_model: Path, log_format: str | None, requests: list[dict[str, str]]
) -> tuple[list, str]:
    """Run `ninserve serve` with this log format, send GET /healthz with each header set, stop it
    with SIGTERM; (responses, everything it wrote to stdout and stderr)."""
    port = free_port()
    env = server_env(tiny_model, port=str(port))
    env.pop("NINSERVE_LOG_FORMAT", None)
    if log_format is not None:
        env["NINSERVE_LOG_FORMAT"] = log_format
    command = [sys.executable, "-c", "import sys; from app.cli.main import main; sys.exit(main())", "serve"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    responses = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        for headers in requests:
            responses.append(httpx.get(f"http://127.0.0.1:{port}/healthz", headers=headers, timeout=5))
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # never leave a server behind
            proc.kill()
            output, _ = proc.communicate()
    return responses, output


def test_json_lines_carry_the_request_id_the_response_returns(tiny_model: Path) -> None:
    given = {"X-Request-ID": "trace-42.a:b"}
    hostile = {"X-Request-ID": 'x" injected\\n{"level": "fake"}'}
    (kept, replaced, fresh), output = serve_and_log(tiny_model, "json", [given, hostile, {}])
    assert kept.headers["x-request-id"] == "trace-42.a:b"
    assert replaced.headers["x-request-id"] != hostile["X-Request-ID"]  # not a plain token: a new id
    assert len(fresh.headers["x-request-id"]) == 32
    lines = [line for line in output.splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line, the start banner included
    assert all({"time", "level", "logger", "message"} <= d.keys() for d in docs)
    banner = docs[0]
    assert banner["logger"] == "ninserve.cli" and banner["message"].startswith("ninserve: starting")
    access = [d for d in docs if d["logger"] == "ninserve.access" and d["path"] == "/healthz"]
    ids = [d["request_id"] for d in access]
    assert ids == [r.headers["x-request-id"] for r in (kept, replaced, fresh)]
    for doc, response in zip(access, (kept, replaced, fresh), strict=True):
        assert doc["status"] == 200 and doc["method"] == "GET" and doc["http_version"] == "1.1"
        assert doc["bytes"] == len(response.content) and 0 < doc["duration_ms"] < 5000
        assert doc["model"] is None and doc["version"] is None  # /healthz names no model
    assert not [d for d in docs if d["logger"] == "uvicorn.access"]  # one access line a request
    assert any(d["logger"] == "ninserve" and d["message"].startswith("ready:") for d in docs)
    assert "request_id" not in next(d for d in docs if d["message"].startswith("ready:"))  # no request


def test_json_access_line_names_the_model_version_and_size(tiny_model: Path) -> None:
    port = free_port()
    env = server_env(tiny_model, port=str(port)) | {"NINSERVE_LOG_FORMAT": "json"}
    command = [sys.executable, "-c", "import sys; from app.cli.main import main; sys.exit(main())", "serve"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        classified = httpx.post(
            f"http://127.0.0.1:{port}/v1/classify", files={"file": ("x.png", png(3), "image/png")}, timeout=30
        )
        bad = httpx.post(f"http://127.0.0.1:{port}/v1/classify", content=b"nope", timeout=30,
                         headers={"content-type": "image/png"})  # fmt: skip
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert classified.status_code == 200 and bad.status_code == 400
    docs = [json.loads(line) for line in output.splitlines() if line.strip()]
    ok, refused = [d for d in docs if d["logger"] == "ninserve.access" and d["path"] == "/v1/classify"]
    model = classified.json()["model"]
    assert (ok["model"], ok["version"]) == (model["name"], model["version"])
    assert ok["status"] == 200 and ok["bytes"] == len(classified.content)
    assert ok["request_id"] == classified.headers["x-request-id"]
    assert refused["status"] == 400 and refused["bytes"] == len(bad.content)


def test_console_lines_follow_the_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    console("ninserve: starting\n  page  http://127.0.0.1:8000/", "json")
    console("ninserve serve: invalid settings: x", "text", level="error")
    err = capsys.readouterr().err.splitlines()
    doc = json.loads(err[0])
    assert doc["logger"] == "ninserve.cli" and doc["message"].endswith("page  http://127.0.0.1:8000/")
    assert err[1] == "ninserve serve: invalid settings: x"


def test_text_stays_the_default(tiny_model: Path) -> None:
    (response,), output = serve_and_log(tiny_model, None, [{"X-Request-ID": "abc"}])
    assert "x-request-id" not in response.headers
    assert not [line for line in output.splitlines() if line.startswith("{")]
    assert '"GET /healthz HTTP/1.1" 200' in output  # uvicorn's access line as before
    assert any(" INFO ninserve: ready:" in line for line in output.splitlines())


def test_formatter_keeps_tracebacks_and_odd_text_inside_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord(
            "ninserve", logging.ERROR, __file__, 1, 'say "%s"', ("x\ny",), sys.exc_info()
        )
    token = REQUEST_ID.set("r1")
    try:
        line = JsonFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == 'say "x\ny"' and doc["request_id"] == "r1" and doc["level"] == "error"
    assert "ValueError: bad" in doc["exception"]


@pytest.mark.parametrize("value", ["", "a" * 129, "has space", "ü"])
def test_only_plain_tokens_are_kept_as_ids(value: str) -> None:
    from app.logs import ACCEPTED_ID

    assert ACCEPTED_ID.fullmatch(value.encode()) is None
