"""The KServe V2 / Open Inference Protocol REST surface, Triton-compatible, next to v1 in one process.

    GET  /v2                                        server metadata and supported extensions
    GET  /v2/health/live   /v2/health/ready         {"live": true} / {"ready": true}
    GET  /v2/models/{name}[/versions/{v}]           model metadata (-1: a dynamic dimension)
    GET  /v2/models/{name}[/versions/{v}]/ready
    GET  /v2/models/{name}[/versions/{v}]/config    Triton's model configuration (perf_analyzer)
    POST /v2/models/{name}[/versions/{v}]/infer

Wire format: app/http/v2/codec.py; the model's inputs, outputs and flow: app/http/v2/infer.py; errors are
`{"error": "..."}` bodies (app/http/v2/errors.py). Every loaded model answers under its name; each
route exists with and without `/versions/{v}` (without: the highest loaded version); an unknown
model or version is a 404 naming what is served. The repository extension is app/http/routes/repository.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from app.core.admission import Admission
from app.core.echo import ECHO_LIMIT, shown
from app.core.engine import INPUT_NAME
from app.core.errors import ModelNotFound, NotReady
from app.core.served import Served
from app.http.body import decompress
from app.http.deps import ServingDep, json_response
from app.http.lead_in import lead_in
from app.http.problems import note_model
from app.http.v2.codec import InferRequest, encode_infer_response, json_header_length, parse_infer_request
from app.http.v2.infer import infer, model_config, model_metadata
from app.http.v2.price import JsonPrice, json_cost
from app.serving.state import ServingState

router = APIRouter(prefix="/v2", tags=["v2 (KServe / Triton)"])

EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "model_repository")
BINARY = "application/octet-stream"
LARGE_BODY = 32 * 1024  # bytes: bodies this large (or compressed) are parsed off the event loop

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": why,
        "content": {"application/json": {"example": {"error": "a message for a human"}}},
    }
    for status, why in (
        (400, "bad JSON, tensor name, datatype, shape, size or image"),
        (404, "unknown model or version"),
        (503, "model loading, queue full or deadline passed; see Retry-After"),
    )
}
_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object"}},
        BINARY: {"schema": {"type": "string", "format": "binary", "description": "JSON, then tensor bytes"}},
    },
}


async def _model(serving: ServingDep, model_name: str) -> Served:
    return serving.models.resolve(_echoable(model_name))  # 503 while the models load, 404 if unknown


async def _model_at(serving: ServingDep, model_name: str, model_version: str) -> Served:
    return serving.models.resolve(_echoable(model_name), _echoable(model_version))


def _echoable(value: str) -> str:
    """A path segment short enough to quote in a 404; longer ones never name the served model."""
    if len(value) > ECHO_LIMIT:
        raise ModelNotFound(f"unknown model or version {shown(value)}")
    return value


Model = Annotated[Served, Depends(_model)]
ModelAt = Annotated[Served, Depends(_model_at)]
VERSIONED = "/models/{model_name}/versions/{model_version}"


@router.get("", summary="Server metadata")
async def server_metadata(request: Request) -> Response:
    body = {"name": "ninserve", "version": request.app.version, "extensions": EXTENSIONS}
    return json_response(_dumps(body))


# Health bodies as the Open Inference Protocol defines them (Triton sends none; clients read the
# status code either way, and the schema says what the body is).
class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


@router.get("/health/live", summary="Liveness", response_model=LiveResponse, responses=_ERRORS)
async def live(serving: ServingDep) -> Response:
    if serving.state == "failed":  # a model that cannot load will not recover: restart the process
        raise NotReady("the model failed to load; the server log says why")  # no internals: open probe
    return json_response(_dumps({"live": True}))


@router.get("/health/ready", summary="Readiness", response_model=ReadyResponse, responses=_ERRORS)
async def ready(serving: ServingDep) -> Response:
    serving.ready()
    return json_response(_dumps({"ready": True}))


@router.get("/models/{model_name}", summary="Model metadata", responses=_ERRORS)
async def metadata(served: Model, serving: ServingDep) -> Response:
    return json_response(_dumps(model_metadata(served, serving.models.versions_of(served.name))))


@router.get(VERSIONED, summary="Model metadata, one version", responses=_ERRORS)
async def metadata_at(served: ModelAt, serving: ServingDep) -> Response:
    return json_response(_dumps(model_metadata(served, serving.models.versions_of(served.name))))


@router.get(
    "/models/{model_name}/ready",
    summary="Model readiness",
    response_model=ModelReadyResponse,
    responses=_ERRORS,
)
async def model_ready(served: Model) -> Response:
    return json_response(_dumps({"name": served.name, "ready": True}))


@router.get(
    VERSIONED + "/ready",
    summary="Model readiness, one version",
    response_model=ModelReadyResponse,
    responses=_ERRORS,
)
async def model_ready_at(served: ModelAt) -> Response:
    return json_response(_dumps({"name": served.name, "ready": True}))


@router.get("/models/{model_name}/config", summary="Triton model configuration", responses=_ERRORS)
async def config(served: Model, serving: ServingDep) -> Response:
    return json_response(_dumps(model_config(served.engine, serving.settings)))


@router.get(VERSIONED + "/config", summary="Triton model configuration, one version", responses=_ERRORS)
async def config_at(served: ModelAt, serving: ServingDep) -> Response:
    return json_response(_dumps(model_config(served.engine, serving.settings)))


@router.post(
    "/models/{model_name}/infer",
    summary="Inference: UINT8 pixels or BYTES images in; scores, maps or top-k strings out",
    responses=_ERRORS,
    openapi_extra={"requestBody": _INFER_BODY},
)
async def infer_latest(request: Request, serving: ServingDep, served: Model, model_name: str) -> Response:
    return await _infer(request, serving, served, model_name, None)


@router.post(
    VERSIONED + "/infer",
    summary="Inference, one version",
    responses=_ERRORS,
    openapi_extra={"requestBody": _INFER_BODY},
)
async def infer_at(
    request: Request, serving: ServingDep, served: ModelAt, model_name: str, model_version: str
) -> Response:
    return await _infer(request, serving, served, model_name, model_version)


async def _infer(
    request: Request, serving: ServingState, served: Served, name: str, version: str | None
) -> Response:
    note_model(request.scope, served.name, served.version)  # a bad body counts against its model
    lead = await lead_in(
        request, serving, (name, version), lambda deadline: _read(request, serving, deadline)
    )
    with lead.served.use() as served:
        outputs = await infer(serving, lead.body, served, deadline=lead.deadline)
    info = served.info
    payload, json_length = encode_infer_response(info.name, info.version, lead.body.id, outputs)
    if json_length is None:
        return json_response(payload)
    return Response(payload, media_type=BINARY, headers={"Inference-Header-Content-Length": str(json_length)})


async def _read(request: Request, serving: ServingState, deadline: float) -> InferRequest:
    """The infer request, priced from the raw bytes and admitted like an image decode (413 / the
    large-decode lane) before it is parsed: small JSON expands ~30x into Python objects."""
    encoding = request.headers.get("content-encoding")
    header_length = request.headers.get("inference-header-content-length")
    admission = serving.admission
    if encoding:
        body = await request.body()
        body = await serving.in_pool(decompress, body, encoding, serving.settings.max_body_bytes)
        cost = admission.price_json(json_cost(body, header_length, stop_above=admission.most_one_decode))
    else:
        body, price = await _priced_body(request, admission, header_length)
        cost = admission.price_json(price.finish(body))
    if len(body) > LARGE_BODY or cost > admission.plan.small_decode:
        return await admission.run_priced(cost, deadline, _parse, body, header_length)
    return _parse(body, header_length)


async def _priced_body(
    request: Request, admission: Admission, header_length: str | None
) -> tuple[bytes, JsonPrice]:
    """The body and its price, counted as JSON while it arrives: one that can never be parsed
    within the budget is refused (413) at the chunk that shows it, before the rest is read (16 MB
    of `[[],...]` after ~3 MB)."""
    price = JsonPrice(json_header_length(header_length))
    chunks: list[bytes] = []
    async for chunk in request.stream():
        chunks.append(chunk)
        admission.price_json(price.feed(chunk))
    return b"".join(chunks), price


def _parse(body: bytes, header_length: str | None) -> InferRequest:
    return parse_infer_request(body, header_length, input_names=(INPUT_NAME,))


def _dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)
