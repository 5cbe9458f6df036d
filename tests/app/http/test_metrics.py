"""GET /metrics after known traffic: counters and histograms move by exactly what was sent, the
text parses, labels stay bounded; plus the pieces (buckets, hooks, registries) on their own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from app.core.batcher import Batcher
from app.http.main import create_app
from app.http.metrics import INFERENCE_ROUTES, Metrics, MetricsMiddleware, batch_size_buckets
from app.serving.state import ServingState
from tests.app.helpers import live_server, pattern, png

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MODEL = {"model": "tiny", "version": "tiny-0001"}
V1, V2 = "/v1/classify", "/v2/models/{model_name}/infer"


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "_created" not in response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def metered(make_settings) -> Iterator[httpx.Client]:
    """A server of its own, so every count below is exact; batches wait up to 50 ms for company."""
    settings = make_settings(max_batch_size=8, max_batch_wait_ms=50.0, max_body_bytes=64 * 1024)
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def v2_pixels(n: int) -> bytes:
    images = np.stack([pattern(i) for i in range(n)])
    tensor = {
        "name": "image",
        "datatype": "UINT8",
        "shape": list(images.shape),
        "data": images.ravel().tolist(),
    }
    return orjson.dumps({"inputs": [tensor], "outputs": [{"name": "scores"}]})


def test_counters_and_histograms_after_known_traffic(metered: httpx.Client) -> None:
    before = scrape(metered)
    assert metered.post(V1, files={"file": ("a.png", png(1))}).status_code == 200
    assert metered.post(V1, files={"file": ("b.png", b"not an image")}).status_code == 400
    infer = "/v2/models/tiny/infer"
    assert metered.post(infer, content=v2_pixels(4)).status_code == 200  # 4 images, one request
    assert metered.post(infer, content=b"{}").status_code == 400
    assert metered.post(infer, content=b" " * (65 * 1024)).status_code == 413  # refused before routing
    assert metered.get("/v1/no/such/route/12345").status_code == 404
    after = scrape(metered)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    none = {"model": "", "version": ""}  # refused before a model was looked up
    assert delta("nv_inference_request_success_total", endpoint=V1, protocol="http", **MODEL) == 1
    assert delta("nv_inference_request_success_total", endpoint=V2, protocol="http", **MODEL) == 1
    assert (
        delta(
            "nv_inference_request_failure_total",
            endpoint=V1,
            protocol="http",
            reason="invalid-image",
            **MODEL,
        )
        == 1
    )
    assert (
        delta(
            "nv_inference_request_failure_total",
            endpoint=V2,
            protocol="http",
            reason="invalid-tensor",
            **MODEL,
        )
        == 1
    )
    assert (
        delta(
            "nv_inference_request_failure_total",
            endpoint=V2,
            protocol="http",
            reason="payload-too-large",
            **none,
        )
        == 1
    )
    assert delta("nv_inference_request_duration_seconds_count", endpoint=V1, protocol="http", **MODEL) == 2
    assert delta("nv_inference_request_duration_seconds_count", endpoint=V2, protocol="http", **MODEL) == 2
    assert delta("nv_inference_request_duration_seconds_count", endpoint=V2, protocol="http", **none) == 1
    # 1 + 4 images; the four of one V2 request were queued together, so they shared one batch
    assert delta("nv_inference_count_total", **MODEL) == 5
    assert delta("nv_inference_exec_count_total", **MODEL) == 2
    assert delta("nv_inference_batch_size_count", **MODEL) == 2
    assert delta("nv_inference_batch_size_sum", **MODEL) == 5
    assert delta("nv_inference_batch_size_bucket", le="2.0", **MODEL) == 1
    assert delta("nv_inference_batch_size_bucket", le="4.0", **MODEL) == 2
    assert delta("nv_inference_queue_duration_seconds_count", **MODEL) == 5
    assert delta("nv_inference_compute_duration_seconds_count", **MODEL) == 2
    assert delta("nv_inference_compute_duration_seconds_sum", **MODEL) > 0
    assert delta("ninserve_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert delta("ninserve_http_requests_total", endpoint="/metrics", method="GET", status="200") == 1
    assert value(after, "nv_inference_pending_request_count", **MODEL) == 0
    assert value(after, "ninserve_model_ready") == 1
    info = [labels for (name, labels) in after if name == "ninserve_model_info"]
    facts = {"precision": "fp32", "provider": "CPUExecutionProvider", "device": "cpu"}
    assert info == [frozenset((MODEL | facts).items())]
    assert value(after, "ninserve_batcher_dropped_total", reason="rejected", **MODEL) == 0


def test_labels_are_route_templates_never_raw_paths(metered: httpx.Client) -> None:
    for i in range(3):
        metered.get(f"/v1/predictions/{i:032x}")
        metered.get(f"/v2/models/model{i}")
    endpoints = {
        dict(labels)["endpoint"] for (name, labels) in scrape(metered) if name.startswith("ninserve_http")
    }
    assert "/v1/predictions/{prediction_id}" in endpoints and "/v2/models/{model_name}" in endpoints
    assert not any("model1" in e or "0000" in e for e in endpoints)


def test_the_inference_routes_exist() -> None:
    """INFERENCE_ROUTES names templates; a renamed route would silently stop being counted."""
    from app.http.routes import ROUTERS

    paths = {route.path for router in ROUTERS for route in router.routes}  # type: ignore[attr-defined]
    assert paths >= INFERENCE_ROUTES


def test_batch_size_buckets() -> None:
    assert batch_size_buckets(1) == (1,)
    assert batch_size_buckets(32) == (1, 2, 4, 8, 16, 32)
    assert batch_size_buckets(24) == (1, 2, 4, 8, 16, 24)


def test_each_app_has_its_own_registry(make_settings) -> None:
    a, b = create_app(make_settings()), create_app(make_settings())  # would raise "Duplicated timeseries"
    assert a.state.metrics.registry is not b.state.metrics.registry


def fake_run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(images)
    return np.zeros((n, 10), np.float32), np.zeros((n, 10, 8, 8), np.float32)


def test_attach_keeps_earlier_batcher_hooks(make_settings) -> None:
    calls: list[str] = []
    metrics = Metrics(ServingState(make_settings()))

    async def main() -> None:
        batcher = Batcher(fake_run, max_batch_size=4, max_wait_s=0.0, max_queue=8)
        batcher.on_batch = lambda n, seconds: calls.append(f"batch {n}")
        batcher.on_queue_wait = lambda seconds: calls.append("wait")
        metrics.attach(SimpleNamespace(info=SimpleNamespace(name="m", version="v")), batcher)  # type: ignore[arg-type]
        await batcher.start()
        await batcher.submit(pattern(0))
        await batcher.stop()

    asyncio.run(main())
    assert calls == ["batch 1", "wait"]
    text = metrics.exposition().decode()
    assert 'nv_inference_exec_count_total{model="m",version="v"} 1.0' in text
    assert 'nv_inference_queue_duration_seconds_count{model="m",version="v"} 1.0' in text


def test_an_unhandled_error_counts_as_an_internal_error(make_settings) -> None:
    """The exception passes through the middleware (the 500 is written outside it)."""

    async def boom(scope, receive, send) -> None:
        raise RuntimeError("a bug")

    metrics = Metrics(ServingState(make_settings()))
    routes = [Route(V1, boom, methods=["POST"])]  # found by matching: the scope has no route yet
    middleware = MetricsMiddleware(boom, metrics=metrics, routes=routes)
    scope = {"type": "http", "method": "POST", "path": V1, "root_path": "", "headers": []}

    async def call() -> None:
        with pytest.raises(RuntimeError):
            await middleware(scope, None, None)  # type: ignore[arg-type]

    asyncio.run(call())
    text = metrics.exposition().decode()
    labels = f'endpoint="{V1}",model="",protocol="http",reason="internal-error",version=""'
    failure = f"nv_inference_request_failure_total{{{labels}}}"
    assert f"{failure} 1.0" in text
    assert f'ninserve_http_requests_total{{endpoint="{V1}",method="POST",status="500"}} 1.0' in text
