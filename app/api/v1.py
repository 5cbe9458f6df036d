"""POST /v1/classify and /v1/classify/batch."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.api.body import BATCH_UPLOAD_DOC, UPLOAD_DOC, naming_file, read_image, read_images
from app.api.deps import MapsMode, Resolution, RuntimeDep, TopK, json_response, problems, reject_unknown_query
from app.api.problems import error_problem
from app.errors import NinServeError
from app.pipeline import classify, classify_batch
from app.runtime import Runtime
from app.schemas import BatchResponse, ClassifyResponse

router = APIRouter(prefix="/v1", tags=["classify"], dependencies=[Depends(reject_unknown_query)])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=problems(400, 413, 415, 422, 503),
    openapi_extra={"requestBody": UPLOAD_DOC},
    summary="Classify one image: class scores and per-class confidence maps",
)
async def classify_one(
    request: Request, rt: RuntimeDep, top_k: TopK = 5, maps: MapsMode = "none", resolution: Resolution = None
) -> Response:
    # Plain queries are answered by api/fast_classify.py, which runs the same function.
    return await classify_response(request, rt, top_k=top_k, maps=maps, resolution=resolution)


async def classify_response(
    request: Request, rt: Runtime, *, top_k: int, maps: str, resolution: int | None
) -> Response:
    rt.ready()  # 503 before reading a large body we could not use
    filename, data = await read_image(request)
    try:
        out = await classify(rt, data, top_k=top_k, inline_maps=maps == "inline", resolution=resolution)
    except NinServeError as exc:
        raise naming_file(exc, filename) from None
    # Built only where it will be sent: the security-header middleware drops it otherwise.
    timing = {"Server-Timing": out.timings.header()} if rt.settings.send_server_timing else None
    return json_response(out.body, headers=timing)


@router.post(
    "/classify/batch",
    response_model=BatchResponse,
    responses=problems(400, 413, 415, 422, 503),
    openapi_extra={"requestBody": BATCH_UPLOAD_DOC},
    summary="Classify several images; each item succeeds or fails on its own",
)
async def classify_many(
    request: Request, rt: RuntimeDep, top_k: TopK = 5, maps: MapsMode = "none", resolution: Resolution = None
) -> Response:
    started = time.perf_counter()
    deadline = time.monotonic() + rt.settings.request_timeout_s
    rt.ready()  # 503 before reading a large body we could not use
    items = await read_images(request, rt.settings.max_batch_files)
    # The whole batch is priced from its headers and admitted at once, before any decode: an
    # item that can never fit gets its own 413, and a server without room refuses the request.
    images = [data for _, data in items]
    inline = maps == "inline"
    outcomes = await classify_batch(
        rt, images, top_k=top_k, inline_maps=inline, resolution=resolution, deadline=deadline
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
