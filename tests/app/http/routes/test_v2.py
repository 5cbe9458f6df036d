"""The KServe V2 protocol over real HTTP with the real client (tritonclient[http]) and the tiny
model: health, metadata, infer with JSON and binary tensors, encoded-image BYTES input and the
classification extension, checked against the v1 API's answers for the same images."""

from __future__ import annotations

import asyncio
import base64
import gzip
import struct
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from app.core.engine import Engine
from app.http.main import create_app
from app.http.v2.errors import MAX_MESSAGE
from tests.app.helpers import CLASSES, encode, live_server, pattern, png
from tests.fixtures.golden import ARTIFACT, golden_images

MODEL, VERSION = "tiny", "tiny-0001"  # the tiny model's file stem and model_version


@pytest.fixture(scope="module")
def tc(server_url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server_url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def v1_scores(client: httpx.Client, data: bytes, **params) -> np.ndarray:
    response = client.post("/v1/classify", params=params, files={"file": ("x", data, "image/png")})
    assert response.status_code == 200, response.text
    return np.array(list(response.json()["scores"].values()), np.float32)


def pixels_input(images: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


def files_input(files: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(files), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[f] for f in files], dtype=np.object_))
    return tensor


def assert_v2_error(response: httpx.Response, status: int, contains: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert isinstance(message, str) and contains in message
    return message


def test_health_and_server_metadata(tc: triton.InferenceServerClient) -> None:
    assert tc.is_server_live() and tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "ninserve" and meta["version"]
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])


def test_model_metadata_ready_and_config(tc: triton.InferenceServerClient) -> None:
    meta = tc.get_model_metadata(MODEL)
    assert meta == tc.get_model_metadata(MODEL, VERSION)
    assert meta["name"] == MODEL and meta["versions"] == [VERSION]
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    assert meta["outputs"] == [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "confidence_maps", "datatype": "FP32", "shape": [-1, 10, -1, -1]},
    ]
    assert tc.is_model_ready(MODEL) and tc.is_model_ready(MODEL, VERSION)
    assert not tc.is_model_ready(MODEL, "v0") and not tc.is_model_ready("resnet")
    config = tc.get_model_config(MODEL)
    assert config["max_batch_size"] == 8 and config["input"][0]["dims"] == [-1, -1, 3]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_pixels_in_scores_and_maps_out_equal_v1(
    tc: triton.InferenceServerClient, client: httpx.Client, binary: bool
) -> None:
    images = np.stack([pattern(seed) for seed in (1, 2, 3)])  # [3, 32, 32, 3]
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary) for name in ("scores", "confidence_maps")
    ]
    result = tc.infer(MODEL, [pixels_input(images, binary)], outputs=outputs, request_id="abc")
    assert result.get_response()["id"] == "abc" and result.get_response()["model_version"] == VERSION
    scores, maps = result.as_numpy("scores"), result.as_numpy("confidence_maps")
    assert scores.shape == (3, 10) and scores.dtype == np.float32 and maps.shape == (3, 10, 8, 8)
    for i, seed in enumerate((1, 2, 3)):  # PNG is lossless and 32x32: v1 sees the same pixels
        np.testing.assert_allclose(scores[i], v1_scores(client, png(seed)), rtol=1e-6, atol=1e-9)
    maps_v1 = client.post("/v1/classify?maps=inline", files={"file": ("x", png(1))}).json()["maps"]["values"]
    np.testing.assert_allclose(maps[0], np.array(maps_v1, np.float32), rtol=1e-6, atol=1e-7)


def test_default_outputs_are_all_binary(tc: triton.InferenceServerClient) -> None:
    result = tc.infer(MODEL, [pixels_input(pattern(4)[None])])
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["scores", "confidence_maps"]
    assert all("binary_data_size" in o["parameters"] and "data" not in o for o in outputs)


def test_larger_raw_input_gives_larger_maps(tc: triton.InferenceServerClient, client: httpx.Client) -> None:
    images = pattern(5, size=64)[None]
    result = tc.infer(MODEL, [pixels_input(images)], model_version=VERSION)
    assert result.as_numpy("confidence_maps").shape == (1, 10, 16, 16)
    expected = v1_scores(client, png(5, size=64), resolution=64)
    np.testing.assert_allclose(result.as_numpy("scores")[0], expected, rtol=1e-6, atol=1e-9)


