"""An ONNX file checked before it is priced or loaded: parsed under limits, without onnx or ORT.

    facts = inspect_artifact(path, max_bytes=plan.models, max_resolution=256)

ONNX Runtime reads a whole file (and its external data) into memory before it can say what is
wrong with it, so a truncated file was priced as if it would load ("needs ~31 MB"), external data
could name files outside the version's folder, and nothing bounded `native_size`. This walks the
protobuf wire format of ModelProto (a few fields: the graph's tensors and the metadata) over a
memory map, so it costs page reads, not a copy, and says what is wrong before anything is
charged: not ONNX (truncated or corrupt), external data outside the folder or missing, more bytes
than the models' memory could ever hold, unreadable `classes`, `native_size` not a multiple of 4
or beyond `max_resolution`. A tensor whose *shape* is a constant (ConstantOfShape of an
initializer) counts with the bytes it will fill, so an 806-byte file that expands to 1.3 GB is
refused here.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from app.core.engine import ModelLoadError

# ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto field numbers (onnx.proto3)
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_SPARSE = 1, 5, 11, 12, 15
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_TENSOR_DIMS, _TENSOR_DTYPE, _TENSOR_INT64, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 7, 8, 9
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14
_MAX_DEPTH = 16  # nested graphs (Loop and If bodies)
_INT64 = 7


class NotOnnx(ModelLoadError):
    """The bytes are not an ONNX model (truncated, corrupt, or another format)."""


@dataclass(frozen=True, slots=True)
class ArtifactFacts:
    file_bytes: int
    external_bytes: int  # external data files, each counted once
    expanded_bytes: int  # what constant-shaped ConstantOfShape nodes will fill
    classes: tuple[str, ...]
    native_size: int

    @property
    def total_bytes(self) -> int:
        return self.file_bytes + self.external_bytes + self.expanded_bytes


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotOnnx("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(buf: memoryview) -> list[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) of one message: a varint's int, a LEN field's bytes."""
    out: list[tuple[int, int, memoryview | int]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise NotOnnx("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise NotOnnx(f"a field runs {pos + length - len(buf)} bytes past the end")
            out.append((number, wire, buf[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise NotOnnx("truncated fixed-size field")
        else:
            raise NotOnnx(f"wire type {wire}")
    return out


def _text(value: memoryview | int) -> str:
    if isinstance(value, int):
        raise NotOnnx("a string field holds a number")
    return bytes(value).decode("utf-8", "replace")


def _pairs(buf: memoryview) -> tuple[str, str]:
    key = value = ""
    for number, _, v in fields(buf):
        if number == 1:
            key = _text(v)
        elif number == 2:
            value = _text(v)
    return key, value


class _Walk:
    def __init__(self, folder: Path) -> None:
        self.folder = os.path.realpath(folder)
        self.external: dict[str, int] = {}  # resolved path -> bytes
        self.expanded = 0
        self.shapes: dict[str, int] = {}  # int64 initializers: name -> product of their values

    def graph(self, buf: memoryview, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise ModelLoadError(f"graphs nested deeper than {_MAX_DEPTH}")
        items = fields(buf)
        for number, _, value in items:
            if number in (_GRAPH_INITIALIZER, _GRAPH_SPARSE) and not isinstance(value, int):
                self.tensor(value)
        for number, _, value in items:
            if number == _GRAPH_NODE and not isinstance(value, int):
                self.node(value, depth)

    def node(self, buf: memoryview, depth: int) -> None:
        inputs, outputs, op = [], [], ""
        constant: int | None = None  # a Constant node's int64 value, as a shape's element count
        for number, _, value in fields(buf):
            if number == _NODE_INPUT:
                inputs.append(_text(value))
            elif number == _NODE_OUTPUT:
                outputs.append(_text(value))
            elif number == _NODE_OP:
                op = _text(value)
            elif number == _NODE_ATTRIBUTE and not isinstance(value, int):
                for a_number, _, a_value in fields(value):
                    if isinstance(a_value, int):
                        continue
                    if a_number in (_ATTR_T, _ATTR_TENSORS):
                        constant = self.tensor(a_value)
                    elif a_number in (_ATTR_G, _ATTR_GRAPHS):
                        self.graph(a_value, depth + 1)
        if op == "Constant" and constant is not None and outputs:
            self.shapes[outputs[0]] = constant
        if op == "ConstantOfShape" and inputs and inputs[0] in self.shapes:
            self.expanded += self.shapes[inputs[0]] * 8  # up to 8 bytes an element

    def tensor(self, buf: memoryview) -> int | None:
        """Checks external data; returns the product of a small int64 tensor's values (a shape)."""
        dims: list[int] = []
        dtype, name, raw, ints = 0, "", b"", []
        external: dict[str, str] = {}
        stored_externally = False
        for number, _, value in fields(buf):
            if number == _TENSOR_DIMS:
                dims += [value] if isinstance(value, int) else _packed(value)
            elif number == _TENSOR_DTYPE and isinstance(value, int):
                dtype = value
            elif number == _TENSOR_NAME:
                name = _text(value)
            elif number == _TENSOR_RAW and not isinstance(value, int):
                raw = bytes(value[:64])  # a shape is a few int64s; no more is read
            elif number == _TENSOR_INT64:
                ints += [value] if isinstance(value, int) else _packed(value)
            elif number == _TENSOR_EXTERNAL and not isinstance(value, int):
                key, text = _pairs(value)
                external[key] = text
            elif number == _TENSOR_LOCATION and value == 1:
                stored_externally = True
        if stored_externally or external:
            self.external_file(external.get("location", ""))
            return None
        if dtype != _INT64 or len(dims) > 1:
            return None
        values = ints or [
            int.from_bytes(raw[i : i + 8], "little", signed=True) for i in range(0, len(raw), 8)
        ]
        if not values:
            return None
        product = 1
        for v in values:
            product *= max(v, 0)
        if name:
            self.shapes[name] = product
        return product

    def external_file(self, location: str) -> None:
        where = os.path.realpath(os.path.join(self.folder, location))
        if not location or not where.startswith(self.folder + os.sep):
            raise ModelLoadError(f"external data {location!r} is not a file inside the version's folder")
        if where not in self.external:
            try:
                self.external[where] = os.stat(where).st_size
            except OSError as exc:
                raise ModelLoadError(f"external data {location!r}: {exc.strerror or exc}") from None


def _packed(value: memoryview) -> list[int]:
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def inspect_artifact(path: Path, *, max_bytes: int, max_resolution: int) -> ArtifactFacts:
    """What loading `path` will take, from its bytes alone; ModelLoadError (NotOnnx for a file
    that is not ONNX) says what is wrong. `max_bytes`: more than this can never be loaded."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelLoadError(
            f"{path.name} is {size / 2**20:.0f} MB, more than the {max_bytes / 2**20:.0f} MB for models"
        )
    if size == 0:
        raise NotOnnx(f"{path.name} is empty: not an ONNX model")
    walk = _Walk(path.parent)
    metadata: dict[str, str] = {}
    with open(path, "rb") as f:
        # Not closed here: the views below point into it; it closes when the last one goes.
        buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    try:
        top = fields(buf)
        graphs = [v for n, _, v in top if n == _MODEL_GRAPH and not isinstance(v, int)]
        if not graphs:
            raise NotOnnx("no graph")
        for n, _, v in top:
            if n == _MODEL_METADATA and not isinstance(v, int):
                key, value = _pairs(v)
                metadata[key] = value
        walk.graph(graphs[0], 0)
        _contract(graphs[0], path)
    except NotOnnx as exc:
        raise NotOnnx(f"{path.name} is not a valid ONNX model (truncated or corrupt: {exc})") from None
    facts = ArtifactFacts(
        file_bytes=size,
        external_bytes=sum(walk.external.values()),
        expanded_bytes=walk.expanded,
        classes=_classes(metadata, path),
        native_size=_native_size(metadata, path, max_resolution),
    )
    if facts.total_bytes > max_bytes:
        raise ModelLoadError(
            f"{path.name} needs at least {facts.total_bytes / 2**20:.0f} MB (file, external data and "
            f"constant-shaped tensors), more than the {max_bytes / 2**20:.0f} MB for models"
        )
    return facts


def _contract(graph: memoryview, path: Path) -> None:
    """The artifact contract's names, before any price is quoted (the engine checks types and
    ranks once the session exists)."""
    names: dict[int, list[str]] = {_GRAPH_INPUT: [], _GRAPH_OUTPUT: []}
    for number, _, value in fields(graph):
        if number in names and not isinstance(value, int):
            names[number] += [_text(v) for n, _, v in fields(value) if n == 1]
    if "image" not in names[_GRAPH_INPUT] or not {"scores", "confidence_maps"} <= set(names[_GRAPH_OUTPUT]):
        raise ModelLoadError(
            f"{path.name} breaks the artifact contract: expected input 'image' and outputs 'scores' and "
            f"'confidence_maps', got inputs {names[_GRAPH_INPUT][:4]} and outputs {names[_GRAPH_OUTPUT][:4]}"
        )


def _classes(metadata: dict[str, str], path: Path) -> tuple[str, ...]:
    try:
        classes = json.loads(metadata["classes"])
    except (KeyError, ValueError, RecursionError):
        raise ModelLoadError(f"{path.name}: metadata 'classes' missing or not a JSON list") from None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ModelLoadError(f"{path.name}: metadata 'classes' must be a non-empty JSON list of names")
    return tuple(classes)


def _native_size(metadata: dict[str, str], path: Path, max_resolution: int) -> int:
    try:
        native = int(metadata.get("native_size", "32"))
    except ValueError:
        raise ModelLoadError(f"{path.name}: metadata 'native_size' is not an integer") from None
    if native < 4 or native % 4 or native > max_resolution:
        raise ModelLoadError(
            f"{path.name}: native_size {native} must be a multiple of 4 between 4 and max_resolution "
            f"{max_resolution} (NINSERVE_MAX_RESOLUTION)"
        )
    return native
