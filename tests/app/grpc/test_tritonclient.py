"""The Open Inference Protocol over gRPC with the real Triton client (tritonclient[grpc]): every call
it makes for this model, binary (raw_input_contents) and typed tensors, encoded images, the
classification extension, model configuration, and answers equal to HTTP's for the same pixels."""

from __future__ import annotations

import queue

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.app.helpers import pattern, png

MODEL = "tiny"


def pixels(n: int, size: int = 32) -> np.ndarray:
    return np.stack([pattern(i, size) for i in range(n)])  # [N, H, W, 3] uint8


def image_input(images: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


def http_scores(url: str, images: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "UINT8",
                "shape": list(images.shape),
                "data": images.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "scores"}],
    }
    answer = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, timeout=30).json()
    return np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(len(images), -1)


def test_health_and_server_metadata(tc: triton.InferenceServerClient) -> None:
    assert tc.is_server_live() and tc.is_server_ready()
    assert tc.is_model_ready(MODEL) and tc.is_model_ready(MODEL, "tiny-0001")
    meta = tc.get_server_metadata(as_json=True)
    assert meta["name"] == "ninserve"
    assert set(meta["extensions"]) >= {"classification", "model_repository", "model_configuration"}


def test_model_metadata_and_config_are_https(tc: triton.InferenceServerClient, served) -> None:
    meta = tc.get_model_metadata(MODEL, as_json=True)
    over_http = httpx.get(f"{served[0]}/v2/models/{MODEL}").json()
    assert meta["name"] == over_http["name"] and meta["versions"] == over_http["versions"]
    assert meta["platform"] == "onnxruntime_onnx"
    shapes = {
        t["name"]: ([int(d) for d in t["shape"]], t["datatype"]) for t in meta["inputs"] + meta["outputs"]
    }
    assert shapes == {
        t["name"]: (t["shape"], t["datatype"]) for t in over_http["inputs"] + over_http["outputs"]
    }
    config = tc.get_model_config(MODEL, as_json=True)["config"]
    http_config = httpx.get(f"{served[0]}/v2/models/{MODEL}/config").json()
    assert config["max_batch_size"] == http_config["max_batch_size"] == 8
    assert config["input"][0]["data_type"] == "TYPE_UINT8"
    assert [int(d) for d in config["input"][0]["dims"]] == [-1, -1, 3]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["classes"]["string_value"].startswith("airplane,")


def test_binary_pixels_give_http_scores_and_maps(tc: triton.InferenceServerClient, served) -> None:
    images = pixels(3)
    outputs = [triton.InferRequestedOutput("scores"), triton.InferRequestedOutput("confidence_maps")]
    result = tc.infer(MODEL, [image_input(images)], outputs=outputs, request_id="r-1")
    scores, maps = result.as_numpy("scores"), result.as_numpy("confidence_maps")
    assert scores.shape == (3, 10) and maps.shape == (3, 10, 8, 8)
    np.testing.assert_allclose(scores, http_scores(served[0], images), rtol=1e-6)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (MODEL, "tiny-0001", "r-1")
    # softmax(mean of each map) is the score: the maps belong to these scores
    logits = maps.mean(axis=(2, 3))
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(scores, expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_every_output_when_none_is_named_and_larger_inputs_give_larger_maps(
    tc: triton.InferenceServerClient,
) -> None:
    result = tc.infer(MODEL, [image_input(pixels(1, 64))])
    assert result.as_numpy("scores").shape == (1, 10)
    assert result.as_numpy("confidence_maps").shape == (1, 10, 16, 16)


def test_typed_contents_as_the_protocol_allows(served) -> None:
    """uint_contents instead of raw bytes, through the real client's own generated stub."""
    images = pixels(2)
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="typed")
    tensor = request.inputs.add(name="image", datatype="UINT8", shape=list(images.shape))
    tensor.contents.uint_contents.extend(images.ravel().tolist())
    request.outputs.add(name="scores")
    with grpc.insecure_channel(served[1]) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    scores = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, 10)
    np.testing.assert_allclose(scores, http_scores(served[0], images), rtol=1e-6)
    assert response.id == "typed"


def test_encoded_images_and_the_classification_extension(tc: triton.InferenceServerClient, served) -> None:
    files = np.array([png(5), png(6)], dtype=np.object_)
    tensor = triton.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(files)
    result = tc.infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput("scores", class_count=3)])
    top = result.as_numpy("scores")
    assert top.shape == (2, 3)
    v1 = httpx.post(f"{served[0]}/v1/classify", files={"file": ("a.png", png(5))}, timeout=30).json()
    first = [entry.decode().split(":") for entry in top[0]]
    assert [(label, int(index)) for _, index, label in first] == [
        (t["label"], t["index"]) for t in v1["top"][:3]
    ]
    assert float(first[0][0]) == v1["top"][0]["score"]


def test_resolution_parameter_for_encoded_images(tc: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[png(1)]], dtype=np.object_))
    result = tc.infer(MODEL, [tensor], parameters={"resolution": 64})
    assert result.as_numpy("confidence_maps").shape == (1, 10, 16, 16)


