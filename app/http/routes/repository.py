"""Triton's model repository extension: the index, and loading and unloading models at run time.

    POST /v2/repository/index                      every model and version, its state and reason
    POST /v2/repository/models/{name}/load         (re)read the model's folder, load what it selects
    POST /v2/repository/models/{name}/unload       stop serving it; running requests finish

The answers are Triton's: the index is a JSON list of {name, version, state, reason}; load and
unload answer 200 once done with the model's entries, `{"name", "versions": [{version, state,
reason}]}` (Triton sends an empty body; a JSON one is what the OpenAPI schema says), or
`{"error": ...}`: 404 for a model the
repository lacks (naming why, when it skipped it), 400 when a version failed to load (each
reason, and what still serves: a failed version leaves its predecessor serving). With API keys
set (NINSERVE_API_KEYS) these routes need one, like the rest.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app.core.echo import shown
from app.core.errors import InvalidParameter, ModelLoadFailed
from app.http.deps import ServingDep, json_response
from app.repository.index import IndexEntry

router = APIRouter(prefix="/v2/repository", tags=["v2 repository (Triton)"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": why, "content": {"application/json": {"example": {"error": "why"}}}}
    for status, why in (
        (400, "a version failed to load (the reasons; what served before still serves), or a bad body"),
        (404, "no such model in the repository"),
    )
}
_DONE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "done: the model's versions and their states",
        "content": {
            "application/json": {
                "example": {"name": "pets", "versions": [{"version": "2", "state": "READY"}]}
            }
        },
    }
}


def _entry(entry: IndexEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"name": entry.name}
    if entry.version is not None:
        out["version"] = entry.version
    out["state"] = entry.state
    if entry.reason:
        out["reason"] = entry.reason
    return out


@router.post("/index", summary="Repository index: every model and version, its state and why")
async def index(request: Request, serving: ServingDep) -> Response:
    body = await request.body()
    ready_only = False
    if body.strip():
        try:
            options = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidParameter('the index request body must be JSON, e.g. {"ready": true}') from None
        ready_only = isinstance(options, dict) and options.get("ready") is True
    entries = [e for e in serving.models.index() if not ready_only or e.state == "READY"]
    return json_response(orjson.dumps([_entry(e) for e in entries if e.name]))


def _model_entries(serving: ServingDep, name: str) -> Response:
    entries = [_entry(e) for e in serving.models.index() if e.name == name]
    versions = [{k: v for k, v in e.items() if k != "name"} for e in entries if "version" in e]
    return json_response(orjson.dumps({"name": name, "versions": versions}))


@router.post("/models/{model_name}/load", summary="Load or reload a model", responses=_DONE | _ERRORS)
async def load(serving: ServingDep, model_name: str) -> Response:
    failures = await serving.models.load(model_name)
    if failures:
        versions = serving.models.versions_of(model_name)
        still = f"; serving {', '.join(versions)}" if versions else "; nothing of it serves"
        raise ModelLoadFailed(f"failed to load {shown(model_name)}: {'; '.join(failures)}{still}")
    return _model_entries(serving, model_name)


@router.post("/models/{model_name}/unload", summary="Unload a model", responses=_DONE | _ERRORS)
async def unload(serving: ServingDep, model_name: str) -> Response:
    await serving.models.unload(model_name)
    return _model_entries(serving, model_name)
