"""app/http/redact.py: credential-like query values never reach a log line, on a real server too."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.http.redact import REDACTED, RedactSecrets, redact
from tests.app.helpers import free_port, server_env, wait_until_ready

SECRET = "s3cr3t-0123456789abcdef"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"/v1/models?api_key={SECRET}", f"/v1/models?api_key={REDACTED}"),
        (f"/x?top_k=3&access_token={SECRET}&maps=none", f"/x?top_k=3&access_token={REDACTED}&maps=none"),
        (
            f'"GET /x?Authorization=Bearer%20{SECRET} HTTP/1.1" 401',
            f'"GET /x?Authorization={REDACTED} HTTP/1.1" 401',
        ),
        (f"/x?api%5Fkey={SECRET}", f"/x?api%5Fkey={REDACTED}"),
        (f"/x?X-Api-Key={SECRET}#frag", f"/x?X-Api-Key={REDACTED}#frag"),
        ("/x?top_k=3&resolution=64", "/x?top_k=3&resolution=64"),
        ("no query here: key=value", "no query here: key=value"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_rewrites_arguments_and_keeps_every_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/v1/models?token={SECRET}", "1.1", 200), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert SECRET not in record.getMessage() and REDACTED in record.getMessage()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_key_in_the_query_string_is_not_written_to_the_access_log(
    tiny_model: Path, tmp_path: Path, log_format: str
) -> None:
    """Before: `GET /v1/models?api_key=<key>` was logged with the key by uvicorn's access log."""
    port = free_port()
    env = server_env(tiny_model, api_keys=SECRET, log_format=log_format)
    log_path = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "app.cli.main", "serve", "--port", str(port), "--log-level", "info"]
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(server, url, why=log_path.read_text)
        assert httpx.get(url + f"/v1/models?api_key={SECRET}").status_code == 401
        assert httpx.get(url + f"/healthz?top_k=1&access_token={SECRET}").status_code == 200
    finally:
        server.terminate()
        server.wait(30)
    log = log_path.read_text()
    assert "/v1/models?api_key=[redacted]" in log and "access_token=[redacted]" in log, log
    assert SECRET not in log
