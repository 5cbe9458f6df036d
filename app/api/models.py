"""GET /v1/models: what is being served and on which execution provider."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import RuntimeDep, problems, reject_unknown_query
from app.schemas import ModelInfoResponse, ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(reject_unknown_query)])


@router.get("/models", response_model=ModelList, responses=problems(503), summary="The served model")
async def list_models(rt: RuntimeDep) -> ModelList:
    engine, _ = rt.ready()
    info = engine.info
    return ModelList(
        models=[
            ModelInfoResponse(
                name=info.name,
                version=info.version,
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
        ]
    )
