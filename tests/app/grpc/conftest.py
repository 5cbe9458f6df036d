"""A live server with the gRPC frontend on a free port, and the real Triton gRPC client on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import tritonclient.grpc as triton

from app.config import Settings
from app.http.main import create_app
from tests.app.helpers import live_server

KEY = "g" * 24


@pytest.fixture(scope="module")
def served(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, str]]:
    """(HTTP base URL, gRPC target) of one server: batches up to 16, 8 images a request at most."""
    app = create_app(make_settings(grpc_port=0, max_batch_size=16, max_request_images=8))
    with live_server(app) as url:
        yield url, f"127.0.0.1:{app.state.grpc.port}"


@pytest.fixture
def tc(served: tuple[str, str]) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(served[1])
    yield client
    client.close()
