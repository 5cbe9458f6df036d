"""GET /healthz (the process is alive) and /readyz (the model is loaded and warm).

Both name the model, its version and the execution provider once it is loaded, so one probe
shows what a replica serves; /healthz stays 200 while the model is still loading.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.core.errors import ModelUnloaded, NotReady
from app.http.deps import ServingDep, problems
from app.http.problems import problem_response
from app.http.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=problems(503), summary="Liveness")
async def healthz(serving: ServingDep) -> Health | Response:
    if serving.state == "failed":  # restart me: a process whose model cannot load will not recover
        return problem_response(  # why is in the server's log: probes are open without a key
            503,
            "the model failed to load; the server log says why",
            slug="failed",
            retry_after=NotReady.retry_after,
            instance="/healthz",
        )
    engine = serving.engine if serving.state == "ready" else None
    if engine is None:
        return Health(status="ok")
    return Health(
        status="ok", model=engine.info.name, version=engine.info.version, execution_provider=engine.provider
    )


@router.get("/readyz", response_model=Health, responses=problems(503), summary="Readiness")
async def readyz(serving: ServingDep) -> Health | Response:
    try:
        engine, _ = serving.ready()  # NotReady -> 503 with Retry-After
    except ModelUnloaded as exc:  # unloaded on purpose: no Retry-After, nothing will bring it back
        return problem_response(503, exc.detail, slug=exc.slug, instance="/readyz")
    return Health(
        status="ready",
        model=engine.info.name,
        version=engine.info.version,
        execution_provider=engine.provider,
    )
