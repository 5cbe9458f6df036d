"""Response bodies, as pydantic models: they document the API at /docs and tests validate real
responses against them. The hot path builds the same shapes as dicts and serialises with orjson
(app/serving/pipeline.py), so a field added here must be added there too (a test checks they agree).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str


class TopEntry(BaseModel):
    label: str
    index: int
    score: float = Field(description="softmax probability")


class ImageSize(BaseModel):
    width: int = Field(description="original width, after EXIF orientation")
    height: int


class Timing(BaseModel):
    decode: float = Field(description="bytes -> pixels, ms (thread pool)")
    queue: float = Field(description="waiting for a batch, ms")
    compute: float = Field(description="the batch's ONNX Runtime run, ms")
    encode: float = Field(description="building the result, ms")
    total: float = Field(description="request received -> response built, ms")


class MapsRef(BaseModel):
    shape: list[int] = Field(description="[K, h, w]")
    url: str = Field(description="raw values as JSON")
    png_url_template: str = Field(description="replace {label} with a class name or index")
    grid_url: str = Field(description="all classes in one PNG")
    values: list[list[list[float]]] | None = Field(
        None, description="[K][h][w] logits (each map's mean is its class's logit), only with maps=inline"
    )


class ClassifyResponse(BaseModel):
    id: str
    model: ModelRef
    top: list[TopEntry] = Field(description="top_k classes, highest score first")
    scores: dict[str, float] = Field(description="every class's probability; they sum to 1")
    image: ImageSize
    resolution: int = Field(description="side of the square input the network ran at")
    batch_size: int = Field(description="requests that shared this ONNX Runtime run")
    timing_ms: Timing
    maps: MapsRef


class BatchItem(BaseModel):
    index: int = Field(description="position of the file in the request")
    filename: str | None
    status: int = Field(description="the HTTP status this item would have had on its own")
    result: ClassifyResponse | None = None
    error: dict[str, Any] | None = Field(None, description="RFC 9457 problem, when status != 200")


class BatchResponse(BaseModel):
    results: list[BatchItem]


class MapsResponse(BaseModel):
    id: str
    labels: list[str]
    shape: list[int]
    units: Literal["logit", "probability"] = Field(
        description="`logit`: the model's maps (each map's mean is its class's logit); `probability`: "
        "with values=posterior or weighted, the values the map PNGs colour (docs/api.md)"
    )
    values: list[list[list[float]]] = Field(description="[K][h][w], in `units`")


class ModelInfoResponse(BaseModel):
    name: str
    version: str
    default: bool = Field(description="the model /v1/classify uses (NINSERVE_MODEL_NAME)")
    latest: bool = Field(description="the version /v1/models/{name}/classify uses (its highest loaded)")
    precision: str = Field(description="the variant loaded: fp32 or int8 (NINSERVE_PRECISION)")
    classes: list[str]
    native_size: int
    dataset: str | None
    val_top1: float | None = Field(description="validation top-1 accuracy from the artifact's metadata")
    execution_provider: str
    device: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    metadata: dict[str, str]


class ModelList(BaseModel):
    models: list[ModelInfoResponse]
    grpc_port: int | None = Field(
        None,
        description="the port this server answers the Open Inference Protocol's gRPC on "
        "(NINSERVE_GRPC_PORT), as it listens (a proxy or port mapping may publish another); "
        "null when gRPC is off",
    )


class Health(BaseModel):
    status: str
    model: str | None = None
    version: str | None = None
    execution_provider: str | None = None


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
