"""The committed artifact satisfies the contract other components and clients rely on."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ARTIFACT = Path(__file__).parents[2] / "model" / "artifacts" / "nin-cifar10.onnx"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def proto():
    return onnx.load(str(ARTIFACT))


def test_graph_contract(proto):
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    (inp,) = proto.graph.input
    assert inp.name == "image"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, True, True, False] and dims[3].dim_value == 3
    assert [o.name for o in proto.graph.output] == ["scores", "confidence_maps"]
    assert ARTIFACT.stat().st_size < 8_000_000


def test_metadata(proto):
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == CIFAR10
    assert meta["native_size"] == "32"
    assert 0.0 < float(meta["val_top1"]) <= 1.0
    assert len(meta["model_version"]) == 12
    assert int(meta["parameters"]) <= 1_000_000
    for key in ("dataset", "producer_command", "export_date", "source_commit", "mean", "std"):
        assert meta[key], key


def test_runs_at_native_and_larger_sizes_with_the_softmax_identity():
    session = ort.InferenceSession(str(ARTIFACT), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 32, 32, 3), (7, 32, 32, 3), (2, 64, 96, 3)]:
        scores, maps = session.run(None, {"image": rng.integers(0, 256, size=shape, dtype=np.uint8)})
        assert maps.shape == (shape[0], 10, shape[1] // 4, shape[2] // 4)
        logits = maps.mean(axis=(2, 3))
        expected = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(expected / expected.sum(1, keepdims=True), scores, atol=1e-5)


def test_val_top1_is_the_onnx_runtime_figure_eval_reproduces(proto):
    """GET /v1/models reports the artifact's val_top1: the figure `ninserve eval` measures and the
    model card quotes (model/card/eval.json), not the training loop's bf16 figure."""
    meta = {p.key: p.value for p in proto.metadata_props}
    card = json.loads((ARTIFACT.parents[1] / "card" / "eval.json").read_text())
    assert meta["val_top1"] == f"{card['top1']:.4f}"
    assert meta["val_top1_source"].startswith("ninserve eval: ONNX Runtime")
    int8 = {
        p.key: p.value for p in onnx.load(str(ARTIFACT.with_name("nin-cifar10-int8.onnx"))).metadata_props
    }
    card_text = (ARTIFACT.parents[1] / "MODEL_CARD.md").read_text()
    assert (
        f"**{float(int8['val_top1']) * 100:.2f} %**" in card_text
        and "ONNX Runtime" in int8["val_top1_source"]
    )
