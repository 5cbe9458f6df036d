"""GET /v1/predictions/{id}[/maps | /maps.png | /maps/{label}.png]: stored results and maps."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from app.core.echo import shown
from app.core.errors import LabelNotFound
from app.core.maps import (
    NORMALIZE_DEFAULT,
    OVERLAY_ALPHA,
    UNITS,
    Normalize,
    grid_png,
    map_png,
    map_values,
    value_range,
)
from app.core.memory import render_cost
from app.http import deps
from app.http.deps import Colormap, Overlay, RecordDep, ServingDep, json_response, problems
from app.http.schemas import ClassifyResponse, MapsResponse

router = APIRouter(
    prefix="/v1/predictions",
    tags=["predictions"],
    responses=problems(404, 422),
    dependencies=[Depends(deps.reject_unknown_query)],
)

PNG = "image/png"
_PNG_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {PNG: {}}, "description": "PNG image"}}
Alpha = Annotated[float, Query(ge=0.0, le=1.0, description="heatmap opacity over the input (with overlay)")]
Legend = Annotated[
    bool, Query(description="add the class, its score and a colour bar labelled with what its colours mean")
]
NormalizeParam = Annotated[
    Normalize,
    Query(
        description="`weighted`: the class's score times its probability at each location, 0 to 1, "
        "never above the score; `posterior`: the probability of the class at each location (softmax "
        "over the classes there), 0 to 1; `global`: the logits, one range over all of the image's "
        "classes; `map`: the logits, this map's own min-max"
    ),
]
MapValues = Annotated[
    Literal["logit", "weighted", "posterior"],
    Query(
        description="`logit`: the maps as the model outputs them (each map's mean is its class's logit); "
        "`posterior`: the softmax over the classes at each location, 0 to 1; `weighted`: that times "
        "the class's score (what the PNGs show by default)"
    ),
]


MAX_INDEX_DIGITS = 6  # far beyond any class count; int() of thousands of digits is slow, then refused


def label_index(labels: tuple[str, ...], label: str) -> int:
    """A class name (exact, then case-insensitive) or a 0-based index in ASCII digits (not `٣`)."""
    if label in labels:
        return labels.index(label)
    lowered = [name.lower() for name in labels]
    if label.lower() in lowered:
        return lowered.index(label.lower())
    if label.isascii() and label.isdigit() and len(label) <= MAX_INDEX_DIGITS and int(label) < len(labels):
        return int(label)
    raise LabelNotFound(
        f"unknown label {shown(label)}: use a class name ({', '.join(labels)}) or 0..{len(labels) - 1}"
    )


def _png(body: bytes, serving: ServingDep, headers: dict[str, str] | None = None) -> Response:
    cache = {"Cache-Control": f"private, max-age={int(serving.settings.store_ttl_s)}"}
    return Response(body, media_type=PNG, headers=cache | (headers or {}))


def map_headers(
    normalize: Normalize, value_range: tuple[float, float] | None, score: float | None
) -> dict[str, str]:
    """What the colours mean, for clients that draw their own legend: `X-Map-Range: low,high` are
    the values at the colormap's ends, in `X-Map-Units` (app/core/maps.py UNITS: probability or logit)."""
    headers = {"X-Map-Normalize": normalize, "X-Map-Units": UNITS[normalize]}
    if value_range is not None:
        headers["X-Map-Range"] = f"{value_range[0]:.6g},{value_range[1]:.6g}"
    if score is not None:
        headers["X-Class-Score"] = f"{score:.6g}"
    return headers


@router.get("/{prediction_id}", response_model=ClassifyResponse, summary="A stored classification result")
async def get_prediction(record: RecordDep) -> Response:
    return json_response(record.result)


@router.get("/{prediction_id}/maps", response_model=MapsResponse, summary="Raw confidence maps [K, h, w]")
async def get_maps(record: RecordDep, values: MapValues = "logit") -> Response:
    """The model's logits per location unless `values` asks for probabilities."""
    body = {
        "id": record.id,
        "labels": list(record.labels),
        "shape": list(record.maps.shape),
        "units": "logit" if values == "logit" else "probability",
        "values": record.maps if values == "logit" else map_values(record.maps, values),
    }
    return json_response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))


@router.get(
    "/{prediction_id}/maps.png",
    response_class=Response,
    responses=_PNG_DOC,
    summary="All classes' maps in one labelled grid",
)
async def get_grid(
    record: RecordDep,
    serving: ServingDep,
    size: Annotated[int, Query(ge=16, le=512, description="side of each cell, px")] = 128,
    overlay: Overlay = False,
    colormap: Colormap = "jet",
    normalize: NormalizeParam = NORMALIZE_DEFAULT,
    alpha: Alpha = OVERLAY_ALPHA,
    legend: Legend = False,
) -> Response:
    cost = render_cost(size, overlay=overlay, cells=len(record.labels))
    body = await serving.admission.render(
        cost,
        grid_png,
        record.maps,
        record.labels,
        record.scores,
        cell=size,
        colormap=colormap,
        normalize=normalize,
        preview=record.preview if overlay else None,
        alpha=alpha,
        legend=legend,
    )
    shared = None if normalize == "map" else value_range(record.maps, 0, normalize)
    return _png(body, serving, map_headers(normalize, shared, None))


@router.get(
    "/{prediction_id}/maps/{label}.png",
    response_class=Response,
    responses=_PNG_DOC,
    summary="One class's map as a heatmap PNG",
)
async def get_map_png(
    record: RecordDep,
    serving: ServingDep,
    label: str,
    size: Annotated[int, Query(ge=8, le=2048, description="output side, px (maps are upsampled)")] = 256,
    overlay: Overlay = False,
    colormap: Colormap = "jet",
    normalize: NormalizeParam = NORMALIZE_DEFAULT,
    alpha: Alpha = OVERLAY_ALPHA,
    legend: Legend = False,
) -> Response:
    index = label_index(record.labels, label)
    score = float(record.scores[index])
    body = await serving.admission.render(
        render_cost(size, overlay=overlay),
        map_png,
        record.maps,
        index,
        size=size,
        colormap=colormap,
        normalize=normalize,
        preview=record.preview if overlay else None,
        alpha=alpha,
        legend=legend,
        label=record.labels[index],
        score=score,
    )
    return _png(body, serving, map_headers(normalize, value_range(record.maps, index, normalize), score))
