"""ModelInferRequest / ModelInferResponse (protobuf) <-> the V2 codec's tensors (app/http/v2/codec.py),
so that gRPC requests run through the same checks and the same `infer` as HTTP's.

    parsed = infer_request(message)            # InvalidTensor for anything malformed
    response = infer_response(name, version, parsed.id, outputs)

An input carries its data in `raw_input_contents` (one entry per input, in input order, as
tritonclient sends by default) or in its typed `contents` field (UINT8 in `uint_contents`, BYTES in
`bytes_contents`); never both. Outputs always go back as `raw_output_contents`, as Triton answers:
the clients read it first. Requested outputs take the `classification` parameter (top-k strings).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.core.echo import shown
from app.core.errors import InvalidTensor
from app.grpc.proto import inference_pb2 as pb
from app.http.v2.codec import (
    BYTES,
    DATATYPES,
    MAX_DIMS,
    InferRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    binary_bytes,
)

# The typed field of InferTensorContents for each datatype, and the numpy type it holds.
_TYPED: dict[str, tuple[str, np.dtype]] = {
    "BOOL": ("bool_contents", np.dtype("?")),
    "UINT8": ("uint_contents", np.dtype("u4")),
    "UINT16": ("uint_contents", np.dtype("u4")),
    "UINT32": ("uint_contents", np.dtype("u4")),
    "UINT64": ("uint64_contents", np.dtype("u8")),
    "INT8": ("int_contents", np.dtype("i4")),
    "INT16": ("int_contents", np.dtype("i4")),
    "INT32": ("int_contents", np.dtype("i4")),
    "INT64": ("int64_contents", np.dtype("i8")),
    "FP32": ("fp32_contents", np.dtype("f4")),
    "FP64": ("fp64_contents", np.dtype("f8")),
    BYTES: ("bytes_contents", np.dtype("O")),
}
_FIELDS: tuple[str, ...] = ("bool_contents", "int_contents", "int64_contents", "uint_contents")
_FIELDS += ("uint64_contents", "fp32_contents", "fp64_contents", "bytes_contents")
# What converting typed contents holds per element beyond the message: the widened array, then
# the narrowed copy (UINT8: 4 + 1 bytes); BYTES elements as bytes objects (~40 B each + data).
TYPED_BYTES_PER_ELEMENT = 16


def parameters(fields: Any) -> dict[str, Any]:
    """A protobuf parameter map -> plain values, as HTTP's JSON `parameters` would hold them."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = None if choice is None else getattr(value, choice)
    return out


def typed_elements(message: pb.ModelInferRequest) -> int:
    """Elements sent in typed `contents`, all inputs together: what converting them will cost."""
    return sum(len(getattr(t.contents, f)) for t in message.inputs for f in _FIELDS)


def infer_request(message: pb.ModelInferRequest, input_names: tuple[str, ...] = ()) -> InferRequest:
    """A ModelInferRequest -> the codec's InferRequest; an input not in `input_names` (when given)
    is refused by name, as HTTP refuses it."""
    if not message.inputs:
        raise InvalidTensor("`inputs` must be a non-empty list of tensors")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidTensor(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs: "
            "send every input's data there, or none"
        )
    inputs = []
    for i, tensor in enumerate(message.inputs):
        if input_names and tensor.name and tensor.name not in input_names:
            takes = ", ".join(map(repr, input_names))
            raise InvalidTensor(f"unknown input {shown(tensor.name)}; the model takes {takes}")
        inputs.append(_input(tensor, raw[i] if raw else None))
    if len({t.name for t in inputs}) != len(inputs):
        raise InvalidTensor("an input name appears more than once")
    outputs = [_output(o) for o in message.outputs] or None
    if outputs and len({o.name for o in outputs}) != len(outputs):
        raise InvalidTensor("an output is requested more than once")
    return InferRequest(message.id or None, inputs, outputs, True, parameters(message.parameters))


