"""app/core/engine.py: the artifact contract, provider selection, warm-up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from app.core import engine as engine_module
from app.core.engine import (
    CPU_EP,
    CUDA_EP,
    DeviceUnavailable,
    Engine,
    ModelLoadError,
    cuda_problem,
    require_device,
    select_providers,
)
from tests.app.helpers import CLASSES, build_tiny_model, pattern


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Engine:
    return Engine(tiny_model, device="cpu", intra_op_threads=1)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_info_comes_from_the_metadata(engine: Engine) -> None:
    info = engine.info
    assert info.classes == tuple(CLASSES) and info.native_size == 32 and info.version == "tiny-0001"
    assert info.val_top1 == pytest.approx(0.1) and info.name == "tiny"
    assert info.inputs[0]["name"] == "image" and info.inputs[0]["dtype"] == "tensor(uint8)"
    assert {o["name"] for o in info.outputs} == {"scores", "confidence_maps"}
    assert engine.provider == CPU_EP and engine.device == "cpu"


def test_run_obeys_the_contract(engine: Engine) -> None:
    images = np.stack([pattern(i) for i in range(3)])
    scores, maps = engine.run(images)
    assert scores.shape == (3, 10) and scores.dtype == np.float32
    assert maps.shape == (3, 10, 8, 8)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(softmax(maps.mean(axis=(2, 3))), scores, rtol=1e-4, atol=1e-6)
    _, big = engine.run(np.stack([pattern(0, 64)]))
    assert big.shape == (1, 10, 16, 16)


def scores_of_one_row(path: Path, source: Path) -> Path:
    """The tiny model, but its scores averaged over the batch: [1, K] whatever N, which ONNX
    Runtime accepts (the declared N is symbolic) and only a run with N > 1 shows."""
    model = onnx.load(source)
    graph = model.graph
    softmax = next(node for node in graph.node if node.op_type == "Softmax")
    softmax.output[0] = "scores_per_image"
    graph.node.append(
        onnx.helper.make_node("ReduceMean", ["scores_per_image"], ["scores"], axes=[0], keepdims=1)
    )
    onnx.save(model, path)
    return path


def test_warmup_checks_shapes(engine: Engine, tiny_model: Path, tmp_path: Path) -> None:
    engine.warmup((1, 4))  # the contract's shapes pass
    bad = Engine(scores_of_one_row(tmp_path / "bad.onnx", tiny_model), device="cpu", intra_op_threads=1)
    bad.warmup((1,))  # one image: [1, K] is right by chance
    with pytest.raises(
        ModelLoadError, match=r"got scores \(1, 10\) .* for 4 images of 32x32; expected \[4,10\]"
    ):
        bad.warmup((1, 4))


def test_provider_selection() -> None:
    assert select_providers("cpu") == [CPU_EP]
    auto = select_providers("auto")
    assert auto[-1] == CPU_EP
    if CUDA_EP not in str(auto):
        with pytest.raises(ModelLoadError, match="cuda"):
            select_providers("cuda")


class FakeDriver:
    """libcuda.so.1 stand-in: cuInit's status and the device count it reports."""

    def __init__(self, status: int = 0, count: int = 1) -> None:
        self.status, self.count = status, count

    def cuInit(self, flags: int) -> int:  # noqa: N802 (the driver API's name)
        return self.status

    def cuDeviceGetCount(self, out) -> int:  # noqa: N802
        out._obj.value = self.count
        return 0


def test_cuda_requested_from_a_cpu_build_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU_EP])
    with pytest.raises(DeviceUnavailable, match=r"NINSERVE_DEVICE=cuda but .*no CUDAExecutionProvider"):
        require_device("cuda")
    with pytest.raises(DeviceUnavailable, match="NINSERVE_DEVICE=auto to fall back"):
        select_providers("cuda")
    require_device("auto")  # auto and cpu never refuse to start
    require_device("cpu")


