"""Shared dependencies (`Annotated[..., Depends()]` aliases), query parameters and the JSON
response helper used by every router."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request
from starlette.responses import Response

from app.echo import shown
from app.errors import PredictionNotFound
from app.runtime import Runtime
from app.schemas import Problem
from app.store import StoredPrediction

JSON = "application/json"


async def get_runtime(request: Request) -> Runtime:  # async: FastAPI runs sync dependencies in a thread
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_record(
    rt: RuntimeDep, prediction_id: Annotated[str, Path(description="from POST /v1/classify")]
) -> StoredPrediction:
    record = await rt.store.get(prediction_id)
    if record is None:
        raise PredictionNotFound(
            f"no prediction {shown(prediction_id)}: unknown, or expired from the result store"
        )
    return record


RecordDep = Annotated[StoredPrediction, Depends(get_record)]

MAX_TOP_K = 100_000
TopK = Annotated[
    int, Query(ge=1, le=MAX_TOP_K, description="classes in `top`; clipped to the number of classes")
]
MapsMode = Annotated[
    Literal["none", "inline"], Query(description="`inline` adds the raw map values to the response")
]
# Static bounds that hold for any model and settings (Settings caps max_resolution at 2048); the
# exact ones (native size .. max_resolution) are checked in pipeline.resolve_resolution and
# written into each app's OpenAPI schema by app/api/openapi.py.
MIN_RESOLUTION, MAX_RESOLUTION, RESOLUTION_STEP = 4, 2048, 4
Resolution = Annotated[
    int | None,
    Query(
        ge=MIN_RESOLUTION,
        le=MAX_RESOLUTION,
        multiple_of=RESOLUTION_STEP,
        description="run at this square size (multiple of 4, >= native) for finer maps",
    ),
]
Colormap = Annotated[
    Literal["jet", "viridis", "inferno", "magma", "turbo", "gray"], Query(description="heatmap colours")
]
Overlay = Annotated[bool, Query(description="blend the heatmap over the input image")]


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Pre-serialised (orjson) JSON: the response models document the shape, not re-validate it."""
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem+json errors a route can return."""
    return {
        s: {"model": Problem, "content": {"application/problem+json": {}}, "description": "RFC 9457 problem"}
        for s in statuses
    }
