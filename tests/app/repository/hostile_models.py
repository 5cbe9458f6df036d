"""Contract-compatible models that attack the load itself: a warm-up that never ends, a graph that
fills gigabytes from a few bytes, external data outside the folder, an oversized native size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.app.helpers import build_tiny_model


def _with_extra(path: Path, extra_nodes: list, extra_inits: list, scalar: str) -> Path:
    """The tiny model whose logits get `0 * scalar` added: the extra nodes run on every run."""
    import onnx
    from onnx import helper, numpy_helper

    build_tiny_model(path)
    model = onnx.load(path)
    graph = model.graph
    for node in graph.node:
        if node.op_type == "ReduceMean":
            node.output[0] = "logits0"
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    softmax = next(i for i, n in enumerate(graph.node) if n.op_type == "Softmax")
    tail = [
        helper.make_node("Mul", [scalar, "zero"], ["nothing"]),
        helper.make_node("Add", ["logits0", "nothing"], ["logits"]),
    ]
    for offset, node in enumerate(extra_nodes + tail):
        graph.node.insert(softmax + offset, node)
    graph.initializer.extend([*extra_inits, zero])
    onnx.save(model, path)
    return path


def endless_loop(path: Path, steps: int = 10**9) -> Path:
    """A Loop of `steps` iterations, each adding 1 to a float: warm-up never ends on its own."""
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, []),
        ],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    inits = [
        numpy_helper.from_array(np.array(steps, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "go"),
        numpy_helper.from_array(np.array(0.0, np.float32), "start"),
    ]
    loop = helper.make_node("Loop", ["trips", "go", "start"], ["counted"], body=body)
    return _with_extra(path, [loop], inits, "counted")


def expanding(path: Path, elements: int, *, from_initializer: bool, hidden: bool = False) -> Path:
    """ConstantOfShape of `elements` floats, summed: a few hundred bytes that fill 4 x elements.
    Its shape from an initializer or a Constant node is visible before loading; passed through
    an Identity (`hidden`), only the run shows it."""
    from onnx import helper, numpy_helper

    shape = np.array([elements], np.int64)
    nodes, inits = [], []
    source = "shape_source" if hidden else "bomb_shape"
    if from_initializer:
        inits.append(numpy_helper.from_array(shape, source))
    else:
        nodes.append(
            helper.make_node("Constant", [], [source], value=numpy_helper.from_array(shape, "ignored"))
        )
    if hidden:
        nodes.append(helper.make_node("Identity", [source], ["bomb_shape"]))
    nodes += [
        helper.make_node("ConstantOfShape", ["bomb_shape"], ["filled"]),
        helper.make_node("ReduceSum", ["filled"], ["total"], keepdims=0),
    ]
    return _with_extra(path, nodes, inits, "total")


def with_metadata(path: Path, **props: str) -> Path:
    import onnx

    build_tiny_model(path)
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props} | props
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, path)
    return path


def external_outside(path: Path, location: str) -> Path:
    """The tiny model with one initializer stored externally at `location` (relative)."""
    import onnx
    from onnx import TensorProto

    build_tiny_model(path)
    model = onnx.load(path)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    onnx.save(model, path)
    return path


def classes_json(classes: list[str]) -> str:
    return json.dumps(classes)


def renamed_output(path: Path) -> Path:
    """The tiny model whose `scores` output is called `probs`: outside the artifact contract."""
    import onnx

    build_tiny_model(path)
    model = onnx.load(path)
    for node in model.graph.node:
        node.output[:] = ["probs" if o == "scores" else o for o in node.output]
    for output in model.graph.output:
        if output.name == "scores":
            output.name = "probs"
    onnx.save(model, path)
    return path
