"""KServe V2 (Open Inference Protocol) bodies <-> numpy, with Triton's binary tensor data and
classification extensions. Pure functions over bytes: no model, no settings, no HTTP.

    request = parse_infer_request(body, headers.get("inference-header-content-length"))
    body, json_length = encode_infer_response("nin", "1", request.id, outputs)

A request is a JSON header, optionally followed by the inputs' raw bytes in input order, when the
`Inference-Header-Content-Length` header gives the JSON's length (tritonclient sends binary by
default). An input carries either `data` (nested or flat, row-major) or `parameters.binary_data_size`.
BYTES elements are length-prefixed in binary (uint32 little-endian, then the bytes) and strings
in JSON. Everything malformed raises InvalidTensor, which the HTTP layer turns into a 400.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.core.echo import shown
from app.core.errors import InvalidTensor

BYTES = "BYTES"
# Fixed-size datatypes; binary data is little-endian, as in Triton.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
# Digits of Inference-Header-Content-Length read as a number: any body fits in 15 (int() of a
# 5,000-digit string raises past Python's digit limit; longer ones are a 400 here instead).
MAX_LENGTH_DIGITS = 15
# JSON numbers a datatype accepts, by numpy kind: no silent float -> int truncation, no bools as 0/1.
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
MAX_DIMS = 64  # numpy's own limit on an array's dimensions
# The request `id` is echoed in the response (and in logs): Triton clients send UUIDs (36 chars)
# or trace ids (<= 128); 256 leaves room and keeps the echo small. A 16 MB `id` was held three
# times per request (the body, the parsed string, the response) and took RSS past the budget.
MAX_ID_CHARS = 256
# Strings in `parameters` (request, inputs, outputs) are names and switches such as
# content_type "base64": 1,024 is far above any the protocol defines. Only BYTES `data` may hold
# long strings (encoded images), and those are priced and counted as tensor data.
MAX_PARAMETER_CHARS = 1024
MAX_PARAMETERS = 64  # entries in one `parameters` object, nested objects and lists included


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]  # fixed-size: an array of `shape`; BYTES: the elements, row-major
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool  # raw bytes after the JSON header instead of a JSON `data` list
    classification: int  # > 0: top-k "<score>:<index>:<label>" strings instead of the tensor


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None  # None: every output, binary if `binary_output`
    binary_output: bool  # request parameter `binary_data_output`: the default for outputs
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray  # fixed-size datatypes as they are; BYTES as an object array of bytes
    binary: bool


def json_header_length(header_length: str | None) -> int | None:
    """Inference-Header-Content-Length as a number, or None when absent or unreadable (parsing
    refuses an unreadable length; app/http/v2/price.py then prices the whole body as JSON)."""
    text = (header_length or "").strip()
    plain = text.isascii() and text.isdigit() and 0 < len(text) <= MAX_LENGTH_DIGITS
    return int(text) if plain else None


def parse_infer_request(
    body: bytes, header_length: str | None, input_names: tuple[str, ...] = ()
) -> InferRequest:
    """An infer request body (and its Inference-Header-Content-Length, if any) -> tensors; an
    input not in `input_names` (when given) is refused by name before its fields are read."""
    view = memoryview(body)
    if header_length is None:
        header, tail = view, view[:0]
    else:
        n = json_header_length(header_length)
        if n is None or not 0 < n <= len(body):
            raise InvalidTensor(
                f"Inference-Header-Content-Length {shown(header_length)} must be a number between 1 and "
                f"the body's {len(body)} bytes"
            )
        header, tail = view[:n], view[n:]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:  # its own message is orjson's: say where, in our words
        raise InvalidTensor(f"the inference request header is not valid JSON (at byte {exc.pos})") from None
    if not isinstance(doc, dict):
        raise InvalidTensor("the inference request must be a JSON object with an `inputs` list")
    parameters = _parameters(doc.get("parameters"), "the request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidTensor("`inputs` must be a non-empty list of tensors")
    inputs, used = [], 0
    for raw in raw_inputs:
        name = raw.get("name") if isinstance(raw, dict) else None
        if input_names and isinstance(name, str) and name and name not in input_names:
            takes = ", ".join(map(repr, input_names))
            count = "one input" if len(input_names) == 1 else f"{len(input_names)} inputs"
            raise InvalidTensor(f"unknown input {shown(name)}; the model takes {count}, {takes}")
        tensor, size = _parse_input(raw, tail[used:])
        inputs.append(tensor)
        used += size
    if used != len(tail):
        raise InvalidTensor(f"{len(tail) - used} bytes of binary data follow the JSON, claimed by no input")
    if len({t.name for t in inputs}) != len(inputs):
        raise InvalidTensor("an input name appears more than once")
    binary_output = _flag(parameters.get("binary_data_output", False), "binary_data_output")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidTensor("`id` must be a string")
    if request_id is not None and len(request_id) > MAX_ID_CHARS:
        raise InvalidTensor(
            f"`id` is over the limit of {MAX_ID_CHARS} characters ({len(request_id)} characters)"
        )
    return InferRequest(
        request_id, inputs, _parse_outputs(doc.get("outputs"), binary_output), binary_output, parameters
    )


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidTensor(f"`parameters` of {where} must be a JSON object")
    _check_strings(value, f"`parameters` of {where}", [0])
    return value


def _check_strings(value: Any, where: str, seen: list[int]) -> None:
    """Every key and string in a `parameters` value within MAX_PARAMETER_CHARS, at most
    MAX_PARAMETERS entries in all: what is echoed or logged stays small."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        seen[0] += 1
        if seen[0] > MAX_PARAMETERS:
            raise InvalidTensor(f"{where} has more than {MAX_PARAMETERS} entries")
        for text in (key, item):
            if isinstance(text, str) and len(text) > MAX_PARAMETER_CHARS:
                raise InvalidTensor(
                    f"{where} holds a string over the limit of {MAX_PARAMETER_CHARS} characters "
                    f"({len(text)} characters)"
                )
        if isinstance(item, dict | list):
            _check_strings(item, where, seen)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidTensor(f"parameter `{name}` must be true or false")
    return value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidTensor(f"{name} must be a non-negative integer, got {shown(value)}")
    return value


