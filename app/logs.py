"""Log output: text lines by default, or one JSON object a line (NINSERVE_LOG_FORMAT=json) that a
log collector parses without a pattern, each carrying the id of the request it was written for.

In JSON mode every request gets an id: the client's `X-Request-ID` when it is a plain token
(letters, digits, `._:-`, at most 128 characters), else a fresh one; it goes back in the
response's `X-Request-ID` and into every line logged while the request is served (uvicorn's
access line included), so one request's lines can be found together and quoted to a client.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

REQUEST_ID: ContextVar[str | None] = ContextVar("ninserve_request_id", default=None)
REQUEST_ID_HEADER = b"x-request-id"
ACCEPTED_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# uvicorn.access records carry (client, method, path, http version, status) as their arguments.
ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id when in
    a request, the access line's fields as fields, and the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            doc["request_id"] = request_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            doc.update(zip(ACCESS_FIELDS, record.args, strict=True))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any] | None:
    """uvicorn's `log_config` for this format; None keeps uvicorn's own (the text default)."""
    if log_format != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"default": handler, "access": handler | {"stream": "ext://sys.stdout"}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


class RequestIdMiddleware:
    """Pure ASGI: sets REQUEST_ID for the request (the caller's token or a new one) and returns it
    in `X-Request-ID`. Installed only in JSON mode, so the text default pays nothing for it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), b"")
        raw = given if ACCEPTED_ID.fullmatch(given) else uuid.uuid4().hex.encode()
        # Set in this task's context and left set: uvicorn writes the access line and any
        # unhandled error from the same task after the app returns.
        REQUEST_ID.set(raw.decode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, raw)]
            await send(message)

        await self.app(scope, receive, send_with_id)
