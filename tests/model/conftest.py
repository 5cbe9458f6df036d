"""Shared fixtures for the model tests: generated datasets in both supported formats, and one
tiny trained-and-exported NiN reused by the export tests."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch", reason="model tests need the `train` extra (torch==2.13.0)")

CLASSES = ["blue", "green", "red"]


def synthetic_images(n_per_class: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise images whose dominant colour channel is the class: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, channel in enumerate([2, 1, 0]):  # blue, green, red (alphabetical class order)
        x = rng.integers(0, 120, size=(n_per_class, size, size, 3))
        x[..., channel] += 120
        images.append(x.astype(np.uint8))
        labels += [label] * n_per_class
    return np.concatenate(images), np.array(labels, dtype=np.int64)


def write_image_folder(
    root: Path, split: str, images: np.ndarray, labels: np.ndarray, fmt: str = "PNG"
) -> None:
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / split / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.{fmt.lower()}", format=fmt)


def write_image_zip(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            zf.writestr(f"{split}/{CLASSES[label]}/{i:04d}.png", buf.getvalue())


def write_cifar_python(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The official layout: 5 training pickles + test_batch + batches.meta, CHW-planar rows."""
    root.mkdir(parents=True)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, f)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    parts = np.array_split(np.arange(len(images)), 5)
    for i, part in enumerate(parts, start=1):
        with open(root / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": rows[part], b"labels": labels[part].tolist()}, f)
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": rows[:6], b"labels": labels[:6].tolist()}, f)


@pytest.fixture(scope="session")
def synthetic_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = synthetic_images(40)
    path = tmp_path_factory.mktemp("data") / "synthetic.zip"
    write_image_zip(path, "train", images, labels)
    return path


def tiny_config(data: Path, run_dir: Path, **overrides):
    """A TrainConfig for seconds-long runs on the generated data."""
    from model.config import TrainConfig

    settings = {"epochs": 2, "batch_size": 16, "lr": 0.05, "warmup_epochs": 0.5, "val_size": 30}
    return TrainConfig(data=str(data), run_dir=str(run_dir), **{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, synthetic_zip: Path) -> tuple[Path, dict]:
    """Two epochs on 120 generated images: a real checkpoint in seconds."""
    from model.train import train

    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, train(tiny_config(synthetic_zip, run_dir, ema_decay=0.9))


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_run: tuple[Path, dict]) -> Path:
    from model.export import export

    out = tmp_path_factory.mktemp("artifact") / "tiny.onnx"
    export(tiny_run[0] / "checkpoint.pt", out)
    return out