def _parse_input(raw: Any, tail: memoryview) -> tuple[InputTensor, int]:
    """One input and how many bytes of the binary tail it took."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InvalidTensor("every input must be an object with a `name`, `datatype`, `shape` and data")
    name, datatype, shape = raw["name"], raw.get("datatype"), raw.get("shape")
    where = f"input {shown(name)}"  # in messages: the name, cut short
    if not isinstance(datatype, str) or (datatype != BYTES and datatype not in DATATYPES):
        known = ", ".join([*DATATYPES, BYTES])
        what = "`datatype` is missing" if datatype is None else f"unknown datatype {shown(datatype)}"
        raise InvalidTensor(f"{where}: {what}; use one of {known}")
    if not isinstance(shape, list):
        raise InvalidTensor(f"{where}: `shape` must be a list of dimensions")
    if len(shape) > MAX_DIMS:
        raise InvalidTensor(f"{where}: `shape` has {len(shape)} dimensions; at most {MAX_DIMS}")
    dims = tuple(_count(d, f"{where}: every dimension") for d in shape)
    parameters = _parameters(raw.get("parameters"), f"{where}")
    size = parameters.get("binary_data_size")
    data: np.ndarray | list[bytes]
    if size is None:
        if "data" not in raw:
            raise InvalidTensor(f"{where} has neither `data` nor parameters.binary_data_size")
        if datatype == BYTES:
            base64 = parameters.get("content_type") == "base64"
            data = _json_bytes(raw["data"], math.prod(dims), where, base64)
        else:
            data = _json_array(raw["data"], datatype, dims, where)
        return InputTensor(name, datatype, dims, data, parameters), 0
    size = _count(size, f"{where}: binary_data_size")
    if "data" in raw:
        raise InvalidTensor(f"{where} has both `data` and parameters.binary_data_size")
    if size > len(tail):
        raise InvalidTensor(f"{where}: binary_data_size is {size} but only {len(tail)} bytes remain")
    if datatype == BYTES:
        data = binary_bytes(tail[:size], math.prod(dims), where)
    else:
        dtype, count = DATATYPES[datatype], math.prod(dims)
        if size != count * dtype.itemsize:
            raise InvalidTensor(
                f"{where}: {size} bytes of binary data, but {datatype} {shown(list(dims))} needs "
                f"{count * dtype.itemsize}"
            )
        data = np.frombuffer(tail[:size], dtype).reshape(dims)
    return InputTensor(name, datatype, dims, data, parameters), size


def _json_array(data: Any, datatype: str, dims: tuple[int, ...], where: str) -> np.ndarray:
    """Nested or flat JSON numbers -> an array of `dims`, checked for kind and range, no loops."""
    dtype = DATATYPES[datatype]
    try:
        values = np.asarray(data)
    except (ValueError, OverflowError):
        raise InvalidTensor(f"{where}: `data` is ragged or not numeric") from None
    if values.size != math.prod(dims):
        raise InvalidTensor(
            f"{where}: `data` has {values.size} values but shape {shown(list(dims))} needs {math.prod(dims)}"
        )
    if values.size:
        if values.dtype.kind not in _JSON_KINDS[dtype.kind] or (dtype.kind != "b" and _has_bools(data)):
            raise InvalidTensor(f"{where}: {datatype} `data` must hold {_kind_name(dtype)} only")
        if dtype.kind in "iu":
            limits = np.iinfo(dtype)
            if values.min() < limits.min or values.max() > limits.max:
                raise InvalidTensor(f"{where}: {datatype} values must be in [{limits.min}, {limits.max}]")
    return values.astype(dtype.newbyteorder("="), copy=False).reshape(dims)


def _has_bools(data: Any) -> bool:
    """Whether true/false hide among numbers (numpy reads [1, true] as [1, 1]): the values written
    back by orjson, ~10x faster than a Python loop; numbers alone never spell "true" or "false"."""
    text = orjson.dumps(data)
    return b"true" in text or b"false" in text


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "true/false", "u": "integers", "i": "integers"}.get(dtype.kind, "numbers")


def _json_bytes(data: Any, count: int, where: str, base64: bool) -> list[bytes]:
    """JSON strings -> BYTES elements: UTF-8, or base64 when parameters.content_type is "base64"
    (raw image bytes cannot travel as JSON strings otherwise)."""
    try:
        items = np.asarray(data, dtype=object).ravel().tolist() if isinstance(data, list) else [data]
    except ValueError:
        raise InvalidTensor(f"{where}: `data` is ragged") from None
    if len(items) != count:
        raise InvalidTensor(f"{where}: `data` has {len(items)} elements but its shape needs {count}")
    if not all(isinstance(item, str) for item in items):
        raise InvalidTensor(f"{where}: BYTES `data` must hold strings")
    if not base64:
        return [item.encode() for item in items]
    try:
        return [binascii.a2b_base64(item, strict_mode=True) for item in items]
    except binascii.Error:
        raise InvalidTensor(f"{where}: `data` is not valid base64") from None


def binary_bytes(chunk: memoryview, count: int, where: str) -> list[bytes]:
    """Length-prefixed BYTES elements (Triton's serialisation) -> their bytes."""
    items: list[bytes] = []
    pos, end = 0, len(chunk)
    while pos < end and len(items) < count:
        if pos + 4 > end:
            raise InvalidTensor(f"{where}: BYTES data ends inside an element's length prefix")
        length = int.from_bytes(chunk[pos : pos + 4], "little")
        pos += 4
        if pos + length > end:
            raise InvalidTensor(f"{where}: a BYTES element claims {length} bytes; {end - pos} remain")
        items.append(bytes(chunk[pos : pos + length]))
        pos += length
    if len(items) != count or pos != end:
        raise InvalidTensor(f"{where}: BYTES data is not exactly {count} length-prefixed elements")
    return items


def _parse_outputs(raw: Any, binary_default: bool) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidTensor("`outputs` must be a list of {name, parameters} objects")
    outputs = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidTensor("every requested output must be an object with a `name`")
        name = item["name"]
        parameters = _parameters(item.get("parameters"), f"output {shown(name)}")
        binary = _flag(parameters.get("binary_data", binary_default), f"{shown(name)}.binary_data")
        k = _count(parameters.get("classification", 0), f"output {shown(name)}: classification")
        outputs.append(RequestedOutput(name, binary, k))
    if len({o.name for o in outputs}) != len(outputs):
        raise InvalidTensor("an output is requested more than once")
    return outputs


def classification(scores: np.ndarray, k: int, labels: Sequence[str]) -> np.ndarray:
    """scores [N, K] -> object [N, min(k, K)] of b"<score>:<index>:<label>", best first.

    Ties keep the lower index first, as v1's `top`. The score is the shortest repr of the float32
    widened to float64, so it reads back to exactly the number v1's JSON has (Triton prints six
    decimals instead)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(scores, order, axis=1)
    out = np.empty(order.shape, dtype=object)
    for i, (indices, row) in enumerate(zip(order.tolist(), values.tolist(), strict=True)):
        out[i] = [f"{v!r}:{j}:{labels[j]}".encode() for v, j in zip(row, indices, strict=True)]
    return out


def encode_infer_response(
    model_name: str, model_version: str, request_id: str | None, outputs: list[OutputTensor]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it (the value
    of Inference-Header-Content-Length); None when the body is all JSON."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.data.shape)}
        if out.binary:
            blob = _to_binary(out)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _to_json(out)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request_id is not None:
        doc["id"] = request_id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _to_json(out: OutputTensor) -> Any:
    flat = out.data.ravel()
    if out.datatype == BYTES:
        return [item.decode() for item in flat.tolist()]
    if flat.dtype.kind == "f" and flat.dtype.itemsize == 2:  # orjson has no float16
        return flat.tolist()
    return np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))  # orjson writes it natively


def _to_binary(out: OutputTensor) -> bytes:
    if out.datatype == BYTES:
        return b"".join(len(item).to_bytes(4, "little") + item for item in out.data.ravel().tolist())
    return np.ascontiguousarray(out.data, dtype=DATATYPES[out.datatype]).tobytes()
