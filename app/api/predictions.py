"""GET /v1/predictions/{id}[/maps | /maps.png | /maps/{label}.png]: stored results and maps."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from app.api.deps import Colormap, Overlay, RecordDep, RuntimeDep, json_response, problems
from app.errors import LabelNotFound
from app.maps import Normalize, grid_png, map_png
from app.memory import render_cost
from app.schemas import ClassifyResponse, MapsResponse

router = APIRouter(prefix="/v1/predictions", tags=["predictions"], responses=problems(404, 422))

PNG = "image/png"
_PNG_DOC = {200: {"content": {PNG: {}}, "description": "PNG image"}}


def label_index(labels: tuple[str, ...], label: str) -> int:
    """A class name (exact, then case-insensitive) or a 0-based index."""
    if label in labels:
        return labels.index(label)
    lowered = [name.lower() for name in labels]
    if label.lower() in lowered:
        return lowered.index(label.lower())
    if label.isdecimal() and int(label) < len(labels):
        return int(label)
    raise LabelNotFound(
        f"unknown label {label!r}: use a class name ({', '.join(labels)}) or 0..{len(labels) - 1}"
    )


def _png(body: bytes, rt: RuntimeDep) -> Response:
    return Response(
        body, media_type=PNG, headers={"Cache-Control": f"private, max-age={int(rt.settings.store_ttl_s)}"}
    )


@router.get("/{prediction_id}", response_model=ClassifyResponse, summary="A stored classification result")
async def get_prediction(record: RecordDep) -> Response:
    return json_response(record.result)


@router.get("/{prediction_id}/maps", response_model=MapsResponse, summary="Raw confidence maps [K, h, w]")
async def get_maps(record: RecordDep) -> Response:
    body = {
        "id": record.id,
        "labels": list(record.labels),
        "shape": list(record.maps.shape),
        "values": record.maps,
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
    rt: RuntimeDep,
    size: Annotated[int, Query(ge=16, le=512, description="side of each cell, px")] = 128,
    overlay: Overlay = False,
    colormap: Colormap = "jet",
    normalize: Annotated[Normalize, Query(description="`global`: one scale for all classes")] = "global",
) -> Response:
    cost = render_cost(size, overlay=overlay, cells=len(record.labels))
    body = await rt.admission.render(
        cost,
        grid_png,
        record.maps,
        record.labels,
        record.scores,
        cell=size,
        colormap=colormap,
        normalize=normalize,
        preview=record.preview if overlay else None,
    )
    return _png(body, rt)


@router.get(
    "/{prediction_id}/maps/{label}.png",
    response_class=Response,
    responses=_PNG_DOC,
    summary="One class's map as a heatmap PNG",
)
async def get_map_png(
    record: RecordDep,
    rt: RuntimeDep,
    label: str,
    size: Annotated[int, Query(ge=8, le=2048, description="output side, px (maps are upsampled)")] = 256,
    overlay: Overlay = False,
    colormap: Colormap = "jet",
    normalize: Annotated[Normalize, Query(description="`map`: this map's own min-max")] = "map",
) -> Response:
    index = label_index(record.labels, label)
    body = await rt.admission.render(
        render_cost(size, overlay=overlay),
        map_png,
        record.maps,
        index,
        size=size,
        colormap=colormap,
        normalize=normalize,
        preview=record.preview if overlay else None,
    )
    return _png(body, rt)
