"""The page's "call this model from code" box: a tritonclient.grpc call for the model shown, on
the port the server says it answers gRPC on, which runs as written; no box without gRPC."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest

from app.config import DEFAULT_MODEL_PATH, Settings
from app.http.main import create_app
from tests.app.helpers import live_server
from tests.browser.conftest import DESKTOP, Watched

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, int]]:
    """(HTTP base URL, gRPC port) of one server with the shipped model."""
    app = create_app(Settings(model_path=DEFAULT_MODEL_PATH, device="cpu", intra_op_threads=1, grpc_port=0))
    with live_server(app) as url:
        yield url, app.state.grpc.port


def test_the_grpc_snippet_names_the_model_and_runs_as_written(browser, served: tuple[str, int]) -> None:
    url, grpc_port = served
    context = browser.new_context(viewport=DESKTOP, base_url=url)
    try:
        page = context.new_page()
        watched = Watched(page)
        page.on("pageerror", lambda exc: watched.page_errors.append(str(exc)))
        page.goto("/")
        expect(page.locator("#model-name")).to_have_text("nin-cifar10")
        snippet = page.locator("#grpc-snippet")
        expect(snippet).to_be_hidden()  # folded away: the page is for trying images
        page.locator("#clients summary").click()
        expect(snippet).to_be_visible()
        code = snippet.inner_text()
        assert f'InferenceServerClient("127.0.0.1:{grpc_port}")' in code
        assert 'client.infer("nin-cifar10", [image])' in code
        assert "np.zeros((1, 32, 32, 3), np.uint8)" in code
        watched.screenshot("clients-grpc")
        assert watched.page_errors == []
    finally:
        context.close()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, namespace)  # noqa: S102 - the page's own snippet, as written
    scores = namespace["result"].as_numpy("scores")
    assert scores.shape == (1, 10) and abs(float(scores.sum()) - 1) < 1e-4
    namespace["client"].close()


def test_no_grpc_box_on_a_server_without_grpc(browser) -> None:
    app = create_app(Settings(model_path=DEFAULT_MODEL_PATH, device="cpu", intra_op_threads=1))
    with live_server(app) as url:
        context = browser.new_context(viewport=DESKTOP, base_url=url)
        try:
            page = context.new_page()
            page.goto("/")
            expect(page.locator("#model-name")).to_have_text("nin-cifar10")
            expect(page.locator("#clients")).to_be_hidden()
        finally:
            context.close()
