"""app/http/middleware/auth.py: opt-in bearer API keys, on every route but the open ones."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.http.main import create_app
from app.http.middleware.auth import bearer_token, key_matches
from tests.app.helpers import live_server, png

KEY = "k3y-0123456789abcdef"
OTHER = "other-key-fedcba9876543210"
V2_MODEL = "/v2/models/tiny"


@pytest.fixture(scope="module")
def keyed_url(make_settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    keys_file = tmp_path_factory.mktemp("secrets") / "keys"
    keys_file.write_text(f"{OTHER}\n\n")
    with live_server(make_settings(api_keys=KEY, api_keys_file=keys_file)) as url:
        yield url


@pytest.fixture
def anonymous(keyed_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_url, timeout=30) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/classify"),
        ("POST", "/v1/classify/batch"),
        ("GET", "/v1/models"),
        ("GET", "/v1/predictions/abc"),
        ("GET", "/metrics"),
        ("GET", "/v1/nothing-here"),  # unknown routes too: no probing without a key
    ],
)
def test_protected_routes_answer_401_problem_without_a_key(anonymous: httpx.Client, method, path) -> None:
    response = anonymous.request(method, path, content=png(), headers={"Content-Type": "image/png"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="ninserve"'
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:ninserve:problem:unauthorized"


def test_v2_answers_401_in_its_own_shape(anonymous: httpx.Client) -> None:
    response = anonymous.post(V2_MODEL + "/infer", content=b"{}")
    assert response.status_code == 401 and "API key" in response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization", [f"Bearer {KEY}x", f"Basic {KEY}", KEY, "Bearer", f"Bearer {KEY[:-1]}", "Bearer \t-"]
)
def test_a_wrong_key_is_invalid_token(anonymous: httpx.Client, authorization: str) -> None:
    response = anonymous.get("/v1/models", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("key", [KEY, OTHER])
def test_either_key_opens_every_route(anonymous: httpx.Client, key: str) -> None:
    auth = {"Authorization": f"bearer {key}"}  # the scheme is case-insensitive
    assert anonymous.get("/v1/models", headers=auth).status_code == 200
    assert anonymous.get("/metrics", headers=auth).status_code == 200
    classified = anonymous.post("/v1/classify", content=png(), headers=auth | {"Content-Type": "image/png"})
    assert classified.status_code == 200
    grid = anonymous.get(f"/v1/predictions/{classified.json()['id']}/maps.png", headers=auth)
    assert grid.status_code == 200
    assert anonymous.get(V2_MODEL, headers=auth).status_code in (200, 404)


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json"]
)
def test_probes_and_docs_are_open(anonymous: httpx.Client, path: str) -> None:
    assert anonymous.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/", "/static/app.js"])
def test_the_page_and_its_assets_need_no_key(anonymous: httpx.Client, path: str) -> None:
    assert anonymous.get(path).status_code != 401  # 404 until the page is served, never 401


PREFLIGHT = {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/models", "/v1/nothing-here", "/v2/nothing"])
@pytest.mark.parametrize("headers", [PREFLIGHT, {"Access-Control-Request-Method": "POST"}])
def test_without_cors_an_options_probe_tells_nothing_about_routes(
    anonymous: httpx.Client, path: str, headers: dict[str, str]
) -> None:
    """Before, a preflight passed the key check and reached the router: 405 for a real route,
    404 for none. Without CORS nothing answers preflights, so they need a key like any request."""
    response = anonymous.options(path, headers=headers)
    assert response.status_code == 401 and "www-authenticate" in response.headers


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/nothing-here"])
def test_with_cors_preflights_pass_without_a_key_and_are_answered_before_routing(
    make_settings, path: str
) -> None:
    settings = make_settings(api_keys=KEY, cors_origins="https://a.example")
    with live_server(settings) as url, httpx.Client(base_url=url) as c:
        preflight = c.options(path, headers=PREFLIGHT)
        assert preflight.status_code == 200  # CORSMiddleware's answer: the same for any path
        assert preflight.headers["access-control-allow-origin"] == "https://a.example"
        # Not a preflight (no Origin): CORSMiddleware lets it through, so the key check applies.
        probe = c.options(path, headers={"Access-Control-Request-Method": "POST"})
        assert probe.status_code == 401


def test_metrics_and_docs_keys_are_settings(make_settings) -> None:
    settings = make_settings(api_keys=KEY, metrics_require_key=False, docs_require_key=True)
    with live_server(settings) as url, httpx.Client(base_url=url) as c:
        assert c.get("/metrics").status_code == 200
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 401
        assert c.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_keys_are_never_logged(anonymous: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        anonymous.get("/v1/models", headers={"Authorization": f"Bearer {KEY}-wrong"})
        anonymous.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert KEY not in caplog.text


def test_no_keys_no_checks(client: httpx.Client) -> None:
    assert client.get("/v1/models").status_code == 200
    assert "www-authenticate" not in client.get("/v1/models").headers


def test_bearer_parsing_and_matching() -> None:
    assert bearer_token(b"Bearer abc") == b"abc"
    assert bearer_token(b"BEARER  abc ") == b"abc"
    assert bearer_token(b"Token abc") is None and bearer_token(b"Bearer") is None
    keys = (b"first-key-0000000", b"second-key-000000")
    assert key_matches(b"second-key-000000", keys) and not key_matches(b"second-key-00000", keys)


@pytest.mark.parametrize("bad", ["short", "has space in it xxxxxx", "nön-ascii-key-xxxxxx"])
def test_weak_or_malformed_keys_stop_the_app_without_showing_them(make_settings, bad: str) -> None:
    settings = make_settings(api_keys=f"{KEY},{bad}")  # builds: the error must not quote the keys
    with pytest.raises(ValueError, match="printable ASCII") as info:
        create_app(settings)
    assert bad not in str(info.value) and KEY not in str(info.value)


def test_settings_errors_do_not_quote_the_keys(make_settings, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        make_settings(api_keys=KEY, api_keys_file=tmp_path / "nope", max_queue=0)
    assert KEY not in str(info.value)


def test_a_missing_keys_file_stops_the_server(make_settings, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="api_keys_file not found"):
        make_settings(api_keys_file=tmp_path / "nope")
