"""The served model through the V2 protocol: its metadata and config, and one infer request run
through the same decode policy, micro-batcher and limits as v1 (app/serving/pipeline.py `run_images`).

    outputs = await infer(runtime, parse_infer_request(body, header_length), served)

The model's own input is `image` UINT8 [N, H, W, 3]; an `image` of datatype BYTES ([N] or
[N, 1], as Triton clients send images) holds encoded files instead, decoded and resized by
app/core/decode.py exactly like v1 (to the native size, or to the request parameter `resolution`).
Each of the N images is its own batcher submission, so they share ONNX Runtime batches with
every other request in flight; the results are stacked back in request order.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.config import Settings
from app.core.echo import shown
from app.core.engine import INPUT_NAME, MAPS, SCORES, Engine
from app.core.errors import InvalidTensor
from app.core.served import Served
from app.http.v2.codec import BYTES, InferRequest, InputTensor, OutputTensor, RequestedOutput, classification
from app.serving.pipeline import resolve_resolution, run_images
from app.serving.state import ServingState

PLATFORM = "onnxruntime_onnx"
OUTPUTS = (SCORES, MAPS)
_V2_DATATYPES = {  # ONNX Runtime type -> V2 datatype, for the metadata
    "tensor(uint8)": "UINT8",
    "tensor(int8)": "INT8",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bool)": "BOOL",
    "tensor(string)": BYTES,
}


def _tensors(described: list[dict[str, Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """ONNX Runtime's descriptions -> V2 tensor metadata; named dimensions are dynamic (-1)."""
    by_name = {d["name"]: d for d in described}
    return [
        {
            "name": name,
            "datatype": _V2_DATATYPES.get(by_name[name]["dtype"], by_name[name]["dtype"]),
            "shape": [d if isinstance(d, int) else -1 for d in by_name[name]["shape"]],
        }
        for name in names
    ]


def model_metadata(served: Served | Engine, versions: list[str] | None = None) -> dict[str, Any]:
    """`versions`: every loaded version of the model (default: this one)."""
    info = served.info
    return {
        "name": info.name,
        "versions": versions or [info.version],
        "platform": PLATFORM,
        "inputs": _tensors(info.inputs, (INPUT_NAME,)),
        "outputs": _tensors(info.outputs, OUTPUTS),
    }


def model_config(engine: Engine, settings: Settings) -> dict[str, Any]:
    """Triton's model configuration (the `model_configuration` extension), which perf_analyzer
    reads for the largest batch; dims leave out the batch dimension, as in Triton."""
    meta = model_metadata(engine)

    def dims(tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"name": t["name"], "data_type": f"TYPE_{t['datatype']}", "dims": t["shape"][1:]} for t in tensors
        ]

    return {
        "name": meta["name"],
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": settings.max_request_images,
        "input": dims(meta["inputs"]),
        "output": dims(meta["outputs"]),
        "dynamic_batching": {
            "preferred_batch_size": [settings.max_batch_size],
            "max_queue_delay_microseconds": round(settings.max_batch_wait_ms * 1000),
        },
        "instance_group": [
            {
                "count": settings.concurrent_batches,
                "kind": "KIND_GPU" if engine.device == "cuda" else "KIND_CPU",
            }
        ],
        "parameters": {"classes": {"string_value": ",".join(engine.info.classes)}},
    }