def test_encoded_images_are_decoded_like_v1(tc: triton.InferenceServerClient, client: httpx.Client) -> None:
    files = [png(6, size=48), encode(pattern(7, size=40), "JPEG", quality=90), png(8)]
    result = tc.infer(MODEL, [files_input(files)], outputs=[triton.InferRequestedOutput("scores")])
    scores = result.as_numpy("scores")
    assert scores.shape == (3, 10) and result.as_numpy("confidence_maps") is None
    for i, data in enumerate(files):
        np.testing.assert_allclose(scores[i], v1_scores(client, data), rtol=1e-6, atol=1e-9)
    at64 = tc.infer(MODEL, [files_input(files[:1])], parameters={"resolution": 64})
    assert at64.as_numpy("confidence_maps").shape == (1, 10, 16, 16)
    expected = v1_scores(client, files[0], resolution=64)
    np.testing.assert_allclose(at64.as_numpy("scores")[0], expected, rtol=1e-6, atol=1e-9)


def test_classification_extension_matches_v1_top(
    tc: triton.InferenceServerClient, client: httpx.Client
) -> None:
    files = [png(9), png(10)]
    for binary in (True, False):
        out = triton.InferRequestedOutput("scores", binary_data=binary, class_count=3)
        result = tc.infer(MODEL, [files_input(files)], outputs=[out])
        response = result.get_response()["outputs"][0]
        assert response["datatype"] == "BYTES" and response["shape"] == [2, 3]
        top = result.as_numpy("scores")
        for row, data in zip(top, files, strict=True):
            v1 = client.post("/v1/classify?top_k=3", files={"file": ("x", data)}).json()["top"]
            fields = [(x.decode() if isinstance(x, bytes) else x).split(":") for x in row]
            assert [(int(i), label) for _, i, label in fields] == [(t["index"], t["label"]) for t in v1]
            got = [float(score) for score, _, _ in fields]
            np.testing.assert_allclose(got, [t["score"] for t in v1], rtol=1e-6, atol=1e-9)


def test_base64_json_image_and_nested_pixels_over_plain_http(client: httpx.Client) -> None:
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"content_type": "base64"},
                "data": [base64.b64encode(png(11)).decode()],
            }
        ],
        "outputs": [{"name": "scores", "parameters": {"classification": 1}}],
    }
    response = client.post(f"/v2/models/{MODEL}/infer", content=orjson.dumps(doc))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    (label,) = response.json()["outputs"][0]["data"]
    assert label.split(":")[2] in CLASSES
    nested = {
        "inputs": [
            {"name": "image", "datatype": "UINT8", "shape": [1, 32, 32, 3], "data": pattern(11).tolist()}
        ]
    }
    response = client.post(f"/v2/models/{MODEL}/versions/{VERSION}/infer", content=orjson.dumps(nested))
    assert response.status_code == 200
    np.testing.assert_allclose(
        response.json()["outputs"][0]["data"], v1_scores(client, png(11)), rtol=1e-6, atol=1e-9
    )


def test_gzip_request_from_the_client(tc: triton.InferenceServerClient) -> None:
    plain = tc.infer(MODEL, [pixels_input(pattern(12)[None])]).as_numpy("scores")
    zipped = tc.infer(MODEL, [pixels_input(pattern(12)[None])], request_compression_algorithm="gzip")
    np.testing.assert_array_equal(zipped.as_numpy("scores"), plain)


def test_client_errors_raise_with_the_server_message(tc: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="unknown model") as info:
        tc.infer("resnet", [pixels_input(pattern(1)[None])])
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException, match="no version") as info:
        tc.infer(MODEL, [pixels_input(pattern(1)[None])], model_version="7")
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException, match="multiple of 4") as info:
        tc.infer(MODEL, [pixels_input(np.zeros((1, 30, 32, 3), np.uint8))])
    assert info.value.status() == "400"


