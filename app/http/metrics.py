"""Prometheus metrics for GET /metrics, named after Triton's `nv_inference_*` so dashboards and
alerts built for Triton need only Prometheus's `_total` / `_seconds` suffixes (docs/api.md maps
every name).

    metrics = install_metrics(app, serving, ROUTERS)   # in create_app, after the error handlers
    metrics.exposition()                               # the text format, for GET /metrics

Each app has its own CollectorRegistry, not prometheus_client's global one, so several apps in
one process (tests, embedders) never collide. Three sources: a pure ASGI middleware counts and
times requests by route *template* (bounded label values, never raw paths) and by the error slug
the handlers note (app/http/problems.py:note_error); the batcher's hooks, attached before it starts,
observe batches and queue waits; a collector reads queue depth and model info at scrape time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.admission import Admission
from app.core.batcher import Batcher
from app.core.engine import Engine
from app.core.errors import NinServeError
from app.core.served import Served
from app.http.problems import ERROR_SLUG, MODEL_KEY, Handler, installed, note_error
from app.serving.state import ServingState

if TYPE_CHECKING:
    from app.core.store_redis import StoreHealth  # redis-py loads only with a Redis store

# The routes that run the model; their requests count as inference successes and failures.
INFERENCE_ROUTES = frozenset(
    {
        "/v1/classify",
        "/v1/classify/batch",
        "/v1/models/{model_name}/classify",
        "/v1/models/{model_name}/classify/batch",
        "/v1/models/{model_name}/versions/{model_version}/classify",
        "/v1/models/{model_name}/versions/{model_version}/classify/batch",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    }
)
UNMATCHED = "unmatched"  # the endpoint label of requests no route matched
# Seconds: 100 us (one queue hop) to 10 s (request_timeout_s's default).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
MODEL_LABELS = ("model", "version")  # Triton's label names
NO_MODEL = ("", "")
# The inference request series carry `protocol`: "http" (v1 and V2 REST) or "grpc" (app/grpc/,
# endpoint = the RPC's full name), so one dashboard shows both frontends, or each.
HTTP, GRPC = "http", "grpc"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


def batch_size_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Powers of two below the largest batch, and the largest batch itself."""
    sizes, n = [], 1
    while n < max_batch_size:
        sizes.append(n)
        n *= 2
    return (*sizes, max_batch_size)


