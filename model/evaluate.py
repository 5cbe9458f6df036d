"""Evaluate an exported ONNX artifact with ONNX Runtime on the held-out validation split.

    ninserve eval --model model/artifacts/nin-cifar10.onnx --data ../shared/data/cifar10-jpeg-train.zip

The split is rebuilt from the `val_split` facts stored in the artifact, so the number measured
here is the one the model card quotes. `--write-metadata` stamps it into the artifact's
`val_top1`, so GET /v1/models reports the figure this command reproduces. Needs onnxruntime,
numpy and Pillow, not torch (stamping the metadata needs onnx, from the `train` extra).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from model.data import LabeledImages, load_dataset, split_train_val
from model.errors import DataError


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
    if not Path(model_path).is_file():
        raise DataError(f"no model at {model_path}: give --model an exported .onnx artifact")
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def artifact_metadata(session: ort.InferenceSession) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


def predict(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """uint8 [N, H, W, 3] -> softmax scores [N, K]."""
    starts = range(0, len(images), batch_size)
    progress = tqdm(total=len(images), desc="classifying", unit="img", disable=None, leave=False)
    parts = []
    with progress:
        for i in starts:
            parts.append(session.run(["scores"], {"image": images[i : i + batch_size]})[0])
            progress.update(len(parts[-1]))
    return np.concatenate(parts)


def load_split(meta: dict[str, str], data_path: Path, split: str = "val") -> LabeledImages:
    """The images an artifact is judged on: `val` rebuilds its own held-out split from the
    `val_split` facts it carries; `test` reads a `test/` split or `test_batch` if the data has one."""
    try:
        data = load_dataset(data_path, "test" if split == "test" else "train", int(meta["native_size"]))
    except DataError as exc:
        if split != "test":
            raise
        raise DataError(
            f"{exc}; --split test needs a test/ split (or test_batch) in the data; --split val "
            "evaluates on the held-out split the artifact records"
        ) from None
    classes = json.loads(meta["classes"])
    if data.classes != classes:
        raise DataError(f"the data's classes {data.classes} differ from the model's {classes}")
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


def write_metadata(model_path: Path, values: dict[str, str]) -> None:
    """Set metadata entries of an ONNX artifact in place (atomically), graph untouched: the
    model_version, a hash of the graph, stays the same."""
    import onnx  # the `train` extra; evaluation alone does not need it

    proto = onnx.load(str(model_path))
    current = {p.key: p.value for p in proto.metadata_props} | values
    del proto.metadata_props[:]
    for key, value in current.items():
        proto.metadata_props.add(key=key, value=value)
    staged = Path(model_path).with_suffix(".onnx.tmp")
    onnx.save(proto, str(staged))
    os.replace(staged, model_path)
