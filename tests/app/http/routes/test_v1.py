"""POST /v1/classify and /v1/classify/batch over real HTTP (uvicorn + httpx) with the tiny model."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from app.http.schemas import BatchResponse, ClassifyResponse
from tests.app.helpers import CLASSES, png


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def classify(client: httpx.Client, data: bytes, **params) -> httpx.Response:
    return client.post("/v1/classify", params=params, files={"file": ("x.png", data, "image/png")})


def test_multipart_and_raw_body_give_the_same_answer(client: httpx.Client) -> None:
    a = classify(client, png(1))
    b = client.post("/v1/classify", content=png(1), headers={"Content-Type": "image/png"})
    assert a.status_code == b.status_code == 200
    assert a.headers["content-type"] == "application/json"
    ra, rb = ClassifyResponse.model_validate_json(a.content), ClassifyResponse.model_validate_json(b.content)
    assert ra.scores == rb.scores and ra.id != rb.id
    assert ra.model.name == "tiny" and ra.model.version == "tiny-0001"
    assert ra.image.width == 32 and ra.resolution == 32
    assert ra.maps.shape == [10, 8, 8] and ra.maps.values is None
    assert ra.maps.url == f"/v1/predictions/{ra.id}/maps"
    assert ra.maps.png_url_template == f"/v1/predictions/{ra.id}/maps/{{label}}.png"


def test_scores_sum_to_one_and_top_is_sorted(client: httpx.Client) -> None:
    result = classify(client, png(2)).json()
    assert list(result["scores"]) == CLASSES
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    top = result["top"]
    assert len(top) == 5 and [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert all(result["scores"][t["label"]] == t["score"] and CLASSES[t["index"]] == t["label"] for t in top)
    assert top[0]["score"] == max(result["scores"].values())


@pytest.mark.parametrize(("top_k", "expected"), [(1, 1), (3, 3), (10, 10), (500, 10)])
def test_top_k_is_clipped(client: httpx.Client, top_k: int, expected: int) -> None:
    assert len(classify(client, png(3), top_k=top_k).json()["top"]) == expected


def test_inline_maps_are_consistent_with_scores(client: httpx.Client) -> None:
    result = classify(client, png(4), maps="inline").json()
    values = np.array(result["maps"]["values"], np.float32)
    assert values.shape == (10, 8, 8) == tuple(result["maps"]["shape"])
    scores = np.array([result["scores"][c] for c in CLASSES])
    np.testing.assert_allclose(softmax(values.mean(axis=(1, 2))), scores, rtol=1e-4, atol=1e-6)
    stored = client.get(f"/v1/predictions/{result['id']}").json()
    assert "values" not in stored["maps"]  # the store keeps the compact form


def test_resolution_gives_finer_maps(client: httpx.Client) -> None:
    result = classify(client, png(5, size=96), resolution=64).json()
    assert result["resolution"] == 64 and result["maps"]["shape"] == [10, 16, 16]
    assert result["image"] == {"width": 96, "height": 96}


def test_timings_in_body_and_server_timing_header(client: httpx.Client) -> None:
    response = classify(client, png(6))
    timing = response.json()["timing_ms"]
    assert set(timing) == {"decode", "queue", "compute", "encode", "total"}
    assert timing["total"] >= timing["decode"] + timing["compute"]
    header = response.headers["server-timing"]
    assert [part.split(";")[0] for part in header.split(", ")] == list(timing)


def test_concurrent_requests_match_sequential_ones_and_share_batches(
    client: httpx.Client, server_url: str
) -> None:
    images = [png(seed) for seed in range(64)]
    sequential = [classify(client, data).json() for data in images]
    assert all(r["batch_size"] == 1 for r in sequential)

    async def burst() -> list[dict]:
        async with httpx.AsyncClient(base_url=server_url, timeout=60) as ac:
            responses = await asyncio.gather(
                *(ac.post("/v1/classify", files={"file": ("x.png", data, "image/png")}) for data in images)
            )
        assert all(r.status_code == 200 for r in responses)
        return [r.json() for r in responses]

    concurrent = asyncio.run(burst())
    for seq, con in zip(sequential, concurrent, strict=True):
        assert [t["label"] for t in con["top"]] == [t["label"] for t in seq["top"]]
        np.testing.assert_allclose(
            list(con["scores"].values()), list(seq["scores"].values()), rtol=1e-5, atol=1e-7
        )
    assert max(r["batch_size"] for r in concurrent) > 1


def test_batch_endpoint_keeps_order_and_isolates_bad_items(client: httpx.Client) -> None:
    files = [
        ("files", ("a.png", png(10), "image/png")),
        ("files", ("b.png", png(11), "image/png")),
        ("files", ("bad.png", b"not an image", "image/png")),
        ("files", ("c.png", png(12), "image/png")),
        ("files", ("empty.png", b"", "image/png")),
    ]
    response = client.post("/v1/classify/batch", params={"top_k": 2}, files=files)
    assert response.status_code == 200
    results = BatchResponse.model_validate_json(response.content).results
    assert [r.status for r in results] == [200, 200, 400, 200, 400]
    assert [r.filename for r in results] == ["a.png", "b.png", "bad.png", "c.png", "empty.png"]
    assert results[2].error["type"].endswith("invalid-image") and results[2].result is None
    assert results[4].error["type"].endswith("empty-image")
    single = classify(client, png(11)).json()
    assert results[1].result.scores == single["scores"] and len(results[1].result.top) == 2
    assert client.get(f"/v1/predictions/{results[3].result.id}").status_code == 200


def test_openapi_documents_the_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/classify/batch", "/v1/models", "/healthz", "/readyz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*"} <= set(body)
    assert client.get("/docs").status_code == 200
