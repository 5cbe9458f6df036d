"""app/http/deps.py `reject_unknown_query`: a query parameter a v1 route does not take is a 422 that
names the ones it does take, on the fast classify route as on every other v1 route."""

from __future__ import annotations

import httpx
import pytest

from app.http.routes.fast_classify import plain_query
from tests.app.helpers import png


def _problem(response: httpx.Response) -> dict:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:ninserve:problem:invalid-parameter"
    return body


def test_a_typo_in_classify_is_refused_not_ignored(client: httpx.Client) -> None:
    assert plain_query(b"topk=1") is None  # the raw route leaves it to FastAPI
    response = client.post("/v1/classify?topk=1", files={"file": ("x.png", png(0), "image/png")})
    body = _problem(response)
    assert body["detail"] == "unknown query parameter 'topk'; it takes top_k, maps, resolution"
    assert body["unknown"] == ["topk"] and body["accepted"] == ["top_k", "maps", "resolution"]


@pytest.mark.parametrize(
    ("method", "path", "accepted"),
    [
        ("POST", "/v1/classify/batch", "top_k, maps, resolution"),
        ("GET", "/v1/models", "none"),
    ],
)
def test_every_v1_route_checks(client: httpx.Client, method: str, path: str, accepted: str) -> None:
    files = [("files", ("x.png", png(0), "image/png"))] if method == "POST" else None
    body = _problem(client.request(method, f"{path}?a=1&b=2&a=3", files=files))
    assert body["detail"].startswith("unknown query parameters 'a', 'b'; it takes")
    assert body["detail"].endswith(accepted)


def test_many_or_long_unknown_names_are_named_short(client: httpx.Client) -> None:
    query = "&".join(f"p{i}{'x' * 200}=1" for i in range(40))
    body = _problem(client.get(f"/v1/models?{query}"))
    assert len(body["unknown"]) == 8 and all(len(name) <= 70 for name in body["unknown"])
    assert "and 32 more" in body["detail"] and len(body["detail"]) < 1000


def test_prediction_routes_check_their_own_parameters(client: httpx.Client) -> None:
    result = client.post("/v1/classify?top_k=1", files={"file": ("x.png", png(0), "image/png")}).json()
    grid = f"/v1/predictions/{result['id']}/maps.png"
    assert client.get(grid, params={"size": 32, "overlay": "true"}).status_code == 200
    body = _problem(client.get(grid, params={"colourmap": "gray"}))
    assert (
        body["detail"]
        == "unknown query parameter 'colourmap'; it takes size, overlay, colormap, normalize, alpha, legend"
    )
    assert client.get(f"/v1/predictions/{result['id']}?x=1").status_code == 422


def test_known_parameters_still_pass(client: httpx.Client) -> None:
    response = client.post("/v1/classify?top_k=2&maps=none", files={"file": ("x.png", png(0), "image/png")})
    assert response.status_code == 200 and len(response.json()["top"]) == 2
