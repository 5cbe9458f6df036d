"""app/http/middleware/security_headers.py and app/http/middleware/cors.py: headers on every answer, CORS only
when asked."""

from __future__ import annotations

import httpx
import pytest

from app.http.middleware.security_headers import DEFAULTS
from tests.app.helpers import live_server, png


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("POST", "/v1/classify", 200),
        ("GET", "/v1/predictions/nope", 404),
        ("GET", "/v2/nothing", 404),
        ("DELETE", "/v1/classify", 405),
        ("GET", "/docs", 200),
    ],
)
def test_every_answer_carries_the_security_headers(client: httpx.Client, method, path, status) -> None:
    response = client.request(method, path, content=png(), headers={"Content-Type": "image/png"})
    assert response.status_code == status
    for name, value in DEFAULTS:
        if name == "Content-Security-Policy":  # a route may send a fuller policy of its own
            assert value in response.headers[name]
        else:
            assert response.headers[name] == value


def test_body_limit_rejections_carry_them_too(make_settings) -> None:
    with live_server(make_settings(max_body_bytes=2048)) as url:
        too_big = b"x" * 4096
        response = httpx.post(url + "/v1/classify", content=too_big, headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and response.headers["x-content-type-options"] == "nosniff"


def test_server_timing_follows_the_setting(make_settings) -> None:
    loopback = make_settings()  # bound to 127.0.0.1: a development server, timings on
    assert loopback.send_server_timing
    assert not make_settings(host="0.0.0.0").send_server_timing
    with live_server(make_settings(server_timing=False)) as url:
        response = httpx.post(url + "/v1/classify", content=png(), headers={"Content-Type": "image/png"})
    assert response.status_code == 200 and "server-timing" not in response.headers


def test_no_cors_headers_unless_origins_are_set(client: httpx.Client) -> None:
    response = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_for_configured_origins(make_settings) -> None:
    settings = make_settings(cors_origins="https://app.example, https://b.example")
    with live_server(settings) as url, httpx.Client(base_url=url) as c:
        preflight = c.options(
            "/v1/classify",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        simple = c.get("/v1/models", headers={"Origin": "https://b.example"})
        assert simple.headers["access-control-allow-origin"] == "https://b.example"
        exposed = simple.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed and "x-map-range" in exposed and "x-map-units" in exposed
        other = c.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
