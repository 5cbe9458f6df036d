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


@pytest.fixture(scope="module")
def two_models_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bundled fp32 NiN and a two-class `shapes` model (the worked example's classes)."""
    from tests.app.helpers import build_tiny_model

    root = tmp_path_factory.mktemp("two")
    (root / "nin-cifar10" / "1").mkdir(parents=True)
    shutil.copy(DEFAULT_MODEL_PATH, root / "nin-cifar10" / "1" / "model.onnx")
    (root / "shapes" / "1").mkdir(parents=True)
    build_tiny_model(root / "shapes" / "1" / "model.onnx", classes=["circle", "square"])
    settings = Settings(
        model_repository=root, model_name="nin-cifar10", device="cpu", intra_op_threads=1, model_memory_mb=96
    )
    with live_server(settings) as url:
        yield url


def test_the_page_follows_the_picked_model(browser, two_models_url: str) -> None:
    """Before, a non-CIFAR model kept the CIFAR-10 header and was offered the CIFAR samples."""
    context = browser.new_context(viewport=DESKTOP, base_url=two_models_url)
    try:
        page = context.new_page()
        watched = Watched(page)
        page.on("pageerror", lambda exc: watched.page_errors.append(str(exc)))
        page.on("request", lambda r: watched.requests.append(r.url))
        page.on("requestfailed", lambda r: record_failure(watched, r.url, r.failure))
        page.goto("/")
        expect(page.locator("#model-dataset")).to_have_text("CIFAR-10 (32\u00d732 photos of 10 classes)")
        expect(page.locator("#samples .sample").first).to_be_visible()
        page.locator("#model-pick").select_option(label="shapes 1")
        dataset = page.locator("#model-dataset")
        expect(dataset).to_contain_text("32\u00d732 images of 2 classes (circle, square)")
        expect(page.locator("#model-dataset")).not_to_contain_text("CIFAR")
        expect(page.locator("#samples")).to_be_hidden()
        expect(page.locator("#no-samples")).to_contain_text("shapes knows circle, square")
        expect(page.locator("#resolution option").first).to_have_text("32 \u00d7 32 (trained size)")
        page.set_input_files("#file", str(SAMPLES / "cat.jpg"))
        expect(page.locator("#verdict")).to_contain_text("sure")
        assert any("/v1/models/shapes/versions/1/classify" in url for url in watched.requests)
        expect(page.locator("#bars")).not_to_contain_text("airplane")
        watched.screenshot("page-follows-model")
        page.locator("#model-pick").select_option(label="nin-cifar10 1")
        expect(page.locator("#model-dataset")).to_contain_text("CIFAR-10")
        expect(page.locator("#samples .sample").first).to_be_visible()
        assert watched.page_errors == [] and watched.failed == []
    finally:
        context.close()
