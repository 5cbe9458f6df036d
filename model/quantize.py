"""Static int8 quantization of the artifact for CPU serving (QDQ, per-channel, calibrated).

    ninserve quantize --model repository/c10/1/model.onnx --out repository/c10/1/model-int8.onnx

Weights are quantized per output channel (symmetric int8), activations per tensor (uint8 ranges
from calibration on training-split images, never the validation split). The graph keeps the
artifact's contract: uint8 pixels in, float32 `scores` and `confidence_maps` out, so the server
swaps it in with `NINSERVE_PRECISION=int8` and nothing else changes. Needs onnxruntime, not torch.
Loading, calibration and the check on the validation split each show progress (about a minute).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from tqdm import tqdm

from model.data import LabeledImages, load_dataset, split_train_val
from model.evaluate import evaluate


class _PixelBatches(CalibrationDataReader):
    """Feeds uint8 NHWC calibration batches to the calibrator."""

    def __init__(self, images: np.ndarray, batch_size: int = 64) -> None:
        # Equal batches only: the histogram calibrators stack per-batch outputs and reject a ragged
        # tail. The largest batch up to `batch_size` that divides the count: every image is used.
        batch_size = max(
            d for d in range(1, min(batch_size, max(1, len(images))) + 1) if len(images) % d == 0
        )
        self._batches = iter([images[i : i + batch_size] for i in range(0, len(images), batch_size)])
        self.count = len(images)
        self.progress = tqdm(total=self.count, desc="calibrating", unit="img", disable=None, leave=False)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            self.progress.close()
            return None
        self.progress.update(len(batch))
        return {"image": batch}


def calibration_and_validation(
    meta: dict[str, str], data_path: Path, count: int, seed: int = 0
) -> tuple[np.ndarray, LabeledImages]:
    """`count` training-split images balanced over classes (never validation images) to
    calibrate on, and the artifact's validation split to measure the result on."""
    data = load_dataset(data_path, "train", int(meta["native_size"]))
    facts = json.loads(meta["val_split"])
    train_idx, val_idx = split_train_val(data.labels, facts["val_size"], facts["seed"])
    picked = balanced(data.labels[train_idx], count, seed)
    return data.images[train_idx[picked]], data.subset(val_idx)


def balanced(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` indices (all, if there are fewer), classes taken in turn so each has its share
    (16 of 3 classes: 6, 5, 5), in index order."""
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(int(queue.pop()))
    return np.sort(np.asarray(picked, dtype=np.int64))


def quantize(
    model_path: Path, out: Path, data_path: Path, count: int = 1024, method: str = "percentile"
) -> str:
    """Write the int8 artifact; returns its model_version."""
    started = time.perf_counter()
    source = onnx.load(str(model_path))
    meta = {p.key: p.value for p in source.metadata_props}
    print(f"loading calibration and validation images from {data_path}", flush=True)
    images, val = calibration_and_validation(meta, data_path, count)
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    reader = _PixelBatches(images)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        staged = Path(tmp) / "int8.onnx"
        print(f"[{time.perf_counter() - started:5.1f}s] calibrating ({method}) and quantizing", flush=True)
        quant_pre_process(str(model_path), str(prepared))
        quantize_static(
            str(prepared),
            str(staged),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "MaxPool", "Relu"],
            calibrate_method=calibrate,
            extra_options={"CalibPercentile": 99.999} if method == "percentile" else None,
        )
        proto = onnx.load(str(staged))
    version = hashlib.sha256(proto.graph.SerializeToString()).hexdigest()[:12]
    meta.update(
        {
            "model_version": version,
            "precision": "int8",
            "quantization": json.dumps(
                {
                    "format": "QDQ",
                    "weights": "int8 per-channel symmetric",
                    "activations": "uint8 per-tensor",
                    "calibration": method,
                    "calibration_images": reader.count,
                    "source_version": meta["model_version"],
                }
            ),
        }
    )
    print(f"[{time.perf_counter() - started:5.1f}s] checking on {len(val)} validation images", flush=True)
    report = evaluate(
        ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]), val
    )
    meta["val_top1"] = f"{report.top1:.4f}"
    meta["val_top1_source"] = f"ninserve quantize: ONNX Runtime CPU, {report.count} held-out images"
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), model_version {version}, calibrated on "
        f"{reader.count} training images ({method}); val top-1 {report.top1:.4f}"
    )
    return version
