"""Evaluate an exported ONNX artifact with ONNX Runtime on the held-out validation split.

    ninserve eval --model model/artifacts/nin-cifar10.onnx --data ../shared/data/cifar10-jpeg-train.zip

The split is rebuilt from the `val_split` facts stored in the artifact, so the number measured
here is the one the model card quotes. Needs onnxruntime, numpy and Pillow, not torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.data import LabeledImages, load_dataset, split_train_val


@dataclass
class EvalReport:
    top1: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    classes: list[str]
    count: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def open_session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def artifact_metadata(session: ort.InferenceSession) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


def predict(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """uint8 [N, H, W, 3] -> softmax scores [N, K]."""
    parts = [
        session.run(["scores"], {"image": images[i : i + batch_size]})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts)


def load_split(meta: dict[str, str], data_path: Path, split: str = "val") -> LabeledImages:
    """The images an artifact is judged on: `val` rebuilds its own held-out split from the
    `val_split` facts it carries; `test` reads a `test/` split or `test_batch` if the data has one."""
    data = load_dataset(data_path, "test" if split == "test" else "train", int(meta["native_size"]))
    classes = json.loads(meta["classes"])
    if data.classes != classes:
        raise SystemExit(f"data classes {data.classes} differ from the model's {classes}")
    if split == "val":
        facts = json.loads(meta["val_split"])
        _, val_idx = split_train_val(data.labels, facts["val_size"], facts["seed"])
        data = data.subset(val_idx)
    return data


def evaluate(session: ort.InferenceSession, data: LabeledImages) -> EvalReport:
    """Top-1, per-class accuracy and confusion matrix of the artifact on `data`."""
    predicted = predict(session, data.images).argmax(1)
    k = len(data.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (data.labels, predicted), 1)
    per_class = {c: float(confusion[i, i] / max(1, confusion[i].sum())) for i, c in enumerate(data.classes)}
    top1 = float((predicted == data.labels).mean())
    return EvalReport(top1, per_class, confusion.tolist(), data.classes, len(data))
