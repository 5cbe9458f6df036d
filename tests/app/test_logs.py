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

from app.logs import REQUEST_ID, JsonFormatter
from tests.app.helpers import free_port, server_env


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
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    strays = [line for line in lines if not line.startswith("{") and not line.startswith(("ninserve:", "  "))]
    assert not strays, strays  # only the start banner (the CLI's own stderr) is not JSON
    assert {"time", "level", "logger", "message"} <= docs[0].keys()
    access = [d for d in docs if d["logger"] == "uvicorn.access" and d["path"] == "/healthz"]
    ids = [d["request_id"] for d in access]
    assert ids == [r.headers["x-request-id"] for r in (kept, replaced, fresh)]
    assert all(d["status"] == 200 and d["method"] == "GET" for d in access)
    assert any(d["logger"] == "ninserve" and d["message"].startswith("ready:") for d in docs)
    assert "request_id" not in next(d for d in docs if d["message"].startswith("ready:"))  # no request


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
