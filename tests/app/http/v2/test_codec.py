"""The V2 wire format without a server: requests built by tritonclient itself are parsed, and our
responses are read back by tritonclient's own decoder, so both directions match the real client."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from app.core.errors import InvalidTensor
from app.http.v2.codec import (
    InferRequest,
    OutputTensor,
    classification,
    encode_infer_response,
    parse_infer_request,
)
from tests.app.helpers import CLASSES


def client_request(inputs: list[triton.InferInput], outputs=None, **kwargs) -> InferRequest:
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kwargs)
    return parse_infer_request(body, None if json_size is None else str(json_size))


def json_request(doc: dict, tail: bytes = b"") -> InferRequest:
    header = orjson.dumps(doc)
    return parse_infer_request(header + tail, str(len(header)) if tail else None)


def uint8_input(array: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", list(array.shape), "UINT8")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


IMAGES = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)


@pytest.mark.parametrize("binary", [True, False])
def test_uint8_from_the_real_client_json_and_binary(binary: bool) -> None:
    request = client_request([uint8_input(IMAGES, binary)], request_id="r1")
    (image,) = request.inputs
    assert (image.name, image.datatype, image.shape) == ("image", "UINT8", (2, 4, 4, 3))
    assert isinstance(image.data, np.ndarray) and image.data.dtype == np.uint8
    np.testing.assert_array_equal(image.data, IMAGES)
    assert request.id == "r1" and request.outputs is None and request.binary_output is True


def test_nested_and_flat_json_data_are_the_same_tensor() -> None:
    flat = json_request(
        {
            "inputs": [
                {"name": "image", "datatype": "UINT8", "shape": [2, 4, 4, 3], "data": IMAGES.ravel().tolist()}
            ]
        }
    )
    nested = json_request(
        {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [2, 4, 4, 3], "data": IMAGES.tolist()}]}
    )
    np.testing.assert_array_equal(flat.inputs[0].data, nested.inputs[0].data)


def test_fp32_json_and_binary() -> None:
    values = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    for binary in (True, False):
        tensor = triton.InferInput("x", [2, 3], "FP32")
        tensor.set_data_from_numpy(values, binary_data=binary)
        np.testing.assert_array_equal(client_request([tensor]).inputs[0].data, values)


def test_bytes_binary_elements_keep_their_bytes() -> None:
    items = np.array([[b"\x89PNG\x00\xff"], [b""], [b"jpeg"]], dtype=np.object_)
    tensor = triton.InferInput("image", [3, 1], "BYTES")
    tensor.set_data_from_numpy(items)
    (image,) = client_request([tensor]).inputs
    assert image.shape == (3, 1) and image.data == [b"\x89PNG\x00\xff", b"", b"jpeg"]


def test_bytes_json_strings_are_utf8_or_base64() -> None:
    doc = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "data": ["héllo", "x"]}]}
    assert json_request(doc).inputs[0].data == ["héllo".encode(), b"x"]
    raw = b"\x89PNG\r\n\x1a\n\x00"
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1, 1],
                "parameters": {"content_type": "base64"},
                "data": [[base64.b64encode(raw).decode()]],
            }
        ]
    }
    assert json_request(doc).inputs[0].data == [raw]


def test_requested_outputs_binary_default_and_classification() -> None:
    outputs = [
        triton.InferRequestedOutput("scores", binary_data=False, class_count=3),
        triton.InferRequestedOutput("confidence_maps"),
    ]
    request = client_request([uint8_input(IMAGES, True)], outputs=outputs)
    assert request.outputs is not None
    scores, maps = request.outputs
    assert (scores.name, scores.binary, scores.classification) == ("scores", False, 3)
    assert (maps.name, maps.binary, maps.classification) == ("confidence_maps", True, 0)
    doc = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [1], "data": [0]}],
        "outputs": [{"name": "scores"}],
    }
    assert json_request(doc).outputs[0].binary is True  # type: ignore[index]


def image(**fields) -> dict:
    return {"name": "image", "datatype": "UINT8", "shape": [1, 2], "data": [1, 2]} | fields


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"inputs": []}, "non-empty list"),
        ([1, 2], "JSON object"),
        ({"inputs": [image(datatype="UINT9")]}, "unknown datatype"),
        ({"inputs": [image(shape=[1, -2])]}, "non-negative integer"),
        ({"inputs": [image(shape="1,2")]}, "list of dimensions"),
        ({"inputs": [image(data=[1, 2, 3])]}, "has 3 values"),
        ({"inputs": [image(data=[[1], [2, 3]])]}, "ragged"),
        ({"inputs": [image(data=[1, 256])]}, "in [0, 255]"),
        ({"inputs": [image(data=[-1, 2])]}, "in [0, 255]"),
        ({"inputs": [image(data=[1.5, 2])]}, "integers only"),
        ({"inputs": [image(data=[True, False])]}, "integers only"),
        ({"inputs": [image(data=["1", "2"])]}, "integers only"),
        ({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1]}]}, "neither"),
        ({"inputs": [image(), image()]}, "more than once"),
        ({"inputs": [image(parameters=[1])]}, "JSON object"),
        ({"inputs": [image()], "outputs": [{"name": "scores"}, {"name": "scores"}]}, "more than once"),
        (
            {"inputs": [image()], "outputs": [{"name": "scores", "parameters": {"classification": -1}}]},
            "classification",
        ),
        (
            {"inputs": [image()], "outputs": [{"name": "scores", "parameters": {"classification": True}}]},
            "classification",
        ),
        (
            {"inputs": [image()], "outputs": [{"name": "scores", "parameters": {"binary_data": 1}}]},
            "true or false",
        ),
        ({"inputs": [image()], "parameters": {"binary_data_output": "yes"}}, "true or false"),
        ({"inputs": [image()], "id": 7}, "`id`"),
        ({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1], "data": [1]}]}, "strings"),
        (
            {
                "inputs": [
                    {
                        "name": "s",
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": ["!!"],
                        "parameters": {"content_type": "base64"},
                    }
                ]
            },
            "base64",
        ),
    ],
)
def test_malformed_json_requests(doc, message: str) -> None:
    with pytest.raises(InvalidTensor, match=message.replace("[", r"\[").replace("(", r"\(")):
        json_request(doc)


def test_not_json_at_all() -> None:
    with pytest.raises(InvalidTensor, match="not valid JSON"):
        parse_infer_request(b"\x89PNG", None)


def binary_image(size: int, shape: list[int], **fields) -> dict:
    return {
        "name": "image",
        "datatype": "UINT8",
        "shape": shape,
        "parameters": {"binary_data_size": size},
    } | fields


@pytest.mark.parametrize(
    ("doc", "tail", "header_length", "message"),
    [
        ({"inputs": [binary_image(4, [4])]}, b"abc", None, "only 3 bytes remain"),
        ({"inputs": [binary_image(3, [4])]}, b"abc", None, "needs 4"),
        ({"inputs": [binary_image(2, [2])]}, b"abc", None, "1 bytes of binary data"),
        ({"inputs": [binary_image(3, [3], data=[1, 2, 3])]}, b"abc", None, "both"),
        ({"inputs": [binary_image(3, [3])]}, b"abc", "0", "Inference-Header-Content-Length"),
        ({"inputs": [binary_image(3, [3])]}, b"abc", "99999", "Inference-Header-Content-Length"),
        ({"inputs": [binary_image(3, [3])]}, b"abc", "x1", "Inference-Header-Content-Length"),
    ],
)
def test_malformed_binary_requests(doc, tail: bytes, header_length: str | None, message: str) -> None:
    header = orjson.dumps(doc)
    with pytest.raises(InvalidTensor, match=message):
        parse_infer_request(header + tail, header_length or str(len(header)))


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"\x05\x00\x00\x00abc", "claims 5 bytes"),
        (b"\x01\x00", "length prefix"),
        (b"\x01\x00\x00\x00a\x01\x00\x00\x00b", "exactly 1"),
        (b"", "exactly 1"),
    ],
)
def test_malformed_bytes_elements(tail: bytes, message: str) -> None:
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(tail)},
            }
        ]
    }
    with pytest.raises(InvalidTensor, match=message):
        json_request(doc, tail) if tail else parse_infer_request(orjson.dumps(doc), None)


SCORES = np.array([[0.1, 0.5, 0.2, 0.2], [0.7, 0.1, 0.1, 0.1]], dtype=np.float32)


def test_classification_is_top_k_best_first_ties_by_index() -> None:
    top = classification(SCORES, 3, ["a", "b", "c", "d"])
    assert top.shape == (2, 3) and top.dtype == object
    rows = [[item.decode().split(":") for item in row] for row in top]
    assert [[(int(i), label) for _, i, label in row] for row in rows] == [
        [(1, "b"), (2, "c"), (3, "d")],
        [(0, "a"), (1, "b"), (2, "c")],
    ]
    # the printed score reads back to exactly the float32 (as v1's JSON number does)
    assert [float(v) for v, _, _ in rows[0]] == [float(SCORES[0, i]) for i in (1, 2, 3)]
    assert classification(SCORES, 99, ["a", "b", "c", "d"]).shape == (2, 4)


def test_response_read_back_by_tritonclient_json_and_binary() -> None:
    maps = np.arange(2 * 4 * 2 * 2, dtype=np.float32).reshape(2, 4, 2, 2) / 7
    top = classification(SCORES, 2, CLASSES[:4])
    for binary in (False, True):
        outputs = [
            OutputTensor("scores", "FP32", SCORES, binary),
            OutputTensor("confidence_maps", "FP32", maps, binary),
            OutputTensor("top", "BYTES", top, binary),
        ]
        body, json_length = encode_infer_response("nin", "v7", "req-1", outputs)
        assert (json_length is None) is not binary
        result = triton.InferenceServerClient.parse_response_body(body, header_length=json_length)
        response = result.get_response()
        assert (response["model_name"], response["model_version"], response["id"]) == ("nin", "v7", "req-1")
        np.testing.assert_array_equal(result.as_numpy("scores"), SCORES)
        np.testing.assert_array_equal(result.as_numpy("confidence_maps"), maps)
        got = result.as_numpy("top")
        assert got.shape == (2, 2)
        assert [x if isinstance(x, bytes) else x.encode() for x in got.ravel()] == list(top.ravel())


def test_json_only_response_has_no_binary_parameters() -> None:
    body, json_length = encode_infer_response(
        "nin", "1", None, [OutputTensor("scores", "FP32", SCORES, False)]
    )
    doc = orjson.loads(body)
    assert json_length is None and "id" not in doc
    (out,) = doc["outputs"]
    assert (out["name"], out["datatype"], out["shape"], "parameters" in out) == (
        "scores",
        "FP32",
        [2, 4],
        False,
    )
    # float32s are written in their shortest form (0.1, not 0.10000000149011612): the same float32 back
    np.testing.assert_array_equal(np.array(out["data"], np.float32).reshape(2, 4), SCORES)


def test_an_unknown_input_is_named_before_its_fields_are_read() -> None:
    body = orjson.dumps({"inputs": [{"name": "img"}]})
    with pytest.raises(InvalidTensor, match="unknown input 'img'; the model takes one input, 'image'"):
        parse_infer_request(body, None, input_names=("image",))
    with pytest.raises(InvalidTensor, match="input 'image': `datatype` is missing; use one of .*UINT8"):
        parse_infer_request(orjson.dumps({"inputs": [{"name": "image"}]}), None, input_names=("image",))
