"""app/errors.py: domain errors carry their status; one function renders RFC 9457 bodies."""

from __future__ import annotations

from http import HTTPStatus

import orjson

from app import errors


def test_each_error_has_its_status() -> None:
    expected = {
        errors.InvalidImage: 400,
        errors.EmptyImage: 400,
        errors.InvalidUpload: 400,
        errors.PayloadTooLarge: 413,
        errors.ImageTooLarge: 413,
        errors.TooManyFiles: 413,
        errors.UnsupportedMediaType: 415,
        errors.InvalidParameter: 422,
        errors.PredictionNotFound: 404,
        errors.LabelNotFound: 404,
        errors.Overloaded: 503,
        errors.DeadlineExceeded: 503,
        errors.NotReady: 503,
    }
    for cls, status in expected.items():
        assert cls("x").status == status, cls
    for cls in (errors.Overloaded, errors.DeadlineExceeded, errors.NotReady):
        assert cls.retry_after and cls.retry_after > 0


def test_problem_body_and_response() -> None:
    exc = errors.ImageTooLarge("too big", width=10, height=20)
    body = errors.error_problem(exc)
    assert body == {
        "type": "urn:ninserve:problem:image-too-large",
        "title": HTTPStatus(413).phrase,
        "status": 413,
        "detail": "too big",
        "width": 10,
        "height": 20,
    }
    response = errors.problem_response(503, "busy", slug="overloaded", retry_after=1, instance="/v1/classify")
    assert response.media_type == "application/problem+json" and response.headers["retry-after"] == "1"
    assert orjson.loads(response.body)["instance"] == "/v1/classify"
