"""The OpenAPI schema says exactly what this app accepts: bounds that depend on its settings and
model, and its bearer-key scheme when API keys are on.

- uploads: a file is at least one byte, a batch at least one file.
- `resolution`: a multiple of 4 from the model's native size to NINSERVE_MAX_RESOLUTION. The
  native size is known once the model has loaded; until then the schema is built but not cached.
- With API keys: a `bearer` security scheme, required everywhere except the open paths, and
  the 401 answer documented on every protected operation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.http.deps import RESOLUTION_STEP
from app.http.middleware.auth import OPEN_PREFIXES
from app.http.schemas import Problem
from app.http.v2.errors import is_v2_path
from app.serving.state import ServingState

FALLBACK_NATIVE_SIZE = 32  # Settings' lowest max_resolution: the smallest native size served
UNAUTHORIZED_WHY = "missing or invalid API key (`Authorization: Bearer <key>`)"
UNAUTHORIZED = {
    "description": UNAUTHORIZED_WHY,
    "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
}
V2_UNAUTHORIZED = {
    "description": UNAUTHORIZED_WHY,
    "content": {"application/json": {"example": {"error": "the API key is not valid"}}},
}


def resolution_schema(native: int, maximum: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": native,
        "maximum": maximum,
        "multipleOf": RESOLUTION_STEP,
        "title": "Resolution",
    }


def install_openapi(app: FastAPI, runtime: ServingState, open_paths: frozenset[str] | None) -> None:
    """Replace app.openapi; `open_paths` None: no API keys, so no security scheme."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        native = runtime.engine.info.native_size if runtime.engine is not None else None
        _bound_resolution(schema, native or FALLBACK_NATIVE_SIZE, runtime.settings.max_resolution)
        _non_empty_uploads(schema)
        if open_paths is not None:
            _require_keys(schema, open_paths)
        if native is not None:
            app.openapi_schema = schema  # final: the model and settings no longer change
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, item in schema.get("paths", {}).items() for op in item.values()]


def _bound_resolution(schema: dict[str, Any], native: int, maximum: int) -> None:
    for _, op in _operations(schema):
        for param in op.get("parameters", []):
            if param.get("name") == "resolution" and param.get("in") == "query":
                description = param["schema"].get("description")
                param["schema"] = resolution_schema(native, maximum)
                param["description"] = (
                    f"run at this square size (a multiple of {RESOLUTION_STEP} from {native} to {maximum}) "
                    "for finer maps; default: the model's native size"
                )
                if description:
                    param["schema"]["description"] = description


def _non_empty_uploads(schema: dict[str, Any]) -> None:
    """An upload is at least one byte, and a batch at least one file (an empty one is a 400/422)."""
    for _, op in _operations(schema):
        form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
        for prop in form.get("properties", {}).values():
            if prop.get("format") == "binary":
                prop["minLength"] = 1
            elif prop.get("type") == "array":
                prop["minItems"] = 1
                prop["items"]["minLength"] = 1


def _require_keys(schema: dict[str, Any], open_paths: frozenset[str]) -> None:
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from NINSERVE_API_KEYS",
    }
    schema["security"] = [{"apiKey": []}]
    for path, op in _operations(schema):
        if path in open_paths or path.startswith(OPEN_PREFIXES):
            op["security"] = []
        else:
            op.setdefault("responses", {})["401"] = V2_UNAUTHORIZED if is_v2_path(path) else UNAUTHORIZED
