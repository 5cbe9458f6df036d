"""app/http/middleware/head.py: HEAD is answered wherever GET is, with GET's status and headers and no
body."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

GET_PATHS = ["/", "/healthz", "/readyz", "/v1/models", "/v2/health/live", "/v2/health/ready"]


@pytest.mark.parametrize("path", [*GET_PATHS, "/v2/models/tiny", "/docs", "/static/page.js"])
def test_head_answers_as_get_without_a_body(client: httpx.Client, path: str) -> None:
    """Before: 405 on `/`, the probes and every GET API route."""
    get, head = client.get(path), client.head(path)
    assert get.status_code == 200 and head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


def test_head_gets_what_get_would_get_where_get_is_not_served(client: httpx.Client) -> None:
    assert client.head("/v1/no-such-route").status_code == 404
    post_only = client.head("/v1/classify")
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"


def test_no_body_bytes_follow_a_head_answer_on_the_wire(server_url: str) -> None:
    """A keep-alive connection stays in step: the next answer starts right after HEAD's headers."""
    parts = urlsplit(server_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(
            b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and rest.startswith(b"HTTP/1.1 200 "), answer[:600]
