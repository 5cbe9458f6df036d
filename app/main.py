"""The FastAPI application: `create_app(settings)` wires runtime, routers, limits and errors.

    ninserve serve                                     # the usual way (app/commands.py)
    uvicorn --factory app.main:app_from_env            # settings from NINSERVE_* only

Data flow: body (api/body.py) -> decode (decode.py, thread pool) -> batch (batcher.py) -> ONNX
Runtime (engine.py, thread) -> result + store (pipeline.py, store.py) -> JSON / PNG (maps.py).
The KServe V2 protocol (api/v2.py, v2/) shares decode and batcher; /metrics is app/metrics.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import ROUTERS
from app.api.body import BodyLimitMiddleware
from app.api.fast_classify import install_fast_classify
from app.api.page import install_page
from app.api.problems import install_error_handlers
from app.api.v2_errors import install_v2_error_handlers
from app.config import Settings
from app.metrics import install_metrics
from app.runtime import Runtime

__version__ = "0.1.0"


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()  # returns at once; the model loads in the background (/readyz)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="ninserve",
        version=__version__,
        summary="Network-in-Network CIFAR-10 classifier: class scores and per-class confidence maps",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from app/api/page.py, with assets from the package
        redoc_url=None,
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    install_v2_error_handlers(app)  # {"error": ...} bodies under /v2, problem+json elsewhere
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_metrics(app, runtime, ROUTERS)  # last: its middleware is outermost, sees every handler
    for router in ROUTERS:
        app.include_router(router)
    install_fast_classify(app)
    install_page(app)  # `/`, /static, /docs, /redoc
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: each worker reads NINSERVE_*."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def configure_logging(level: str) -> None:
    logger = logging.getLogger("ninserve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