class Metrics:
    def __init__(self, serving: ServingState) -> None:
        self.registry = r = CollectorRegistry()
        self.http_requests = Counter(
            "ninserve_http_requests", "HTTP requests answered", ["endpoint", "method", "status"], registry=r
        )
        self.success = Counter(
            "nv_inference_request_success",
            "Inference requests answered 2xx (gRPC: OK)",
            ["endpoint", "protocol", *MODEL_LABELS],
            registry=r,
        )
        self.failure = Counter(
            "nv_inference_request_failure",
            "Inference requests that failed, by error slug (docs/api.md#errors); model and version "
            "are empty when the request named none that is loaded",
            ["endpoint", "protocol", "reason", *MODEL_LABELS],
            registry=r,
        )
        self.duration = Histogram(
            "nv_inference_request_duration_seconds",
            "Inference request duration, first byte in to last byte out",
            ["endpoint", "protocol", *MODEL_LABELS],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_requests = Counter(
            "ninserve_grpc_requests", "gRPC calls answered", ["method", "code"], registry=r
        )
        self.count = Counter("nv_inference_count", "Images inferred (batch items)", MODEL_LABELS, registry=r)
        self.exec_count = Counter(
            "nv_inference_exec_count", "ONNX Runtime executions (batches)", MODEL_LABELS, registry=r
        )
        self.batch_size = Histogram(
            "nv_inference_batch_size",
            "Images per ONNX Runtime execution",
            MODEL_LABELS,
            buckets=batch_size_buckets(serving.settings.max_batch_size),
            registry=r,
        )
        self.queue = Histogram(
            "nv_inference_queue_duration_seconds",
            "Time an image waited in the batcher's queue before its batch ran",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "nv_inference_compute_duration_seconds",
            "Duration of one ONNX Runtime execution (a whole batch, stacking included)",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_ServingCollector(serving))
        self._inference: dict[tuple[str, str, str, str], tuple[Histogram, Counter]] = {}
        self._requests: dict[tuple[str, str, int], Counter] = {}  # labels() children, looked up once

    def attach(self, engine: Engine, batcher: Batcher) -> None:
        """Observe the batcher (ServingState.on_load calls this before it starts); keeps other hooks."""
        labels = {"model": engine.info.name, "version": engine.info.version}
        count, execs = self.count.labels(**labels), self.exec_count.labels(**labels)
        sizes, compute, queue = (h.labels(**labels) for h in (self.batch_size, self.compute, self.queue))
        before_batch, before_wait = batcher.on_batch, batcher.on_queue_wait

        def on_batch(size: int, seconds: float) -> None:
            execs.inc()
            count.inc(size)
            sizes.observe(size)
            compute.observe(seconds)
            if before_batch:
                before_batch(size, seconds)

        def on_queue_wait(seconds: float) -> None:
            queue.observe(seconds)
            if before_wait:
                before_wait(seconds)

        batcher.on_batch, batcher.on_queue_wait = on_batch, on_queue_wait

    def observe_request(
        self,
        endpoint: str,
        method: str,
        status: int,
        reason: str | None,
        seconds: float,
        model: tuple[str, str] = NO_MODEL,
    ) -> None:
        key = (endpoint, method, status)
        if (counter := self._requests.get(key)) is None:
            counter = self._requests[key] = self.http_requests.labels(endpoint, method, str(status))
        counter.inc()
        if endpoint not in INFERENCE_ROUTES:
            return
        failed = (reason or f"http-{status}") if status >= 400 else None
        self._observe_inference(endpoint, HTTP, failed, seconds, model)

    def observe_grpc(
        self, method: str, code: str, reason: str | None, seconds: float, model: tuple[str, str] = NO_MODEL
    ) -> None:
        """One gRPC call (app/grpc/service.py): `code` its status name, `reason` the error slug."""
        self.grpc_requests.labels(method, code).inc()
        if method == GRPC_INFER:
            failed = (reason or code.lower()) if code != "OK" else None
            self._observe_inference(method, GRPC, failed, seconds, model)

    def _observe_inference(
        self, endpoint: str, protocol: str, failed: str | None, seconds: float, model: tuple[str, str]
    ) -> None:
        # The children of a (route, protocol, model, version) are looked up once: labels() with
        # four values costs a few microseconds a request.
        key = (endpoint, protocol, *model)
        if (children := self._inference.get(key)) is None:
            children = self._inference[key] = (
                self.duration.labels(endpoint, protocol, *model),
                self.success.labels(endpoint, protocol, *model),
            )
        duration, success = children
        duration.observe(seconds)
        if failed is None:
            success.inc()
        else:
            self.failure.labels(endpoint, protocol, failed, *model).inc()

    def forget(self, served: Served) -> None:
        """Drop an unloaded version's series (Triton does too): versions come and go for good."""
        labels = (served.name, served.version)
        for metric in (self.count, self.exec_count, self.batch_size, self.queue, self.compute):
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
        # The request counters keep their totals (they count what was answered), only the
        # cached children go.
        for key in [k for k in self._inference if k[2:] == labels]:
            del self._inference[key]

    def exposition(self) -> bytes:
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated:
    """The registry minus prometheus_client's `*_created` series: Triton has none, they double the
    scrape, and turning them off process-wide (disable_created_metrics) would touch other apps."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class _ServingCollector(Collector):
    """Values read at scrape time: queue depth, batcher drops, admission, which model runs where."""

    def __init__(self, serving: ServingState) -> None:
        self._serving = serving

    def collect(self) -> Iterator[Metric]:
        serving = self._serving
        yield GaugeMetricFamily(
            "ninserve_model_ready", "1 once the default model is loaded and warm", serving.state == "ready"
        )
        loaded = serving.models.loaded()
        info = GaugeMetricFamily(
            "ninserve_model_info",
            "The loaded model versions (value 1)",
            labels=[*MODEL_LABELS, "precision", "provider", "device"],
        )
        pending = GaugeMetricFamily(
            "nv_inference_pending_request_count", "Images queued for a batch right now", labels=MODEL_LABELS
        )
        dropped = CounterMetricFamily(
            "ninserve_batcher_dropped",
            "Images the batcher did not run: expired (deadline), rejected (queue full), failed (engine)",
            labels=[*MODEL_LABELS, "reason"],
        )
        memory = GaugeMetricFamily(
            "ninserve_model_memory_bytes",
            "Memory charged to loaded model versions, of the model_memory_mb the plan holds for them",
            labels=["kind"],
        )
        memory.add_metric(["used"], serving.models.used_bytes)
        memory.add_metric(["limit"], serving.models.plan.models)
        for served in loaded:
            model = [served.name, served.version]
            engine, stats = served.engine, served.batcher.stats
            info.add_metric([*model, served.precision, engine.provider, engine.device], 1)
            pending.add_metric(model, served.batcher.queued)
            for reason, value in (
                ("expired", stats.expired),
                ("rejected", stats.rejected),
                ("failed", stats.failed),
            ):
                dropped.add_metric([*model, reason], value)
        yield from (info, pending, dropped, memory)
        yield from _store_metrics(serving)
        if serving.state != "ready":
            return
        yield from _admission_metrics(serving.admission)


def _store_metrics(serving: ServingState) -> Iterator[Metric]:
    """The shared result store (Redis): its breaker, write backlog and losses. /readyz stays 200
    through an outage (classification goes on), so these are where one shows. None for the
    per-process memory store, which cannot be unavailable."""
    try:
        health = getattr(serving.store, "health", None)
    except NinServeError:  # not started yet
        return
    if health is None:
        return
    h: StoreHealth = health()
    yield GaugeMetricFamily(
        "ninserve_store_available",
        "1 while the result store answers; 0 while its breaker is open (fetches get 503)",
        int(h.available),
    )
    backlog = GaugeMetricFamily(
        "ninserve_store_backlog_bytes", "Results waiting to be written to the store", labels=["kind"]
    )
    backlog.add_metric(["used"], h.backlog_bytes)
    backlog.add_metric(["limit"], h.backlog_max_bytes)
    yield backlog
    yield GaugeMetricFamily(
        "ninserve_store_backlog_records", "Results waiting to be written to the store", h.backlog_records
    )
    yield CounterMetricFamily(
        "ninserve_store_outages",
        "Times the store's breaker opened (Redis refused, reset or timed out)",
        h.outages,
    )
    yield CounterMetricFamily(
        "ninserve_store_fetch_failures",
        "Result fetches answered 503 store-unavailable because the store could not be reached",
        h.fetch_failures,
    )
    dropped = CounterMetricFamily(
        "ninserve_store_writes_dropped",
        "Results never written to the store: backlog_full (oldest dropped in an outage), refused, "
        "too_large, failed",
        labels=["reason"],
    )
    for reason, value in sorted(h.writes_dropped.items()):
        dropped.add_metric([reason], value)
    yield dropped


def _admission_metrics(admission: Admission) -> Iterator[Metric]:
    """What admission control is holding and what it turned away (app/core/admission.py)."""
    yield GaugeMetricFamily(
        "ninserve_admitted_images", "Images past admission, not yet answered", admission.admitted
    )
    lanes = (admission.large_decodes, admission.renders)
    running = GaugeMetricFamily("ninserve_lane_running", "Work running in a lane", labels=["lane"])
    waiting = GaugeMetricFamily("ninserve_lane_waiting", "Work waiting for a lane's thread", labels=["lane"])
    refused = CounterMetricFamily(
        "ninserve_refused", "Requests refused with 503 before the work, by where", labels=["where"]
    )
    expired = CounterMetricFamily(
        "ninserve_lane_expired", "Deadlines passed waiting in a lane", labels=["lane"]
    )
    refused.add_metric(["admission"], admission.refused)
    for lane in lanes:
        running.add_metric([lane.name], lane.running)
        waiting.add_metric([lane.name], lane.waiting)
        refused.add_metric([lane.name], lane.refused)
        expired.add_metric([lane.name], lane.expired)
    yield from (running, waiting, refused, expired)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, status and error slug."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, reason = 500, None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:
            status, reason = 499, "cancelled"  # nginx's "client closed request"
            raise
        except Exception:
            status, reason = 500, "internal-error"
            raise
        finally:
            state = scope.get("state", {})
            reason = reason or state.get(ERROR_SLUG)
            seconds = time.perf_counter() - started
            model = state.get(MODEL_KEY, NO_MODEL)
            endpoint = self._endpoint(scope)
            self.metrics.observe_request(endpoint, scope["method"], status, reason, seconds, model)

    def _endpoint(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # answered before routing (the body limit): find the route it was for
            route = next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        return getattr(route, "path", None) or UNMATCHED


def error_slug(exc: Exception) -> str:
    if isinstance(exc, NinServeError):
        return exc.slug
    if isinstance(exc, RequestValidationError):
        return "invalid-parameter"
    if isinstance(exc, StarletteHTTPException):
        return f"http-{exc.status_code}"
    if isinstance(exc, ClientDisconnect):
        return "client-disconnect"
    return "internal-error"


def _noting(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        note_error(request.scope, error_slug(exc))
        return await handler(request, exc)

    return handle


def install_metrics(app: FastAPI, serving: ServingState, routers: Sequence[APIRouter]) -> Metrics:
    """Metrics for this app: the middleware (outermost, so it sees body-limit rejections too),
    the batcher hooks, and error slugs noted by every exception handler installed so far.
    `routers` are the app's, to name the endpoint of a request answered before routing."""
    metrics = Metrics(serving)
    app.state.metrics = metrics
    serving.on_load.append(metrics.attach)
    serving.models.on_unload.append(metrics.forget)
    for kind in list(app.exception_handlers):
        if (handler := installed(app, kind)) is not None:
            app.add_exception_handler(kind, _noting(handler))
    routes = [route for router in routers for route in router.routes]
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    return metrics
