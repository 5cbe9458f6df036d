"""app/client/v1.py against a live server running the tiny model: every method, the batch chunking
a server's max_request_images forces, and errors as ApiError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.client.v1 import ApiError, Client
from app.config import Settings
from tests.app.helpers import live_server, png


@pytest.fixture(scope="module")
def small_batches(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """A server that takes at most 3 files per batch request."""
    with live_server(make_settings(max_request_images=3)) as url:
        yield url


def test_classify_and_the_maps_of_its_result(server_url: str, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png(1, size=48))
    with Client(server_url) as client:
        result = client.classify(path, top_k=3)
        assert [t["label"] for t in result["top"]] == sorted(result["scores"], key=result["scores"].get)[
            ::-1
        ][:3]
        assert result["image"] == {"width": 48, "height": 48}
        assert client.classify(png(1, size=48), top_k=3)["scores"] == result["scores"]  # bytes work too
        maps = client.maps(result)
        assert maps.dtype == np.float32 and maps.shape == tuple(result["maps"]["shape"])
        # The scores are the softmax of the maps' means: the maps are the real model output.
        logits = maps.mean(axis=(1, 2))
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(expected, list(result["scores"].values()), atol=1e-4)
        posterior = client.maps(result, values="posterior")
        np.testing.assert_allclose(posterior.sum(axis=0), 1.0, rtol=1e-5)
        weighted = client.maps(result, values="weighted")
        assert (weighted.reshape(len(logits), -1).max(axis=1) <= expected + 1e-6).all()
        heat = client.map_png(result["id"], "cat", overlay=True, size=64)
        assert heat != client.map_png(result["id"], "cat", overlay=True, size=64, normalize="global")
        grid = client.grid_png(result)
        assert grid != client.grid_png(result, normalize="map")
        assert client.prediction(result)["id"] == result["id"]
    heat_path, grid_path = tmp_path / "heat.png", tmp_path / "grid.png"
    heat_path.write_bytes(heat)
    grid_path.write_bytes(grid)
    with Image.open(heat_path) as img:
        assert img.format == "PNG" and img.size == (64, 64)
    with Image.open(grid_path) as img:
        assert img.format == "PNG" and img.width > 128


def test_models_and_health(server_url: str) -> None:
    with Client(server_url) as client:
        (model,) = client.models()
        health = client.health()
    assert model["name"] == "tiny" and len(model["classes"]) == 10
    assert health == {
        "status": "ok",
        "model": "tiny",
        "version": "tiny-0001",
        "execution_provider": "CPUExecutionProvider",
    }


def test_server_errors_raise_api_error_with_the_problem(server_url: str) -> None:
    with Client(server_url) as client:
        with pytest.raises(ApiError) as caught:
            client.classify(("notes.txt", b"not an image"))
        assert caught.value.status == 400 and caught.value.slug == "invalid-image"
        assert "notes.txt" in caught.value.detail and "notes.txt" in str(caught.value)
        with pytest.raises(ApiError) as caught:
            client.maps("no-such-id")
        assert caught.value.status == 404


def test_classify_batch_splits_to_the_servers_limit_and_keeps_order(
    small_batches: str, tmp_path: Path
) -> None:
    images: list = []
    for seed in range(7):
        path = tmp_path / f"{seed}.png"
        path.write_bytes(png(seed))
        images.append(path)
    images[4] = ("broken.png", b"\x89PNG but not really")
    images.append(tmp_path / "missing.png")
    done: list[int] = []
    with Client(small_batches) as client:
        assert client.batch_files == 32
        entries = client.classify_batch(images, top_k=2, progress=done.append)
        assert client.batch_files == 2  # 8 files: 413; 4: 413; 2 accepted, and kept for later calls
        single = client.classify(images[0], top_k=2)
    assert [e["index"] for e in entries] == list(range(8)) and sum(done) == 8
    assert [e["status"] for e in entries] == [200, 200, 200, 200, 400, 200, 200, 0]
    assert entries[0]["result"]["scores"] == single["scores"]
    assert entries[4]["filename"] == "broken.png" and "broken.png" in entries[4]["error"]["detail"]
    assert entries[7]["filename"] == "missing.png" and entries[7]["error"]["detail"]
    assert [len(e["result"]["top"]) for e in entries if e["status"] == 200] == [2] * 6


def test_unreachable_server_raises_a_transport_error() -> None:
    with Client("http://127.0.0.1:9", timeout=2) as client, pytest.raises(httpx.TransportError):
        client.classify(png(0))
