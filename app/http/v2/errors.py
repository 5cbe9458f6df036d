"""Errors under /v2 in the KServe V2 shape, `{"error": "<message>"}`, instead of v1's problem+json.

V2 clients (tritonclient, perf_analyzer, KServe SDKs) read `error` from any non-200 answer, so
every path under /v2 answers that way, unknown routes and body-limit rejections included. The
statuses: 404 unknown model, version or route; 413 a body over the limit; 503 (+ Retry-After)
not ready, overloaded or past the queue deadline; 500 only for our own failures; every other
client error 400, as Triton does (an undecodable image inside a tensor is a bad tensor, not a 415).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.core.echo import clipped, shown
from app.core.errors import ModelNotFound, NinServeError, PayloadTooLarge
from app.http.problems import Handler, installed, problem_response, validation_errors, validation_summary

logger = logging.getLogger("ninserve")

PREFIX = "/v2"
MAX_MESSAGE = 512  # characters of an error message sent: the longest own messages are ~200


def is_v2_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def v2_error_response(status: int, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    # clipped: a safety net, as messages quote client values cut short already
    return Response(
        orjson.dumps({"error": clipped(message, MAX_MESSAGE)}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response_for(
    path: str,
    status: int,
    detail: str,
    *,
    slug: str,
    retry_after: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A middleware's refusal, made before any route runs: `{"error": ...}` under /v2 and
    problem+json elsewhere, the same split the exception handlers make."""
    if not is_v2_path(path):
        return problem_response(
            status, detail, slug=slug, retry_after=retry_after, instance=path, headers=headers
        )
    response = v2_error_response(status, detail, retry_after)
    response.headers.update(headers or {})
    return response


def v2_status(exc: NinServeError) -> int:
    if exc.status >= 500 or isinstance(exc, ModelNotFound | PayloadTooLarge):
        return exc.status
    return 400


def _v2_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NinServeError):
        status = v2_status(exc)
        if status >= 500 and exc.retry_after is None:
            logger.error("%s %s: %s", request.method, shown(request.url.path), exc.detail)
        return v2_error_response(status, exc.detail, exc.retry_after)
    if isinstance(exc, RequestValidationError):
        return v2_error_response(400, f"invalid request ({validation_summary(validation_errors(exc))})")
    if isinstance(exc, StarletteHTTPException):  # keep its headers: Allow on a 405
        response = v2_error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response
    if isinstance(exc, ClientDisconnect):
        return v2_error_response(400, "the client disconnected before sending the whole body")
    logger.exception("unhandled error on %s %s", request.method, shown(request.url.path), exc_info=exc)
    return v2_error_response(500, "internal server error")


def _scoped(original: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if is_v2_path(request.url.path):
            return _v2_response(request, exc)
        return await original(request, exc)

    return handle


def install_v2_error_handlers(app: FastAPI) -> None:
    """Wrap the app's handlers (app/http/problems.py installs them first) so /v2 paths get V2 bodies."""
    for kind in (NinServeError, RequestValidationError, StarletteHTTPException, ClientDisconnect, Exception):
        original = installed(app, kind)
        if original is None:
            raise RuntimeError(f"install_error_handlers(app) must run first: no handler for {kind.__name__}")
        app.add_exception_handler(kind, _scoped(original))
