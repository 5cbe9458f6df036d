"""POST /v1/classify and /v1/classify/batch (the default model), and the same for any loaded
model and version: /v1/models/{name}[/versions/{version}]/classify[/batch]."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.core.errors import NinServeError
from app.core.served import Served
from app.http.body import BATCH_UPLOAD_DOC, UPLOAD_DOC, naming_file, read_image, read_images
from app.http.deps import (
    ClassifyQueryDep,
    NamedModel,
    NamedVersion,
    ServingDep,
    json_response,
    problems,
    reject_unknown_query,
)
from app.http.lead_in import DEFAULT_MODEL, ModelRef, lead_in
from app.http.problems import error_problem
from app.http.schemas import BatchResponse, ClassifyResponse
from app.serving.pipeline import classify, classify_batch
from app.serving.state import ServingState

router = APIRouter(prefix="/v1", tags=["classify"], dependencies=[Depends(reject_unknown_query)])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=problems(400, 413, 415, 422, 503),
    openapi_extra={"requestBody": UPLOAD_DOC},
    summary="Classify one image: class scores and per-class confidence maps",
)
async def classify_one(request: Request, serving: ServingDep, query: ClassifyQueryDep) -> Response:
    # Plain queries are answered by fast_classify.py, which runs the same function.
    return await classify_response(request, serving, **query)


@router.post(
    "/models/{model_name}/classify",
    response_model=ClassifyResponse,
    responses=problems(400, 404, 413, 415, 422, 503),
    openapi_extra={"requestBody": UPLOAD_DOC},
    summary="Classify one image with a named model (its highest loaded version)",
)
async def classify_with(
    request: Request, serving: ServingDep, query: ClassifyQueryDep, model: NamedModel
) -> Response:
    return await classify_response(request, serving, **query, model=model)


@router.post(
    "/models/{model_name}/versions/{model_version}/classify",
    response_model=ClassifyResponse,
    responses=problems(400, 404, 413, 415, 422, 503),
    openapi_extra={"requestBody": UPLOAD_DOC},
    summary="Classify one image with one version of a named model",
)
async def classify_with_version(
    request: Request, serving: ServingDep, query: ClassifyQueryDep, model: NamedVersion
) -> Response:
    return await classify_response(request, serving, **query, model=model)


async def classify_response(
    request: Request,
    serving: ServingState,
    *,
    top_k: int,
    maps: str,
    resolution: int | None,
    model: ModelRef = DEFAULT_MODEL,
) -> Response:
    lead = await lead_in(request, serving, model, lambda _: read_image(request))
    filename, data = lead.body
    with lead.served.use() as served:
        try:
            out = await classify(
                serving,
                data,
                top_k=top_k,
                inline_maps=maps == "inline",
                resolution=resolution,
                deadline=lead.deadline,
                model=served,
            )
        except NinServeError as exc:
            raise naming_file(exc, filename) from None
    # Built only where it will be sent: the security-header middleware drops it otherwise.
    timing = {"Server-Timing": out.timings.header()} if serving.settings.send_server_timing else None
    return json_response(out.body, headers=timing)


@router.post(
    "/classify/batch",
    response_model=BatchResponse,
    responses=problems(400, 413, 415, 422, 503),
    openapi_extra={"requestBody": BATCH_UPLOAD_DOC},
    summary="Classify several images; each item succeeds or fails on its own",
)
async def classify_many(request: Request, serving: ServingDep, query: ClassifyQueryDep) -> Response:
    return await classify_many_response(request, serving, **query)


@router.post(
    "/models/{model_name}/classify/batch",
    response_model=BatchResponse,
    responses=problems(400, 404, 413, 415, 422, 503),
    openapi_extra={"requestBody": BATCH_UPLOAD_DOC},
    summary="Classify several images with a named model (its highest loaded version)",
)
async def classify_many_with(
    request: Request, serving: ServingDep, query: ClassifyQueryDep, model: NamedModel
) -> Response:
    return await classify_many_response(request, serving, **query, model=model)


@router.post(
    "/models/{model_name}/versions/{model_version}/classify/batch",
    response_model=BatchResponse,
    responses=problems(400, 404, 413, 415, 422, 503),
    openapi_extra={"requestBody": BATCH_UPLOAD_DOC},
    summary="Classify several images with one version of a named model",
)
async def classify_many_with_version(
    request: Request, serving: ServingDep, query: ClassifyQueryDep, model: NamedVersion
) -> Response:
    return await classify_many_response(request, serving, **query, model=model)


async def classify_many_response(
    request: Request,
    serving: ServingState,
    *,
    top_k: int,
    maps: str,
    resolution: int | None,
    model: ModelRef = DEFAULT_MODEL,
) -> Response:
    started = time.perf_counter()
    lead = await lead_in(
        request, serving, model, lambda _: read_images(request, serving.settings.max_request_images)
    )
    with lead.served.use() as served:
        return await _classify_items(
            serving, served, lead.body, started, lead.deadline, top_k, maps, resolution
        )


async def _classify_items(
    serving: ServingState,
    served: Served,
    items: list[tuple[str | None, bytes | NinServeError]],
    started: float,
    deadline: float,
    top_k: int,
    maps: str,
    resolution: int | None,
) -> Response:
    # The whole batch is priced from its headers and admitted at once, before any decode: an
    # item that can never fit gets its own 413, and a server without room refuses the request.
    images = [data for _, data in items]
    inline = maps == "inline"
    outcomes = await classify_batch(
        serving,
        images,
        top_k=top_k,
        inline_maps=inline,
        resolution=resolution,
        deadline=deadline,
        model=served,
    )
    results: list[dict[str, Any]] = []
    for index, ((filename, _), out) in enumerate(zip(items, outcomes, strict=True)):
        entry: dict[str, Any] = {"index": index, "filename": filename}
        if isinstance(out, NinServeError):
            named = naming_file(out, filename)
            results.append(entry | {"status": named.status, "error": error_problem(named)})
        else:
            results.append(entry | {"status": 200, "result": out.payload})
    body = orjson.dumps({"results": results}, option=orjson.OPT_SERIALIZE_NUMPY)
    total = (time.perf_counter() - started) * 1000.0
    return json_response(body, headers={"Server-Timing": f"total;dur={total:.3f}"})
