import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import model.export as export_module


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def session(tiny_artifact):
    return ort.InferenceSession(str(tiny_artifact), providers=["CPUExecutionProvider"])


def test_artifact_passes_the_checker_and_carries_metadata(tiny_artifact):
    proto = onnx.load(str(tiny_artifact))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == ["blue", "green", "red"]
    assert meta["native_size"] == "32"
    for key in (
        "dataset",
        "val_top1",
        "model_version",
        "producer_command",
        "export_date",
        "source_commit",
        "mean",
        "std",
        "val_split",
    ):
        assert meta[key], key
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)


@pytest.mark.parametrize("shape", [(1, 32, 32, 3), (5, 32, 32, 3), (2, 48, 64, 3)])
def test_scores_are_the_softmax_of_the_mean_of_the_maps(session, shape):
    pixels = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    scores, maps = session.run(["scores", "confidence_maps"], {"image": pixels})
    assert scores.shape == (shape[0], 3)
    assert maps.shape == (shape[0], 3, shape[1] // 4, shape[2] // 4)
    np.testing.assert_allclose(softmax(maps.mean(axis=(2, 3))), scores, atol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_export_refuses_an_artifact_that_fails_parity(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "PARITY_ATOL", -1.0)
    out = tmp_path / "refused.onnx"
    with pytest.raises(SystemExit, match="export refused"):
        export_module.export(tiny_run[0] / "checkpoint.pt", out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_flip_tta_is_baked_into_the_graph_and_keeps_the_identity(tiny_run, tmp_path):
    result = export_module.export(tiny_run[0] / "checkpoint.pt", tmp_path / "tta.onnx", flip_tta=True)
    assert result.max_abs_diff_scores < export_module.PARITY_ATOL
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(2).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    scores, maps = sess.run(None, {"image": pixels})
    mirrored_scores, mirrored_maps = sess.run(None, {"image": pixels[:, :, ::-1].copy()})
    np.testing.assert_allclose(scores, mirrored_scores, atol=1e-5)  # flip-invariant by construction
    np.testing.assert_allclose(maps, mirrored_maps[..., ::-1], atol=1e-4)
    np.testing.assert_allclose(softmax(maps.mean(axis=(2, 3))), scores, atol=1e-5)


def test_model_version_depends_on_the_model_not_on_the_checkout(tiny_run, tiny_artifact, tmp_path):
    proto = onnx.load(str(tiny_artifact))
    assert not any(node.metadata_props for node in proto.graph.node)  # no stack traces, no local paths
    again = export_module.export(tiny_run[0] / "checkpoint.pt", tmp_path / "again.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert again.model_version == meta["model_version"]