def infer_doc(**image) -> dict:
    tensor = {"name": "image", "datatype": "UINT8", "shape": [1, 32, 32, 3], "data": [0] * 3072} | image
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    ("doc", "contains"),
    [
        (infer_doc(datatype="FP32"), "UINT8 [N, H, W, 3] pixels or BYTES"),
        (infer_doc(name="input_1"), "one input, 'image'"),
        (infer_doc(shape=[1, 32, 32, 4], data=[0] * 4096), "[N, H, W, 3]"),
        (infer_doc(shape=[1, 28, 28, 3], data=[0] * 2352), "multiple of 4 in [32, 256]"),
        (infer_doc(shape=[1, 260, 32, 3], data=[0] * 24960), "multiple of 4 in [32, 256]"),
        (infer_doc(shape=[9, 32, 32, 3], data=[0] * 27648), "9 images"),
        (infer_doc(shape=[0, 32, 32, 3], data=[]), "0 images"),
        (infer_doc() | {"outputs": [{"name": "logits"}]}, "unknown output"),
        (
            infer_doc() | {"outputs": [{"name": "confidence_maps", "parameters": {"classification": 2}}]},
            "only",
        ),
        (infer_doc() | {"parameters": {"resolution": 64}}, "resolution"),
        (
            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not an image"]}]},
            "not a decodable image",
        ),
        (
            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}]},
            "[N] or [N, 1]",
        ),
        (
            {
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [""]}],
                "parameters": {"resolution": 30},
            },
            "resolution must be a multiple of 4",
        ),
        (
            {
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
                "parameters": {"resolution": "64"},
            },
            "must be an integer",
        ),
    ],
)
def test_400_with_an_error_body(client: httpx.Client, doc: dict, contains: str) -> None:
    assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=orjson.dumps(doc)), 400, contains)


@pytest.mark.parametrize(
    "doc",
    [
        infer_doc(name="n" * 5000),
        {"inputs": [infer_doc()["inputs"][0] | {"name": f"in{i}" + "n" * 500} for i in range(50)]},
        infer_doc() | {"outputs": [{"name": "o" * 5000}]},
        infer_doc()
        | {"outputs": [{"name": "confidence_maps" + " " * 5000, "parameters": {"classification": 2}}]},
        {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
            "parameters": {"resolution": "r" * 5000},
        },
    ],
)
def test_long_names_and_values_are_quoted_short(client: httpx.Client, doc: dict) -> None:
    message = assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=orjson.dumps(doc)), 400)
    assert "characters)" in message and len(message) < 400, message


def binary_doc(request_id: str, datatype: str = "UINT8", **extra) -> tuple[bytes, dict[str, str]]:
    """A valid binary V2 body (one 32x32 image, pixels or a PNG) with this `id`."""
    data = bytes(3072) if datatype == "UINT8" else struct.pack("<I", len(png(1))) + png(1)
    shape = [1, 32, 32, 3] if datatype == "UINT8" else [1]
    tensor = {
        "name": "image",
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": len(data)},
    }
    header = orjson.dumps({"id": request_id, "inputs": [tensor]} | extra)
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def test_an_id_is_echoed_up_to_its_limit(client: httpx.Client) -> None:
    body, headers = binary_doc("r" * 256)
    answered = client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert answered.status_code == 200 and b'"id":"' + b"r" * 256 + b'"' in answered.content


@pytest.mark.parametrize("datatype", ["UINT8", "BYTES"])
def test_a_long_id_is_refused_not_echoed(client: httpx.Client, datatype: str) -> None:
    body, headers = binary_doc("x" * 257, datatype)
    message = assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers), 400)
    assert "`id` is over the limit of 256 characters (257 characters)" in message
    body, headers = binary_doc("x" * (4 << 20), datatype)  # 4 MB: the echo that took RSS past budget
    answered = client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert answered.status_code == 400 and len(answered.content) < 400, answered.content[:200]


def test_a_long_id_without_bytes_inputs_is_refused_before_it_is_parsed(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.http.routes.v2 as v2_routes

    def never(*args: object) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(v2_routes, "_parse", never)
    body, headers = binary_doc("x" * (4 << 20))
    message = assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers), 400)
    assert "no string may be longer than 6144" in message


