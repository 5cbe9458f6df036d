"""app/http/middleware/body_limits.py: one body over its limit is a 413; bodies held together past their
budget get 503 + Retry-After before they are read, and their bytes come back when answered."""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from app.core.errors import Overloaded
from app.http.middleware.body_limits import BodyBudget, BodyLimitMiddleware
from tests.app.helpers import live_server, png
from tests.app.http.test_errors import assert_problem


def test_budget_takes_and_gives_back() -> None:
    budget = BodyBudget(100)
    assert budget.take(60) and not budget.take(41) and budget.take(40)
    budget.give_back(60)
    assert budget.in_use == 40 and budget.take(60)


def _start_upload(url: str, declared: int) -> socket.socket:
    """Headers and half of a body: the server holds its reservation while it waits for the rest."""
    parts = urlsplit(url)
    conn = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    conn.sendall(head.encode() + b"x" * (declared // 2))
    return conn


def test_bodies_past_the_budget_wait_their_turn(make_settings) -> None:
    settings = make_settings(max_body_bytes=4096, max_body_bytes_in_flight=6000, body_timeout_s=5.0)
    with live_server(settings) as url:
        holding = _start_upload(url, 4000)
        try:
            time.sleep(0.2)  # the server has read the headers and taken 4,000 bytes
            refused = httpx.post(
                url + "/v1/classify", content=b"y" * 3000, headers={"Content-Type": "image/png"}
            )
            body = assert_problem(refused, 503, "overloaded")
            assert refused.headers["retry-after"] == "1"
            assert "bytes of request bodies" in body["detail"]
            small = httpx.post(url + "/v1/classify", content=png(1), headers={"Content-Type": "image/png"})
            assert small.status_code == 200  # what still fits is served beside the held upload
        finally:
            holding.close()
        deadline = time.monotonic() + 5
        while True:  # the abandoned upload's bytes come back once its request ends
            again = httpx.post(
                url + "/v1/classify", content=b"y" * 3000, headers={"Content-Type": "image/png"}
            )
            if again.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert again.status_code == 400  # admitted and read: not an image


def test_one_body_over_the_limit_is_413(make_settings) -> None:
    with live_server(make_settings(max_body_bytes=2048)) as url:
        response = httpx.post(
            url + "/v1/classify", content=b"x" * 4096, headers={"Content-Type": "image/png"}
        )
        assert_problem(response, 413, "payload-too-large")
        v2 = httpx.post(url + "/v2/models/nin-cifar10/infer", content=b"{" * 4096)
        assert v2.status_code == 413 and "error" in v2.json()


def test_a_streamed_body_takes_its_bytes_as_they_come() -> None:
    """Chunked bodies declare no length: each chunk is taken from the budget as it arrives."""
    budget = BodyBudget(1000)
    budget.take(900)  # other requests' bodies
    chunks = [b"a" * 60, b"b" * 60, b""]
    seen: list[int] = []

    async def app(scope, receive, send) -> None:
        while True:
            message = await receive()
            seen.append(budget.in_use)
            if not message.get("more_body"):
                return

    async def receive() -> dict:
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    middleware = BodyLimitMiddleware(app, max_bytes=10_000, budget=budget)
    scope = {"type": "http", "headers": [], "path": "/v1/classify"}
    with pytest.raises(Overloaded):
        asyncio.run(middleware(scope, receive, None))
    assert seen == [960]  # the first chunk fitted; the second did not
    assert budget.in_use == 900  # given back when the request ended


@pytest.mark.parametrize(
    ("path", "kind"), [("/v1/classify", "application/problem+json"), ("/v2/x", "application/json")]
)
def test_a_content_length_of_thousands_of_digits_is_a_413(path: str, kind: str) -> None:
    async def app(scope, receive, send) -> None:
        raise AssertionError("the body limit answers first")

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"content-length", b"9" * 5000)]}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=1024, budget=BodyBudget(4096))(scope, receive, send))
    start, body = sent[0], sent[1]["body"]
    assert start["status"] == 413 and (b"content-type", kind.encode()) in start["headers"]
    assert b"more than 1000000000000000000 bytes; the limit is 1024" in body and len(body) < 400


def test_a_content_length_with_leading_zeros_is_read_as_its_value(server_url: str) -> None:
    """30 digits, 28 of them leading zeros: before, counted as 10**18 bytes and refused with 413."""
    body = png()
    parts = urlsplit(server_url)
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nConnection: close\r\n"
        f"Content-Length: {len(body):030d}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"label"' in answer, answer[:300]
