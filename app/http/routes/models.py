"""GET /v1/models: every loaded model version, with its facts and execution provider."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.http.deps import ServingDep, problems, reject_unknown_query
from app.http.schemas import ModelInfoResponse, ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(reject_unknown_query)])


@router.get(
    "/models",
    response_model=ModelList,
    responses=problems(503),
    summary="The loaded models and versions (the default model first, latest versions first)",
)
async def list_models(serving: ServingDep, request: Request) -> ModelList:
    serving.ready()  # 503 until the default model serves
    registry = serving.models
    # The default model first, each model's latest version (what unversioned requests get) first.
    default = registry.default_name
    loaded = sorted(
        registry.loaded(), key=lambda s: (s.name != default, s.name, registry.resolve(s.name) is not s)
    )
    models = []
    for served in loaded:
        info, engine = served.info, served.engine
        models.append(
            ModelInfoResponse(
                name=info.name,
                version=info.version,
                default=info.name == registry.default_name,
                latest=registry.resolve(info.name) is served,
                precision=served.precision,
                classes=list(info.classes),
                native_size=info.native_size,
                dataset=info.metadata.get("dataset"),
                val_top1=info.val_top1,
                execution_provider=engine.provider,
                device=engine.device,
                inputs=info.inputs,
                outputs=info.outputs,
                metadata=info.metadata,
            )
        )
    grpc = getattr(request.app.state, "grpc", None)  # app/http/main.py start_grpc
    return ModelList(models=models, grpc_port=grpc.port if grpc is not None else None)