@pytest.mark.parametrize(
    "parameters",
    [{"note": "p" * 1025}, {"n" * 1025: 1}, {"deep": [{"x": "p" * 2000}]}, {f"k{i}": i for i in range(65)}],
)
def test_parameter_strings_are_bounded(client: httpx.Client, parameters: dict) -> None:
    for where in ("request", "input"):
        body, headers = binary_doc("id", "BYTES")
        doc = orjson.loads(body[: int(headers["Inference-Header-Content-Length"])])
        if where == "request":
            doc["parameters"] = parameters
        else:
            doc["inputs"][0]["parameters"] |= parameters
        header = orjson.dumps(doc)
        tail = body[int(headers["Inference-Header-Content-Length"]) :]
        answered = client.post(
            f"/v2/models/{MODEL}/infer",
            content=header + tail,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        message = assert_v2_error(answered, 400, "`parameters` of")
        assert "1024 characters" in message or "64 entries" in message


def test_raw_http_errors_are_v2_shaped(client: httpx.Client) -> None:
    assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=b"{not json"), 400, "not valid JSON")
    cut = {"Inference-Header-Content-Length": "5"}  # the JSON header would end after `{"inp`
    assert_v2_error(
        client.post(f"/v2/models/{MODEL}/infer", content=orjson.dumps(infer_doc()), headers=cut),
        400,
        "not valid JSON",
    )
    assert_v2_error(
        client.post(f"/v2/models/{MODEL}/infer", content=b"\x00", headers={"Content-Encoding": "br"}), 400
    )
    assert_v2_error(client.get("/v2/models/resnet"), 404, "unknown model")
    assert_v2_error(client.get(f"/v2/models/{MODEL}/versions/0/ready"), 404, "no version")
    assert_v2_error(client.get("/v2/nothing"), 404)
    not_allowed = client.delete(f"/v2/models/{MODEL}/infer")
    assert_v2_error(not_allowed, 405)
    assert not_allowed.headers["allow"] == "POST"


def test_health_bodies_are_the_open_inference_protocols(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}


def test_long_names_and_header_lengths_are_400_or_404_quoted_short(client: httpx.Client) -> None:
    message = assert_v2_error(client.get("/v2/models/" + "m" * 10_000), 404, "unknown model")
    assert len(message) < 200 and "10000 characters" in message
    message = assert_v2_error(client.get(f"/v2/models/{MODEL}/versions/" + "9" * 5000), 404)
    assert len(message) < 200
    digits = {"Inference-Header-Content-Length": "9" * 5000}
    message = assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=b"{}", headers=digits), 400)
    assert "Inference-Header-Content-Length" in message and len(message) < 300
    doc = infer_doc()
    doc["inputs"][0]["name"] = "x" * 10_000
    message = assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=orjson.dumps(doc)), 400)
    assert len(message) <= MAX_MESSAGE + 3  # however a message quotes it, what is sent is capped


def test_library_messages_stay_inside(client: httpx.Client) -> None:
    gz = {"Content-Encoding": "gzip"}
    garbage = assert_v2_error(
        client.post(f"/v2/models/{MODEL}/infer", content=b"\x1f\x8b junk", headers=gz), 400
    )
    assert "Error -3" not in garbage and "not valid gzip" in garbage
    trailing = gzip.compress(orjson.dumps(infer_doc())) + b"trailing garbage"
    message = assert_v2_error(client.post(f"/v2/models/{MODEL}/infer", content=trailing, headers=gz), 400)
    assert "after its end" in message


@pytest.fixture(scope="module")
def small_url(make_settings) -> Iterator[str]:
    with live_server(
        make_settings(max_body_bytes=64 * 1024, max_resolution=64, max_image_pixels=2000)
    ) as url:
        yield url


