"""Browser tests: Debian's chromium driven headless by Playwright against a live server.

Playwright's own browser downloads are never used (`playwright install` is not run anywhere):
`executable_path` points at the system chromium (`apt-get install chromium`, scripts/ci-deps.sh).
Without chromium or the playwright package the tests skip and say which is missing.
Screenshots go to tests/browser/artifacts/ (git-ignored), or to $NINSERVE_BROWSER_ARTIFACTS.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.config import DEFAULT_MODEL_PATH, Settings
from tests.app.helpers import live_server

CHROMIUM = Path(os.environ.get("NINSERVE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("NINSERVE_BROWSER_ARTIFACTS", Path(__file__).parent / "artifacts"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Small enough that a 1000x1000 test image is refused (413), large enough for every sample photo.
MAX_IMAGE_PIXELS = 500_000


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """One chromium for the browser tests, stopped after them: Playwright's sync API keeps an
    event loop running in this thread while it is open, which would break every later test
    that calls asyncio.run()."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    if not (CHROMIUM.is_file() or shutil.which(str(CHROMIUM))):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or set NINSERVE_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    """The real shipped model (4 MB, fast), so the top class and its score mean something."""
    settings = Settings(
        model_path=DEFAULT_MODEL_PATH, device="cpu", intra_op_threads=1, max_image_pixels=MAX_IMAGE_PIXELS
    )
    with live_server(settings) as url:
        yield url


@dataclass
class Watched:
    """A page plus everything it did: console errors, uncaught exceptions, every request's URL."""

    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)  # stopped by the page's CSP: never sent

    def outside_requests(self) -> list[str]:
        """Requests sent to anything but 127.0.0.1 (blob: and data: URLs never leave the page)."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("blob", "data")
            and urlsplit(url).hostname != "127.0.0.1"
            and url not in self.blocked
        ]

    def broken_images(self) -> list[str]:
        """Visible <img> elements that finished loading without a picture (their alt texts)."""
        script = (
            "() => [...document.images].filter(i => i.checkVisibility() && i.getAttribute('src')"
            " && i.complete && i.naturalWidth === 0).map(i => i.alt || i.src)"
        )
        return self.page.evaluate(script)

    def assert_clean(self) -> None:
        assert self.broken_images() == []
        assert self.page_errors == []
        assert self.console_errors == []
        assert self.failed == []
        assert self.outside_requests() == []

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def record_failure(watched: Watched, url: str, failure: str | None) -> None:
    if failure == "csp":
        watched.blocked.add(url)
    else:
        watched.failed.append(f"{url}: {failure}")


@pytest.fixture
def open_page(browser, base_url: str) -> Iterator:
    contexts = []

    def open_(viewport: dict[str, int] = DESKTOP, path: str = "/") -> Watched:
        context = browser.new_context(viewport=viewport, base_url=base_url)
        contexts.append(context)
        page = context.new_page()
        watched = Watched(page)
        page.on("console", lambda m: watched.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: watched.page_errors.append(str(exc)))
        page.on("request", lambda r: watched.requests.append(r.url))
        page.on("requestfailed", lambda r: record_failure(watched, r.url, r.failure))
        page.goto(path)
        return watched

    yield open_
    for context in contexts:
        context.close()