def _input(tensor: Any, raw: bytes | None) -> InputTensor:
    name, datatype = tensor.name, tensor.datatype
    if not name:
        raise InvalidTensor("every input must have a `name`, `datatype`, `shape` and data")
    where = f"input {shown(name)}"
    if datatype != BYTES and datatype not in DATATYPES:
        known = ", ".join([*DATATYPES, BYTES])
        what = "`datatype` is missing" if not datatype else f"unknown datatype {shown(datatype)}"
        raise InvalidTensor(f"{where}: {what}; use one of {known}")
    if len(tensor.shape) > MAX_DIMS:
        raise InvalidTensor(f"{where}: `shape` has {len(tensor.shape)} dimensions; at most {MAX_DIMS}")
    dims = tuple(tensor.shape)
    if any(d < 0 for d in dims):
        raise InvalidTensor(f"{where}: every dimension must be a non-negative integer, got {list(dims)}")
    count = math.prod(dims)
    typed = [f for f in _FIELDS if len(getattr(tensor.contents, f))]
    if raw is not None:
        if typed:
            raise InvalidTensor(f"{where} has both raw_input_contents and typed `contents`")
        data = _from_raw(raw, datatype, dims, count, where)
    else:
        data = _from_typed(tensor.contents, typed, datatype, dims, count, where)
    return InputTensor(name, datatype, dims, data, parameters(tensor.parameters))


def _from_raw(raw: bytes, datatype: str, dims: tuple[int, ...], count: int, where: str) -> Any:
    if datatype == BYTES:
        return binary_bytes(memoryview(raw), count, where)
    dtype = DATATYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidTensor(
            f"{where}: {len(raw)} bytes of raw data, but {datatype} {list(dims)} needs "
            f"{count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype).reshape(dims)


def _from_typed(
    contents: Any, typed: list[str], datatype: str, dims: tuple[int, ...], count: int, where: str
):
    if datatype not in _TYPED:  # FP16 has no typed field in the protocol
        raise InvalidTensor(f"{where}: {datatype} data must come in raw_input_contents")
    field, wide = _TYPED[datatype]
    if typed and typed != [field]:
        raise InvalidTensor(f"{where}: {datatype} data goes in contents.{field}, not {', '.join(typed)}")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidTensor(
            f"{where}: contents has {len(values)} values but shape {list(dims)} needs {count}"
        )
    if datatype == BYTES:
        return list(values)
    array = np.fromiter(values, dtype=wide, count=count)
    dtype = DATATYPES[datatype].newbyteorder("=")
    if dtype.kind in "iu" and dtype.itemsize < wide.itemsize and count:
        limits = np.iinfo(dtype)
        if array.min() < limits.min or array.max() > limits.max:
            raise InvalidTensor(f"{where}: {datatype} values must be in [{limits.min}, {limits.max}]")
    return array.astype(dtype, copy=False).reshape(dims)


def _output(requested: Any) -> RequestedOutput:
    if not requested.name:
        raise InvalidTensor("every requested output must have a `name`")
    k = parameters(requested.parameters).get("classification", 0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InvalidTensor(
            f"output {shown(requested.name)}: classification must be a non-negative integer, got {shown(k)}"
        )
    return RequestedOutput(requested.name, True, k)


def infer_response(
    model_name: str, model_version: str, request_id: str | None, outputs: list[OutputTensor]
) -> pb.ModelInferResponse:
    """The outputs as raw little-endian bytes, BYTES length-prefixed, as Triton sends them."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id or "")
    for out in outputs:
        response.outputs.add(name=out.name, datatype=out.datatype, shape=out.data.shape)
        if out.datatype == BYTES:
            blob = b"".join(len(item).to_bytes(4, "little") + item for item in out.data.ravel().tolist())
        else:
            blob = np.ascontiguousarray(out.data, dtype=DATATYPES[out.datatype]).tobytes()
        response.raw_output_contents.append(blob)
    return response