def test_body_and_pixel_limits_are_v1s(small_url: str) -> None:
    infer = f"/v2/models/{MODEL}/infer"
    with httpx.Client(base_url=small_url, timeout=30) as client:
        big = b" " * (70 * 1024)
        assert_v2_error(client.post(infer, content=big), 413, "limit")  # from Content-Length
        assert_v2_error(client.post(infer, content=iter([big[:40000], big[40000:]])), 413, "limit")  # chunked
        bomb = gzip.compress(b" " * (1024 * 1024))
        assert_v2_error(
            client.post(infer, content=bomb, headers={"Content-Encoding": "gzip"}), 413, "decompressed"
        )
        encoded = base64.b64encode(png(1, size=64)).decode()
        doc = {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"content_type": "base64"},
                    "data": [encoded],
                }
            ]
        }
        assert_v2_error(
            client.post(infer, content=orjson.dumps(doc)), 400, "pixels"
        )  # checked from the header
        raw = infer_doc(shape=[1, 64, 64, 3], data=[0] * 64 * 64 * 3)
        assert_v2_error(client.post(infer, content=orjson.dumps(raw)), 400, "pixels")


def test_not_ready_and_failed_load_answer_503(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, batch_sizes=(1,), options=None):
        raise RuntimeError("warm-up exploded")

    monkeypatch.setattr(Engine, "warmup", broken)
    app = create_app(make_settings())
    with live_server(app, wait_ready=False) as url, httpx.Client(base_url=url) as client:
        for _ in range(500):
            if app.state.serving.state != "loading":
                break
            threading.Event().wait(0.01)
        for path in (
            "/v2/health/live",
            "/v2/health/ready",
            f"/v2/models/{MODEL}",
            f"/v2/models/{MODEL}/ready",
        ):
            assert_v2_error(client.get(path), 503, "the model failed to load")
        response = client.post(f"/v2/models/{MODEL}/infer", content=orjson.dumps(infer_doc()))
        assert_v2_error(response, 503, "the model failed to load")
        assert response.headers["retry-after"] == "2"
        tc = triton.InferenceServerClient(url.removeprefix("http://"))
        assert not tc.is_server_live() and not tc.is_server_ready()
        tc.close()


def test_a_request_too_big_for_the_queue_is_refused_whole(make_settings) -> None:
    """A queue of 2 behind a blocked batch cannot take 3 images: the request is refused whole,
    none of its images is queued (admission is all or nothing)."""
    app = create_app(make_settings(max_batch_size=1, max_queue=2, max_batch_wait_ms=0))
    release = threading.Event()
    with live_server(app) as url:
        batcher = app.state.serving.batcher
        real_run = batcher._run_fn
        batcher._run_fn = lambda images: (release.wait(10), real_run(images))[1]

        async def scenario() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as ac:
                running = asyncio.create_task(ac.post("/v1/classify", files={"file": ("x", png(1))}))
                while not batcher.in_flight:
                    await asyncio.sleep(0.005)
                doc = infer_doc(shape=[3, 32, 32, 3], data=[0] * 3 * 3072)
                refused = await ac.post(f"/v2/models/{MODEL}/infer", content=orjson.dumps(doc))
                release.set()
                return await running, refused

        running, refused = asyncio.run(scenario())
        assert running.status_code == 200
        assert_v2_error(refused, 503, "queue is full")
        assert refused.headers["retry-after"] == "1"
        for _ in range(500):
            if batcher.queued == 0:
                break
            threading.Event().wait(0.01)
        assert batcher.queued == 0 and batcher.stats.items == 1


@pytest.mark.skipif(not ARTIFACT.is_file(), reason=f"{ARTIFACT} has not been exported yet")
def test_the_real_artifact_answers_v2_like_v1(make_settings) -> None:
    """The committed NiN over both protocols: all golden images in one V2 request (they share
    batches) against one v1 request each; the same top-1, scores equal to float32 rounding."""
    files = list(golden_images().values())
    settings = make_settings(
        model_path=ARTIFACT, max_batch_size=16, max_batch_wait_ms=20, max_request_images=16
    )
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        tc = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
        name = tc.get_model_metadata(ARTIFACT.stem)["name"]
        scores = tc.infer(name, [files_input(files)]).as_numpy("scores")
        top1 = tc.infer(
            name, [files_input(files)], outputs=[triton.InferRequestedOutput("scores", class_count=1)]
        )
        tc.close()
        for i, data in enumerate(files):
            expected = v1_scores(client, data)
            np.testing.assert_allclose(scores[i], expected, rtol=1e-5, atol=1e-7)
            assert int(top1.as_numpy("scores")[i, 0].split(b":")[1]) == int(np.argmax(expected))
