"""The page at /, its static assets and samples, /docs and /redoc without a CDN, and the wheel
that carries them (the container installs the project non-editable)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from app.http.routes.page import VENDORED, WEB_DIR

ROOT = Path(__file__).resolve().parents[4]
SAMPLES = WEB_DIR / "samples"


def test_page_is_served_with_a_strict_content_security_policy(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = response.text
    assert "<script>" not in html and "style=" not in html  # nothing inline: the CSP would block it
    assert not re.search(r"""(src|href)=["']https?://""", html)  # every asset from this server
    for asset in re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", html):
        assert client.get(asset).status_code == 200, asset


def test_page_scripts_call_only_the_v1_api() -> None:
    scripts = [path.read_text() for path in WEB_DIR.glob("*.js")]
    assert len(scripts) >= 3  # page.js and the modules it imports
    calls: set[str] = set()
    for script in scripts:
        assert not re.search(r"https?://", script)
        calls |= set(re.findall(r"""api\(\s*[`"'](/[^`"'?$]*)""", script))
    assert calls and all(path.startswith("/v1/") for path in calls), calls


def test_samples_manifest_files_and_sources_agree(client: httpx.Client) -> None:
    manifest = json.loads((SAMPLES / "samples.json").read_text())["samples"]
    listed = {entry["file"] for entry in manifest}
    on_disk = {path.name for path in SAMPLES.glob("*.jpg")}
    assert listed == on_disk and "cat.jpg" in listed
    sources = (SAMPLES / "SOURCES.md").read_text()
    for name in listed - {f"cifar10-{entry['label']}.jpg" for entry in manifest}:
        assert f"`{name}`" in sources, f"{name} has no source and licence in SOURCES.md"
    assert "`cifar10-<class>.jpg`" in sources
    cifar = {entry["label"] for entry in manifest if entry["file"].startswith("cifar10-")}
    assert len(cifar) == 10  # one training image per class
    for path in SAMPLES.glob("*.jpg"):
        assert path.stat().st_size < 100_000, path.name
    response = client.get("/static/samples/cat.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_load_their_assets_from_the_package(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
    assert assets and all(asset.startswith("/static/") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "fonts.googleapis" not in response.text and "cdn" not in response.text.lower()
    assert "img-src 'self' data:" in response.headers["content-security-policy"]


def test_vendored_versions_are_recorded() -> None:
    readme = (WEB_DIR / "vendor" / "README.md").read_text()
    for package, version in VENDORED.items():
        assert f"`{package}` | {version}" in readme
    bundle = (WEB_DIR / "vendor" / "swagger-ui-bundle.js").read_text()
    assert "SwaggerUIBundle" in bundle


def test_static_files_stay_inside_the_web_folder(client: httpx.Client) -> None:
    assert client.get("/static/../api/page.py").status_code == 404
    assert client.get("/static/%2e%2e/api/page.py").status_code == 404


def test_the_wheel_carries_the_page_samples_and_vendored_assets(tmp_path: Path) -> None:
    """`pip install .` (the container) must serve the page: build the wheel and look inside."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "training", "data", "*.pyc")
    for folder in ("app", "model"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, str(source), "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("ninserve-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"app/web/{path.relative_to(WEB_DIR).as_posix()}" for path in WEB_DIR.rglob("*") if path.is_file()
    }
    assert expected <= packed, sorted(expected - packed)
    assert "app/web/samples/cat.jpg" in packed and "app/web/vendor/redoc.standalone.js" in packed