async def infer(
    serving: ServingState, request: InferRequest, served: Served, *, deadline: float | None = None
) -> list[OutputTensor]:
    """A parsed request -> the requested outputs of `served` (held by the caller); raises
    domain errors (app/core/errors.py).

    `deadline` (time.monotonic): the one set when the request arrived, so that reading and parsing
    its body count against request_timeout_s; by default, request_timeout_s from now."""
    if deadline is None:
        deadline = time.monotonic() + serving.settings.request_timeout_s
    info = served.info
    wanted = _requested(request)
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        names = ", ".join(shown(t.name) for t in request.inputs[:4])
        more = f" and {len(request.inputs) - 4} more" if len(request.inputs) > 4 else ""
        raise InvalidTensor(f"the model takes one input, {INPUT_NAME!r}; got {names}{more}")
    image = request.inputs[0]
    resolution = request.parameters.get("resolution")
    if image.datatype == BYTES:
        size = _resolution(resolution, info.native_size, serving.settings.max_resolution)
        images: list[bytes] | list[np.ndarray] = _encoded_images(image, serving.settings)
    elif image.datatype == "UINT8":
        if resolution is not None:
            raise InvalidTensor("parameter `resolution` is for encoded (BYTES) images; pixels run as sent")
        images = _raw_images(image, info.native_size, serving.settings)
        size = info.native_size
    else:
        raise InvalidTensor(
            f"input {INPUT_NAME!r} must be UINT8 [N, H, W, 3] pixels or BYTES [N] encoded images, "
            f"not {image.datatype}"
        )
    # Every image is priced from its header and the request admitted whole, before any decode.
    ran = await run_images(
        serving, images, size, deadline=deadline, preview_size=size, whole=True, model=served
    )
    results = [r.result for r in ran]
    scores = np.stack([r.scores for r in results])  # [N, K]
    with_maps = any(o.name == MAPS for o in wanted)
    maps = np.stack([r.maps for r in results]) if with_maps else None  # [N, K, h, w]
    return [_output(o, scores, maps, info.classes) for o in wanted]


def _requested(request: InferRequest) -> list[RequestedOutput]:
    """Every output when none is named (binary per `binary_data_output`), else the named ones."""
    if request.outputs is None:
        return [RequestedOutput(name, request.binary_output, 0) for name in OUTPUTS]
    for o in request.outputs:
        if o.name not in OUTPUTS:
            raise InvalidTensor(f"unknown output {shown(o.name)}; the model has {SCORES!r} and {MAPS!r}")
        if o.classification and o.name != SCORES:
            raise InvalidTensor(f"classification applies to {SCORES!r} only, not {shown(o.name)}")
    return request.outputs


def _resolution(value: Any, native: int, maximum: int) -> int:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidTensor(f"parameter `resolution` must be an integer, got {shown(value)}")
    return resolve_resolution(value, native, maximum)


def _check_count(n: int, settings: Settings) -> None:
    if not 1 <= n <= settings.max_request_images:
        raise InvalidTensor(f"{n} images in one request; the limit is 1 to {settings.max_request_images}")


def _raw_images(image: InputTensor, native: int, settings: Settings) -> list[np.ndarray]:
    """UINT8 [N, H, W, 3] -> N views [H, W, 3]; each side a multiple of 4 in [native, max_resolution]."""
    assert isinstance(image.data, np.ndarray)
    if len(image.shape) != 4 or image.shape[3] != 3:
        raise InvalidTensor(f"input {INPUT_NAME!r} UINT8 must be [N, H, W, 3] (RGB), got {list(image.shape)}")
    n, height, width, _ = image.shape
    _check_count(n, settings)
    for side, value in (("height", height), ("width", width)):
        if value % 4 or not native <= value <= settings.max_resolution:
            raise InvalidTensor(
                f"image {side} must be a multiple of 4 in [{native}, {settings.max_resolution}], got {value}"
            )
    if height * width > settings.max_image_pixels:
        raise InvalidTensor(f"{height}x{width} images exceed the limit of {settings.max_image_pixels} pixels")
    return list(image.data)


def _encoded_images(image: InputTensor, settings: Settings) -> list[bytes]:
    """BYTES [N] or [N, 1] encoded files, checked for shape and count."""
    assert isinstance(image.data, list)
    shape = image.shape
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InvalidTensor(f"input {INPUT_NAME!r} BYTES must be [N] or [N, 1], got {list(shape)}")
    _check_count(shape[0], settings)
    return image.data


def _output(
    spec: RequestedOutput, scores: np.ndarray, maps: np.ndarray | None, classes: tuple[str, ...]
) -> OutputTensor:
    if spec.classification:
        top = classification(scores, spec.classification, classes)  # [N, k]
        return OutputTensor(spec.name, BYTES, top, spec.binary)
    data = scores if spec.name == SCORES else maps
    assert data is not None
    return OutputTensor(spec.name, "FP32", data, spec.binary)
