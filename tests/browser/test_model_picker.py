"""The page's model picker: with more than one loaded version the page lists them and classifies
with the one picked (POST /v1/models/{name}/versions/{v}/classify)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import DEFAULT_MODEL_PATH, INT8_MODEL_PATH, Settings
from tests.app.helpers import live_server
from tests.browser.conftest import DESKTOP, Watched, record_failure

expect = pytest.importorskip("playwright.sync_api").expect
SAMPLES = Path(__file__).resolve().parents[2] / "app" / "web" / "samples"


@pytest.fixture(scope="module")
def repository_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("models")
    for version, artifact in ((1, DEFAULT_MODEL_PATH), (2, INT8_MODEL_PATH)):
        (root / "nin-cifar10" / str(version)).mkdir(parents=True)
        shutil.copy(artifact, root / "nin-cifar10" / str(version) / "model.onnx")
    (root / "nin-cifar10" / "config.json").write_text(json.dumps({"version_policy": {"all": {}}}))
    settings = Settings(model_repository=root, device="cpu", intra_op_threads=1, model_memory_mb=96)
    with live_server(settings) as url:
        yield url


def test_the_picker_lists_loaded_versions_and_classifies_with_the_one_picked(
    browser, repository_url: str
) -> None:
    context = browser.new_context(viewport=DESKTOP, base_url=repository_url)
    try:
        page = context.new_page()
        watched = Watched(page)
        page.on("pageerror", lambda exc: watched.page_errors.append(str(exc)))
        page.on("request", lambda r: watched.requests.append(r.url))
        page.on("requestfailed", lambda r: record_failure(watched, r.url, r.failure))
        page.goto("/")
        picker = page.locator("#model-pick")
        expect(picker).to_be_visible()
        expect(picker.locator("option")).to_have_text(["nin-cifar10 2", "nin-cifar10 1"])
        expect(page.locator("#model-version")).to_have_text("2")
        picker.select_option(label="nin-cifar10 1")
        expect(page.locator("#model-version")).to_have_text("1")
        page.set_input_files("#file", str(SAMPLES / "cat.jpg"))
        expect(page.locator("#verdict")).to_contain_text("cat")
        assert any("/v1/models/nin-cifar10/versions/1/classify" in url for url in watched.requests)
        watched.screenshot("model-picker")
        assert watched.page_errors == [] and watched.failed == []
    finally:
        context.close()
