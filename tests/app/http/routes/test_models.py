"""GET /v1/models."""

from __future__ import annotations

import httpx

from app.http.schemas import ModelList
from tests.app.helpers import CLASSES


def test_models_describe_the_artifact_and_provider(client: httpx.Client) -> None:
    listing = ModelList.model_validate_json(client.get("/v1/models").content)
    assert listing.grpc_port is None  # this server runs no gRPC (the page then shows no gRPC call)
    models = listing.models
    assert len(models) == 1
    m = models[0]
    assert (m.name, m.version, m.classes, m.native_size) == ("tiny", "tiny-0001", CLASSES, 32)
    assert m.execution_provider == "CPUExecutionProvider" and m.device == "cpu"
    assert m.val_top1 == 0.1 and m.dataset == "generated"
    assert m.inputs[0]["name"] == "image" and m.inputs[0]["shape"][-1] == 3
    assert {"mean", "std", "model_version", "export_date"} <= set(m.metadata)
