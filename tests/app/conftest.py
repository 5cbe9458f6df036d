"""Fixtures for the serving tests: a tiny exported model (fast, deterministic), settings built
from it, and one shared live server over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.app.helpers import build_tiny_model, live_server


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def make_settings(tiny_model: Path) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        values = {
            "model_path": tiny_model,
            "device": "cpu",
            "intra_op_threads": 1,
            "decode_threads": 2,
            "max_batch_wait_ms": 5.0,
        } | overrides
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def server_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """Shared by tests that do not need special limits; batches up to 16, waits up to 20 ms."""
    with live_server(make_settings(max_batch_size=16, max_batch_wait_ms=20.0, max_request_images=8)) as url:
        yield url


@pytest.fixture
def client(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=30) as c:
        yield c
