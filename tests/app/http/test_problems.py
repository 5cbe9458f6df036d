"""app/http/problems.py: one function renders RFC 9457 bodies for every domain error."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import orjson
import pytest
from starlette.requests import Request

from app.core import errors
from app.http import problems


def test_problem_body_and_response() -> None:
    exc = errors.ImageTooLarge("too big", width=10, height=20)
    body = problems.error_problem(exc)
    assert body == {
        "type": "urn:ninserve:problem:image-too-large",
        "title": HTTPStatus(413).phrase,
        "status": 413,
        "detail": "too big",
        "width": 10,
        "height": 20,
    }
    response = problems.problem_response(
        503, "busy", slug="overloaded", retry_after=1, instance="/v1/classify"
    )
    assert response.media_type == "application/problem+json" and response.headers["retry-after"] == "1"
    assert orjson.loads(response.body)["instance"] == "/v1/classify"


def test_a_long_path_is_clipped_in_instance() -> None:
    path = "/v1/predictions/" + "a" * 16_000
    body = orjson.loads(problems.problem_response(404, "no such prediction", instance=path).body)
    assert body["instance"] == path[: problems.INSTANCE_LIMIT] + "..."


def test_a_logged_path_is_escaped_and_cut_short(caplog: pytest.LogCaptureFixture) -> None:
    path = "/v1/classify\nFAKE log line" + "x" * 5000
    request = Request({"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""})
    with caplog.at_level("ERROR", logger="ninserve"):
        asyncio.run(problems._on_unexpected(request, RuntimeError("boom")))
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and len(record.getMessage()) < 200