def test_cuda_provider_without_driver_or_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, CPU_EP])

    def no_driver(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(engine_module.ctypes, "CDLL", no_driver)
    assert "driver (libcuda.so.1) is not visible" in (cuda_problem() or "")
    monkeypatch.setattr(engine_module.ctypes, "CDLL", lambda name: FakeDriver(status=100))
    assert "no usable GPU (cuInit status 100)" in (cuda_problem() or "")
    monkeypatch.setattr(engine_module.ctypes, "CDLL", lambda name: FakeDriver(count=0))
    with pytest.raises(DeviceUnavailable, match="no usable GPU"):
        require_device("cuda")
    monkeypatch.setattr(engine_module.ctypes, "CDLL", lambda name: FakeDriver())
    assert cuda_problem() is None
    assert select_providers("cuda", 1)[0] == (CUDA_EP, {"device_id": 1})


def test_auto_falls_back_to_cpu_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, CPU_EP])
    monkeypatch.setattr(engine_module.ctypes, "CDLL", lambda name: FakeDriver(count=0))
    with caplog.at_level("WARNING", logger="ninserve"):
        assert select_providers("auto") == [CPU_EP]
    (record,) = [r for r in caplog.records if r.name == "ninserve"]
    assert record.levelname == "WARNING" and "serving on the CPU" in record.getMessage()


def test_missing_or_corrupt_files_fail_to_load(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        Engine(tmp_path / "missing.onnx", device="cpu")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        Engine(junk, device="cpu")


def _rewrite(src: Path, dst: Path, edit) -> Path:
    model = onnx.load(src)
    edit(model)
    onnx.save(model, dst)
    return dst


def test_contract_violations_fail_fast(tiny_model: Path, tmp_path: Path) -> None:
    def drop_classes(model):
        kept = [p for p in model.metadata_props if p.key != "classes"]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)

    with pytest.raises(ModelLoadError, match="classes"):
        Engine(_rewrite(tiny_model, tmp_path / "a.onnx", drop_classes), device="cpu")

    def rename_output(model):
        model.graph.output[0].name = "probabilities"
        for node in model.graph.node:
            node.output[:] = ["probabilities" if o == "scores" else o for o in node.output]

    with pytest.raises(ModelLoadError, match="outputs"):
        Engine(_rewrite(tiny_model, tmp_path / "b.onnx", rename_output), device="cpu")

    duplicate = build_tiny_model(tmp_path / "c.onnx", classes=["x"] * 10)
    with pytest.raises(ModelLoadError, match="unique"):
        Engine(duplicate, device="cpu")
    assert json.loads(onnx.load(tiny_model).metadata_props[0].value)  # the fixture itself is intact


def test_arena_policy(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`shrink` hands the arena back only after runs larger than a batch of native-size images."""
    off = Engine(tiny_model, device="cpu", intra_op_threads=1, arena="off")
    assert off._session.get_session_options().enable_cpu_mem_arena is False
    shrink = Engine(tiny_model, device="cpu", intra_op_threads=1, arena="shrink", shrink_above_images=4)
    assert shrink._session.get_session_options().enable_cpu_mem_arena is True
    seen: list[object] = []
    session = shrink._session

    class Recording:
        def run(self, outputs, feeds, run_options=None):
            seen.append(run_options)
            return session.run(outputs, feeds, run_options)

    monkeypatch.setattr(shrink, "_session", Recording())
    shrink.run(np.zeros((4, 32, 32, 3), np.uint8))  # a full batch at the native size: kept
    shrink.run(np.zeros((1, 64, 64, 3), np.uint8))  # as many pixels: kept
    shrink.run(np.zeros((1, 256, 256, 3), np.uint8))  # larger: shrunk after the run
    assert seen[:2] == [None, None]
    assert seen[2].get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    keep = Engine(tiny_model, device="cpu", intra_op_threads=1, arena="keep")
    assert keep._shrink_above is None
