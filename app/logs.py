"""Log output: text lines by default, or one JSON object a line (NINSERVE_LOG_FORMAT=json) that a
log collector parses without a pattern, each carrying the id of the request it was written for.

In JSON mode every request gets an id: the client's `X-Request-ID` when it is a plain token
(letters, digits, `._:-`, at most 128 characters), else a fresh one; it goes back in the
response's `X-Request-ID` and into every line logged while the request is served, so one
request's lines can be found together and quoted to a client. The access line is written once the
response is sent (uvicorn's own, written when the response starts, cannot know its duration or
size): `ninserve.access` with client, method, path, http_version, status, duration_ms, bytes (the
response body), model and version (null when the request named no loaded model) and request_id.
What the command line prints itself (the start banner, why it exits) goes through `console`, so
that no line of a JSON-mode server is text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import sys
import time
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
ACCESS = logging.getLogger("ninserve.access")
# Where the routes note which model version served a request (app/http/problems.py:note_model).
MODEL_KEY = "ninserve.model"


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
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            doc.update(access)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def console(message: str, log_format: str | None = None, *, level: str = "info") -> None:
    """A line the command line writes itself (start banner, why it exits) to stderr: as given in
    text mode, one JSON object in JSON mode (with its line breaks escaped). Without settings (they
    failed to parse), the format comes from NINSERVE_LOG_FORMAT."""
    chosen = log_format or os.environ.get("NINSERVE_LOG_FORMAT", "text")
    if chosen.strip().lower() != "json":
        print(message, file=sys.stderr, flush=True)
        return
    record = logging.LogRecord(
        "ninserve.cli", logging.getLevelName(level.upper()), "", 0, message, None, None
    )
    print(JsonFormatter().format(record), file=sys.stderr, flush=True)


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any] | None:
    """uvicorn's `log_config` for this format; None keeps uvicorn's own (the text default). In
    JSON mode uvicorn's access line is off: RequestIdMiddleware writes a fuller one."""
    if log_format != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "default": handler,
            "access": handler | {"stream": "ext://sys.stdout"},
            "off": {"class": "logging.NullHandler"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            # uvicorn sets this logger's level itself, so its lines are dropped by the handler.
            "uvicorn.access": {"handlers": ["off"], "propagate": False},
            "ninserve.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


class RequestIdMiddleware:
    """Pure ASGI: sets REQUEST_ID for the request (the caller's token or a new one), returns it in
    `X-Request-ID`, and writes the access line when the response is done. Installed only in JSON
    mode, so the text default pays nothing for it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), b"")
        raw = given if ACCEPTED_ID.fullmatch(given) else uuid.uuid4().hex.encode()
        # Set in this task's context and left set: uvicorn writes any unhandled error from the
        # same task after the app returns.
        REQUEST_ID.set(raw.decode())
        status, sent = 0, 0

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, raw)]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            status = status or 499  # the client went away first (nginx's "client closed request")
            raise
        except Exception:
            status = status or 500  # uvicorn answers 500 for what escaped the app
            raise
        finally:
            log_access(scope, status or 500, sent, time.perf_counter() - started)


def log_access(scope: dict[str, Any], status: int, sent: int, seconds: float) -> None:
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("path", "") + (f"?{query}" if query else "")
    model, version = scope.get("state", {}).get(MODEL_KEY) or (None, None)
    fields = {
        "client": f"{client[0]}:{client[1]}" if client else None,
        "method": scope.get("method"),
        "path": path,
        "http_version": scope.get("http_version"),
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "bytes": sent,
        "model": model or None,
        "version": version or None,
    }
    line = f'{fields["client"]} - "{fields["method"]} {path} HTTP/{fields["http_version"]}" {status}'
    ACCESS.info(line, extra={"access": fields})
