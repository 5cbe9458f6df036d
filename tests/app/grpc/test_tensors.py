"""ModelInferRequest -> the V2 codec's tensors (app/grpc/tensors.py) and domain errors -> status
codes (app/grpc/status.py), without a server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from app.core import errors
from app.core.errors import InvalidTensor
from app.grpc.proto import inference_pb2 as pb
from app.grpc.status import retry_metadata, status_for
from app.grpc.tensors import infer_request, infer_response, typed_elements
from app.http.v2.codec import OutputTensor


def request_with(
    datatype: str = "UINT8", shape=(1, 2, 2, 3), raw: bytes | None = None, **contents
) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m", id="7")
    tensor = message.inputs.add(name="image", datatype=datatype, shape=list(shape))
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    if raw is not None:
        message.raw_input_contents.append(raw)
    return message


def test_raw_and_typed_uint8_give_the_same_array() -> None:
    values = np.arange(12, dtype=np.uint8)
    raw = infer_request(request_with(raw=values.tobytes())).inputs[0]
    typed = infer_request(request_with(uint_contents=values.tolist())).inputs[0]
    assert raw.data.dtype == typed.data.dtype == np.uint8
    np.testing.assert_array_equal(raw.data, typed.data)
    assert raw.data.shape == (1, 2, 2, 3)


def test_parameters_and_outputs_come_through_typed() -> None:
    message = request_with(raw=bytes(12))
    message.parameters["resolution"].int64_param = 64
    message.parameters["flag"].bool_param = True
    message.outputs.add(name="scores").parameters["classification"].int64_param = 3
    parsed = infer_request(message)
    assert parsed.parameters == {"resolution": 64, "flag": True}
    assert parsed.id == "7"
    assert [(o.name, o.classification) for o in parsed.outputs] == [("scores", 3)]


def test_bytes_inputs_raw_length_prefixed_and_typed() -> None:
    raw = b"".join(len(x).to_bytes(4, "little") + x for x in (b"ab", b"cde"))
    assert infer_request(request_with("BYTES", (2,), raw=raw)).inputs[0].data == [b"ab", b"cde"]
    assert infer_request(request_with("BYTES", (2,), bytes_contents=[b"ab", b"cde"])).inputs[0].data == [
        b"ab",
        b"cde",
    ]


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (pb.ModelInferRequest(model_name="m"), "non-empty list"),
        (request_with("UINT9", raw=bytes(12)), "unknown datatype 'UINT9'"),
        (request_with("", raw=bytes(12)), "`datatype` is missing"),
        (request_with(raw=bytes(11)), "11 bytes of raw data"),
        (request_with(uint_contents=[1] * 11), "11 values"),
        (request_with(uint_contents=[256] * 12), "in [0, 255]"),
        (request_with(int_contents=[1] * 12), "contents.uint_contents"),
        (request_with(shape=(1, -2, 2, 3), raw=bytes(12)), "non-negative"),
        (request_with(shape=[1] * 65, raw=bytes(1)), "at most 64"),
        (request_with("FP16", shape=(1,), uint_contents=[1]), "raw_input_contents"),
        (request_with(raw=bytes(12), uint_contents=[1] * 12), "both raw_input_contents and typed"),
        (request_with("BYTES", (2,), raw=b"\x05\x00\x00\x00ab"), "claims 5 bytes; 2 remain"),
    ],
)
def test_malformed_tensors_are_invalid_tensor(message: pb.ModelInferRequest, says: str) -> None:
    with pytest.raises(InvalidTensor) as caught:
        infer_request(message)
    assert says in caught.value.detail


def test_raw_contents_must_cover_every_input() -> None:
    message = request_with(raw=bytes(12))
    message.inputs.add(name="second", datatype="UINT8", shape=[1])
    with pytest.raises(InvalidTensor, match="1 entries for 2 inputs"):
        infer_request(message)


def test_unknown_inputs_and_repeated_outputs_are_refused_by_name() -> None:
    message = request_with(raw=bytes(12))
    message.inputs[0].name = "pixels"
    with pytest.raises(InvalidTensor, match="unknown input 'pixels'"):
        infer_request(message, ("image",))
    message = request_with(raw=bytes(12))
    message.outputs.add(name="scores")
    message.outputs.add(name="scores")
    with pytest.raises(InvalidTensor, match="more than once"):
        infer_request(message)


def test_typed_elements_price_the_conversion() -> None:
    assert typed_elements(request_with(uint_contents=[1] * 12)) == 12
    assert typed_elements(request_with(raw=bytes(12))) == 0


def test_outputs_go_back_raw_as_triton_sends_them() -> None:
    scores = np.array([[0.25, 0.75]], dtype=np.float32)
    top = np.array([[b"0.75:1:b"]], dtype=object)
    response = infer_response(
        "m", "1", "x", [OutputTensor("scores", "FP32", scores, True), OutputTensor("top", "BYTES", top, True)]
    )
    assert (response.model_name, response.model_version, response.id) == ("m", "1", "x")
    assert [list(o.shape) for o in response.outputs] == [[1, 2], [1, 1]]
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], "<f4"), scores.ravel())
    assert response.raw_output_contents[1] == (8).to_bytes(4, "little") + b"0.75:1:b"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidTensor, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidImage, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidParameter, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnsupportedMediaType, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.ModelNotFound, grpc.StatusCode.NOT_FOUND),
        (errors.PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.ImageTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.NotReady, grpc.StatusCode.UNAVAILABLE),
        (errors.StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.ModelLoadFailed, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.InferenceFailed, grpc.StatusCode.INTERNAL),
    ],
)
def test_status_codes_as_triton_answers(error: type[errors.NinServeError], code: grpc.StatusCode) -> None:
    assert status_for(error("x")) == code


def test_refusals_a_retry_can_cure_carry_a_retry_hint() -> None:
    assert dict(retry_metadata(errors.Overloaded.retry_after)) == {
        "retry-after": "1",
        "grpc-retry-pushback-ms": "1000",
    }
    assert retry_metadata(errors.InvalidTensor.retry_after) == ()
