"""Shared dependencies (`Annotated[..., Depends()]` aliases), query parameters and the JSON
response helper used by every router, and the check that refuses query parameters a route does
not take."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from fastapi import Depends, Path, Query, Request
from fastapi.dependencies.models import Dependant
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.core.echo import ECHO_LIMIT, clipped, shown
from app.core.errors import InvalidParameter, PredictionNotFound
from app.core.store import StoredPrediction
from app.http.lead_in import ModelRef
from app.http.schemas import Problem
from app.serving.state import ServingState

JSON = "application/json"


async def get_serving(request: Request) -> ServingState:  # async: FastAPI runs sync dependencies in a thread
    return request.app.state.serving


ServingDep = Annotated[ServingState, Depends(get_serving)]


async def get_record(
    serving: ServingDep, prediction_id: Annotated[str, Path(description="from POST /v1/classify")]
) -> StoredPrediction:
    record = await serving.store.get(prediction_id)
    if record is None:
        raise PredictionNotFound(
            f"no prediction {shown(prediction_id)}: unknown, or expired from the result store"
        )
    return record


RecordDep = Annotated[StoredPrediction, Depends(get_record)]
ModelName = Annotated[str, Path(description="a loaded model (GET /v1/models lists them)")]
ModelVersion = Annotated[str, Path(description="one of its loaded versions")]

MAX_TOP_K = 100_000
TopK = Annotated[
    int, Query(ge=1, le=MAX_TOP_K, description="classes in `top`; clipped to the number of classes")
]
MapsMode = Annotated[
    Literal["none", "inline"], Query(description="`inline` adds the raw map values to the response")
]
# Static bounds that hold for any model and settings (Settings caps max_resolution at 2048); the
# exact ones (native size .. max_resolution) are checked in pipeline.resolve_resolution and
# written into each app's OpenAPI schema by app/http/openapi.py.
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


class ClassifyQuery(TypedDict):
    """The query of every v1 classify route, as `classify_response` takes it."""

    top_k: int
    maps: str
    resolution: int | None


async def classify_query(
    top_k: TopK = 5, maps: MapsMode = "none", resolution: Resolution = None
) -> ClassifyQuery:
    return {"top_k": top_k, "maps": maps, "resolution": resolution}


async def named_model(model_name: ModelName) -> ModelRef:
    return model_name, None


async def named_version(model_name: ModelName, model_version: ModelVersion) -> ModelRef:
    return model_name, model_version


ClassifyQueryDep = Annotated[ClassifyQuery, Depends(classify_query)]
# Which model a v1 route runs (name, version): the default model's latest when the path names none.
NamedModel = Annotated[ModelRef, Depends(named_model)]
NamedVersion = Annotated[ModelRef, Depends(named_version)]
Colormap = Annotated[
    Literal["jet", "viridis", "inferno", "magma", "turbo", "gray"], Query(description="heatmap colours")
]
Overlay = Annotated[bool, Query(description="blend the heatmap over the input image")]


UNKNOWN_NAMED = 8  # unknown query parameters named in a 422, at most
QUERY_NAMES = "ninserve_query_names"  # attribute caching a route's accepted names on the route


def _accepted_query(route: BaseRoute) -> tuple[str, ...]:
    """The query parameters a route declares, its dependencies' included (computed once)."""
    if (cached := getattr(route, QUERY_NAMES, None)) is not None:
        return cached
    names: list[str] = []

    def collect(dependant: Dependant) -> None:
        names.extend(field.alias for field in dependant.query_params if field.alias not in names)
        for sub in dependant.dependencies:
            collect(sub)

    if (dependant := getattr(route, "dependant", None)) is not None:
        collect(dependant)
    setattr(route, QUERY_NAMES, tuple(names))
    return tuple(names)


async def reject_unknown_query(request: Request) -> None:
    """422 naming the accepted parameters when the query has any other: a typo such as
    `?topk=1` must not quietly run with the default. Added to a router as a dependency."""
    accepted = _accepted_query(request.scope["route"])
    unknown = sorted({name for name in request.query_params if name not in accepted})
    if unknown:
        takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
        named = unknown[:UNKNOWN_NAMED]  # a query string can carry hundreds of names
        more = f" and {len(unknown) - len(named)} more" if len(unknown) > len(named) else ""
        raise InvalidParameter(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(shown, named))}{more}; "
            f"{takes}",
            unknown=[clipped(name, ECHO_LIMIT) for name in named],
            accepted=list(accepted),
        )


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Pre-serialised (orjson) JSON: the response models document the shape, not re-validate it."""
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem+json errors a route can return."""
    return {
        s: {"model": Problem, "content": {"application/problem+json": {}}, "description": "RFC 9457 problem"}
        for s in statuses
    }