def test_async_infer_and_the_aio_client(tc: triton.InferenceServerClient, served) -> None:
    done: queue.Queue = queue.Queue()
    tc.async_infer(MODEL, [image_input(pixels(1))], callback=lambda result, error: done.put((result, error)))
    result, error = done.get(timeout=30)
    assert error is None and result.as_numpy("scores").shape == (1, 10)

    import asyncio

    import tritonclient.grpc.aio as triton_aio

    async def run() -> tuple[int, ...]:
        client = triton_aio.InferenceServerClient(served[1])
        try:
            tensors = [triton_aio.InferInput("image", [1, 32, 32, 3], "UINT8")]
            tensors[0].set_data_from_numpy(pixels(1))
            answers = await asyncio.gather(*(client.infer(MODEL, tensors) for _ in range(8)))
            return tuple(a.as_numpy("scores").shape[0] for a in answers)
        finally:
            await client.close()

    assert asyncio.run(run()) == (1,) * 8


@pytest.mark.parametrize(
    ("call", "code", "says"),
    [
        (lambda tc: tc.infer("nope", [image_input(pixels(1))]), "NOT_FOUND", "unknown model 'nope'"),
        (lambda tc: tc.infer(MODEL, [image_input(pixels(1))], model_version="9"), "NOT_FOUND", "'9'"),
        (lambda tc: tc.get_model_metadata("x" * 500), "NOT_FOUND", "500 characters"),
        (lambda tc: tc.infer(MODEL, [image_input(pixels(1, 30))]), "INVALID_ARGUMENT", "multiple of 4"),
        (lambda tc: tc.infer(MODEL, [image_input(pixels(9))]), "INVALID_ARGUMENT", "9 images"),
        (
            lambda tc: tc.infer(MODEL, [image_input(pixels(1))], outputs=[triton.InferRequestedOutput("x")]),
            "INVALID_ARGUMENT",
            "unknown output 'x'",
        ),
        (
            lambda tc: tc.infer(
                MODEL,
                [image_input(pixels(1))],
                outputs=[triton.InferRequestedOutput("confidence_maps", class_count=2)],
            ),
            "INVALID_ARGUMENT",
            "classification applies to 'scores' only",
        ),
        (lambda tc: tc.infer(MODEL, [_fp32()]), "INVALID_ARGUMENT", "must be UINT8"),
        (lambda tc: tc.infer(MODEL, [_bytes(b"not an image")]), "INVALID_ARGUMENT", "image"),
        (lambda tc: tc.infer(MODEL, [_named("pixels")]), "INVALID_ARGUMENT", "unknown input 'pixels'"),
        (
            lambda tc: tc.infer(MODEL, [image_input(pixels(1))], parameters={"resolution": 64}),
            "INVALID_ARGUMENT",
            "resolution",
        ),
    ],
)
def test_client_mistakes_get_their_status_and_the_servers_words(
    tc: triton.InferenceServerClient, call, code: str, says: str
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call(tc)
    assert caught.value.status() == f"StatusCode.{code}"
    assert says in caught.value.message()
    assert len(caught.value.message()) <= 512


def _fp32() -> triton.InferInput:
    tensor = triton.InferInput("image", [1, 32, 32, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 32, 32, 3), np.float32))
    return tensor


def _bytes(data: bytes) -> triton.InferInput:
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([data], dtype=np.object_))
    return tensor


def _named(name: str) -> triton.InferInput:
    tensor = triton.InferInput(name, [1, 32, 32, 3], "UINT8")
    tensor.set_data_from_numpy(pixels(1))
    return tensor


def test_the_clients_deadline_is_the_requests(tc: triton.InferenceServerClient) -> None:
    """A client timeout shorter than the work ends the call with DEADLINE_EXCEEDED, never INTERNAL."""
    with pytest.raises(InferenceServerException) as caught:
        tc.infer(MODEL, [image_input(pixels(8, 256))], client_timeout=0.001)
    assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert tc.is_server_ready()  # and the server goes on


def test_metrics_count_grpc_calls_with_their_protocol(tc: triton.InferenceServerClient, served) -> None:
    tc.infer(MODEL, [image_input(pixels(1))])
    with pytest.raises(InferenceServerException):
        tc.infer("nope", [image_input(pixels(1))])
    text = httpx.get(f"{served[0]}/metrics").text
    method = "/inference.GRPCInferenceService/ModelInfer"
    assert f'ninserve_grpc_requests_total{{code="OK",method="{method}"}}' in text
    assert f'ninserve_grpc_requests_total{{code="NOT_FOUND",method="{method}"}}' in text
    labels = f'endpoint="{method}",model="tiny",protocol="grpc",version="tiny-0001"'
    success = f"nv_inference_request_success_total{{{labels}}}"
    assert success in text
    assert 'reason="model-not-found"' in text and 'protocol="grpc"' in text
