"""The raw POST /v1/classify route: which queries it takes, and that it answers exactly like the
documented FastAPI route it stands in front of."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import app.http.routes.fast_classify as fast_classify
from app.http.routes.fast_classify import plain_query
from tests.app.helpers import png


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", {"top_k": 5, "maps": "none", "resolution": None}),
        (b"top_k=3&maps=inline&resolution=64", {"top_k": 3, "maps": "inline", "resolution": 64}),
        (b"top_k=007", {"top_k": 7, "maps": "none", "resolution": None}),
        (b"top_k=100000&resolution=2048", {"top_k": 100000, "maps": "none", "resolution": 2048}),
    ],
)
def test_plain_queries_are_read(query: bytes, expected: dict[str, Any]) -> None:
    assert plain_query(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        b"top_k=0",
        b"top_k=100001",
        b"top_k=",
        b"top_k=%2B3",  # "+3": pydantic's call
        b"top_k=3&top_k=4",
        b"top_k=%D9%A3",  # an Arabic-Indic digit
        b"maps=INLINE",
        b"resolution=3",
        b"resolution=9999999",
        b"resolution=2052",  # over any max_resolution Settings allows
        b"resolution=66",  # not a multiple of 4: FastAPI says so
    ],
)
def test_other_queries_are_left_to_fastapi(query: bytes) -> None:
    assert plain_query(query) is None


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records each request the raw route answers."""
    calls: list[dict[str, Any]] = []
    answer = fast_classify.classify_response

    async def recording(request, rt, **params):
        calls.append(params)
        return await answer(request, rt, **params)

    monkeypatch.setattr(fast_classify, "classify_response", recording)
    return calls


def _post(client: httpx.Client, query: str) -> httpx.Response:
    return client.post(f"/v1/classify?{query}", files={"file": ("x.png", png(7), "image/png")})


def _comparable(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    return {k: v for k, v in body.items() if k not in ("id", "maps", "timing_ms")} | {
        "shape": body["maps"]["shape"]
    }


def test_both_routes_give_the_same_answer(client: httpx.Client, fast_calls: list[dict[str, Any]]) -> None:
    fast = _post(client, "top_k=3&maps=inline")
    assert fast_calls == [{"top_k": 3, "maps": "inline", "resolution": None}]
    documented = _post(client, "top_k=%2B3&maps=inline")
    assert len(fast_calls) == 1  # "+3" went to FastAPI
    assert fast.status_code == documented.status_code == 200
    assert _comparable(fast) == _comparable(documented)
    assert fast.json()["maps"]["values"] == documented.json()["maps"]["values"]
    assert fast.headers["server-timing"].startswith("decode;dur=")


def test_invalid_queries_get_fastapis_422(client: httpx.Client, fast_calls: list[dict[str, Any]]) -> None:
    response = _post(client, "top_k=0")
    assert response.status_code == 422 and fast_calls == []
    problem = response.json()
    assert problem["type"] == "urn:ninserve:problem:invalid-parameter"
    assert problem["errors"][0]["loc"] == ["query", "top_k"]


def test_errors_in_the_raw_route_are_problems(client: httpx.Client, fast_calls: list[dict[str, Any]]) -> None:
    response = client.post("/v1/classify", content=b"not an image", headers={"Content-Type": "image/png"})
    assert len(fast_calls) == 1
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["instance"] == "/v1/classify"
    wrong_method = client.get("/v1/classify")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]


def test_openapi_still_documents_the_route_once(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/classify"]) == {"post"}
    assert paths["/v1/classify"]["post"]["operationId"].startswith("classify_one")
