"""app/http/openapi.py: the schema says exactly what the server accepts, and schemathesis
`--checks all` finds no 5xx and no response outside the schema (bounded to a few seconds per
operation; the config for what no schema can express is tests/app/http/schemathesis.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.http.main import create_app
from tests.app.helpers import live_server, png

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
KEY = "schema-key-0123456789"


def _resolution(schema: dict, path: str) -> dict:
    params = schema["paths"][path]["post"]["parameters"]
    return next(p for p in params if p["name"] == "resolution")["schema"]


def test_resolution_bounds_are_the_models_and_the_settings(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/v1/classify", "/v1/classify/batch"):
        assert _resolution(schema, path) | {"description": None} == {
            "type": "integer",
            "minimum": 32,  # the model's native size
            "maximum": 256,  # NINSERVE_MAX_RESOLUTION
            "multipleOf": 4,
            "title": "Resolution",
            "description": None,
        }


def test_the_schema_follows_max_resolution(make_settings) -> None:
    with live_server(make_settings(max_resolution=96)) as url:
        schema = httpx.get(url + "/openapi.json").json()
        assert _resolution(schema, "/v1/classify")["maximum"] == 96
        image = {"content": png(), "headers": {"Content-Type": "image/png"}}
        assert httpx.post(url + "/v1/classify?resolution=96", **image).status_code == 200
        assert httpx.post(url + "/v1/classify?resolution=100", **image).status_code == 422


def test_before_the_model_loads_the_schema_is_not_cached(make_settings) -> None:
    app = create_app(make_settings())
    assert _resolution(app.openapi(), "/v1/classify")["minimum"] == 32
    assert app.openapi_schema is None  # built again once the native size is known


def test_uploads_are_at_least_one_byte_and_one_file(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    form = "multipart/form-data"
    one = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"][form]["schema"]
    batch = schema["paths"]["/v1/classify/batch"]["post"]["requestBody"]["content"][form]["schema"]
    assert one["properties"]["file"]["minLength"] == 1
    assert batch["properties"]["files"]["minItems"] == 1


def test_with_keys_the_schema_has_a_bearer_scheme(make_settings) -> None:
    schema = create_app(make_settings(api_keys=KEY)).openapi()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from NINSERVE_API_KEYS",
    }
    assert schema["security"] == [{"apiKey": []}]
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert "401" in schema["paths"]["/v1/classify"]["post"]["responses"]
    assert "security" not in create_app(make_settings()).openapi()


def _schemathesis(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        SCHEMATHESIS or "schemathesis",
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "12",
        "--seed",
        "14",
        "--workers",
        "1",  # hypothesis's lambda-source cache is not thread-safe on Python 3.11
        "--no-shrink",
        "--request-timeout",
        "10",
        *extra,
    ]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis (dev extra) is not installed")
def test_schemathesis_checks_all(server_url: str, tmp_path: Path) -> None:
    result = _schemathesis(server_url, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis (dev extra) is not installed")
def test_schemathesis_checks_all_with_api_keys(make_settings, tmp_path: Path) -> None:
    """`ignored_auth` among them: every protected operation refuses a request without the key."""
    with live_server(make_settings(api_keys=KEY, max_request_images=8)) as url:
        auth = f"Authorization: Bearer {KEY}"
        result = _schemathesis(url, tmp_path, "--header", auth, "--max-examples", "4")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
