"""The FastAPI application: `create_app(settings)` wires the serving state, routers, limits and errors.

    ninserve serve                                     # the usual way (app/cli/commands.py)
    uvicorn --factory app.http.main:app_from_env --http app.http.server:GuardedHttpToolsProtocol \
        --timeout-graceful-shutdown 10                 # settings from NINSERVE_* only

Connection limits (header/body deadlines, header limits, connection cap) live in the uvicorn
protocol (app/http/server.py), not here: an ASGI app only sees a request once its headers are in.

A request passes the middleware stack, outermost first: request id (app/logs.py, only with
NINSERVE_LOG_FORMAT=json), shutdown guard (middleware/shutdown.py), metrics (metrics.py), security
headers, CORS, API keys (middleware/auth.py), body limits (middleware/body_limits.py: per body
and all bodies together); then its route (a HEAD goes as GET: middleware/head.py). POST
/v1/classify has a raw ASGI fast path ahead of the documented route (routes/fast_classify.py).
Where it goes from there, layer by layer, is the map in app/__init__.py.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from app.config import Settings, settings_error
from app.http.metrics import install_metrics
from app.http.middleware.auth import ApiKeyMiddleware, check_keys, open_paths
from app.http.middleware.body_limits import BodyBudget, BodyLimitMiddleware
from app.http.middleware.cors import install_cors
from app.http.middleware.head import install_head
from app.http.middleware.security_headers import SecurityHeadersMiddleware
from app.http.middleware.shutdown import ShutdownGuardMiddleware
from app.http.openapi import install_openapi
from app.http.problems import install_error_handlers
from app.http.redact import install as install_log_redaction
from app.http.routes import ROUTERS
from app.http.routes.fast_classify import install_fast_classify
from app.http.routes.page import install_page
from app.http.v2.errors import install_v2_error_handlers
from app.logs import LogFormat, RequestIdMiddleware, formatter
from app.serving.state import ServingState

if TYPE_CHECKING:
    from app.grpc.server import GrpcFrontend

__version__ = "0.1.0"


def create_app(settings: Settings) -> FastAPI:
    serving = ServingState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await serving.start()  # returns at once; the model loads in the background (/readyz)
        grpc = await start_grpc(app, serving) if settings.grpc_port is not None else None
        try:
            yield
        finally:
            if grpc is not None:  # after HTTP's drain: its calls get graceful_shutdown_s too
                await grpc.stop()
            await serving.stop()

    app = FastAPI(
        title="ninserve",
        version=__version__,
        summary="Network-in-Network CIFAR-10 classifier: class scores and per-class confidence maps",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from app/http/routes/page.py, with assets from the package
        redoc_url=None,
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.serving = serving
    install_log_redaction()  # credential-like query values never reach a log line
    install_error_handlers(app)
    install_v2_error_handlers(app)  # {"error": ...} bodies under /v2, problem+json elsewhere
    # Middleware, innermost first: body limit, API keys (before any body is read), CORS (answers
    # preflights, which carry no key), security headers (on every answer, 401s included),
    # metrics (sees every handler), shutdown guard (outermost: 503 for requests cut off at exit).
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        budget=BodyBudget(settings.max_body_bytes_in_flight),
    )
    keys = settings.api_key_list
    check_keys(keys)  # here, not when the first request builds the middleware stack
    if keys:
        app.add_middleware(
            ApiKeyMiddleware,
            keys=keys,
            open_paths=open_paths(settings),
            cors=bool(settings.cors_origin_list),
        )
    if settings.cors_origin_list:
        install_cors(app, settings.cors_origin_list)
    app.add_middleware(SecurityHeadersMiddleware, server_timing=settings.send_server_timing)
    install_metrics(app, serving, ROUTERS)
    app.add_middleware(ShutdownGuardMiddleware)
    if settings.log_format == "json":  # outermost: every line of the request carries its id
        app.add_middleware(RequestIdMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    install_fast_classify(app)
    install_page(app)  # `/`, /static, /docs, /redoc
    install_head(app)  # last: HEAD wherever GET is served
    install_openapi(app, serving, open_paths(settings) if keys else None)
    return app


async def start_grpc(app: FastAPI, serving: ServingState) -> GrpcFrontend:
    """The gRPC frontend (app/grpc/) in this event loop, on the same serving state and metrics."""
    from app.grpc.server import GrpcFrontend  # grpc loads only where it is asked for

    frontend = GrpcFrontend(serving, app.state.metrics, version=__version__)
    await frontend.start()
    app.state.grpc = frontend
    return frontend


# uvicorn's exit status for a process that failed before serving; its worker supervisor stops
# instead of restarting a worker that exits with it (the same settings would fail again).
STARTUP_FAILURE = 3


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: each worker reads NINSERVE_*.

    Invalid settings end the process with one line on stderr, as `ninserve serve` does; so does a
    model that cannot load, which a worker cannot recover from (the supervisor stops them all)."""
    try:
        settings = Settings()
        check_keys(settings.api_key_list)
    except ValueError as exc:  # pydantic's ValidationError too
        print(f"ninserve: invalid settings: {settings_error(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    app.state.serving.on_failure.append(_exit_cannot_serve)
    return app


def _exit_cannot_serve(error: str) -> None:
    """The model failed to load (logged with its reason): end this process now, with the status
    that tells uvicorn's supervisor not to restart it, instead of leaving it alive but useless."""
    logging.shutdown()
    os._exit(STARTUP_FAILURE)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    logger = logging.getLogger("ninserve")
    ours = [h for h in logger.handlers if h.get_name() == "ninserve"]
    if not ours and not logger.handlers:
        ours = [logging.StreamHandler()]
        ours[0].set_name("ninserve")
        logger.addHandler(ours[0])
    for handler in ours:
        handler.setFormatter(formatter(log_format))
    logger.setLevel(level.upper())
