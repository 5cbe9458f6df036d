"""Domain errors -> HTTP: RFC 9457 `application/problem+json`, the one translation.

`install_error_handlers` maps every domain error (app/core/errors.py), FastAPI's validation errors
and Starlette's HTTP exceptions to a problem body through the same `problem_response` function.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.core.echo import clipped, shown
from app.core.errors import ModelUnloaded, NinServeError

logger = logging.getLogger("ninserve")

PROBLEM_MEDIA_TYPE = "application/problem+json"
ERROR_SLUG = "ninserve.error"  # key in the ASGI scope's request state: see note_error
MODEL_KEY = "ninserve.model"  # ... and see note_model
INSTANCE_LIMIT = 128  # characters of the request path sent as `instance`: real paths are under 100


# An exception handler as this app installs them (every one async); `installed` reads one back
# from FastAPI's table, which types them loosely (sync or async).
Handler = Callable[[Request, Exception], Awaitable[Response]]


def installed(app: FastAPI, kind: type[Exception] | int) -> Handler | None:
    """The handler `app` has for `kind`, to wrap it (app/http/metrics.py, app/http/v2/errors.py)."""
    return cast("Handler | None", app.exception_handlers.get(kind))


def note_error(scope: MutableMapping[str, Any], slug: str) -> None:
    """Remember which error answered this request: app/http/metrics.py counts failures by this slug."""
    scope.setdefault("state", {})[ERROR_SLUG] = slug


def note_model(scope: MutableMapping[str, Any], name: str, version: str) -> None:
    """Remember which model version answered this request: the per-model request metrics."""
    scope.setdefault("state", {})[MODEL_KEY] = (name, version)


def problem(status: int, detail: str, *, slug: str | None = None, **extensions: Any) -> dict[str, Any]:
    """The RFC 9457 body; `type` is a URN because there is no public page to point to."""
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": f"urn:ninserve:problem:{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extensions)
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    retry_after: int | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    if instance:  # the path as the client sent it, which can be as long as the header limit
        extensions["instance"] = clipped(instance, INSTANCE_LIMIT)
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(
        orjson.dumps(problem(status, detail, slug=slug, **extensions)),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def error_problem(exc: NinServeError) -> dict[str, Any]:
    """The problem body for one error (also used for per-item errors in batch responses)."""
    return problem(exc.status, exc.detail, slug=exc.slug, **exc.extensions)


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NinServeError)
    if exc.status >= 500 and exc.retry_after is None and not isinstance(exc, ModelUnloaded):
        logger.error("%s %s: %s", request.method, shown(request.url.path), exc.detail)
    return problem_response(
        exc.status,
        exc.detail,
        slug=exc.slug,
        retry_after=exc.retry_after,
        instance=request.url.path,
        **exc.extensions,
    )


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's validation errors as {loc, msg, type}, without the `input` (the client's value,
    in full) that pydantic adds to each."""
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def validation_summary(errors: list[dict[str, Any]]) -> str:
    """`query.top_k: Input should be ...; query.size: ...`, for a message (v1 and /v2)."""
    return "; ".join(".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in errors)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    return problem_response(
        422,
        f"invalid request parameters ({validation_summary(errors)})",
        slug="invalid-parameter",
        instance=request.url.path,
        errors=errors,
    )


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    # Keep the exception's headers: Allow on a 405, Retry-After on a 503.
    return problem_response(exc.status_code, str(exc.detail), instance=request.url.path, headers=exc.headers)


async def _on_disconnect(request: Request, exc: Exception) -> Response:
    # Nobody is left to read this; answer quietly instead of logging a server error.
    return problem_response(
        400,
        "the client disconnected before sending the whole body",
        slug="client-disconnect",
        instance=request.url.path,
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, shown(request.url.path))
    return problem_response(500, "internal server error", slug="internal-error", instance=request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NinServeError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(ClientDisconnect, _on_disconnect)
    app.add_exception_handler(Exception, _on_unexpected)
