"""Training data: CIFAR-10 python batches or `<split>/<class>/<image>` folders (a directory or a
zip), decoded once into uint8 NHWC arrays, plus the deterministic train/validation split.

Arrays stay uint8 until they reach the device so a whole CIFAR-sized set fits in memory (150 MB)
or on a GPU, and augmentation runs there as batched tensor ops. Decoding 50,000 JPEGs takes
tens of seconds, so it shows a progress bar on a terminal. Data that cannot serve (no such path,
no such split, too few images for the split asked for) raises DataError with a message for the
person at the command line.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from app.core.decode import decode_rgb  # the server's decode and resize policy, so train == serve
from model.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
FORMATS = "a CIFAR-10 python directory (cifar-10-batches-py), or a folder or .zip of <split>/<class>/<image>"


@dataclass
class LabeledImages:
    images: np.ndarray  # uint8 [N, H, W, 3], RGB
    labels: np.ndarray  # int64 [N], index into classes
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> LabeledImages:
        return LabeledImages(self.images[index], self.labels[index], self.classes)


def load_cifar_python(root: Path, split: str = "train") -> LabeledImages:
    """Read the official `cifar-10-batches-py` pickles (data_batch_1..5 or test_batch)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [name for name in names if not (root / name).exists()]
    if missing:
        raise DataError(f"{root} has no {split} split: {', '.join(missing)} missing")
    with open(root / "batches.meta", "rb") as f:
        classes = [
            c.decode() if isinstance(c, bytes) else c
            for c in pickle.load(f, encoding="bytes")[b"label_names"]
        ]
    images, labels = [], []
    for name in names:
        with open(root / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        # Rows are 3072 bytes: the R plane, then G, then B, each 32x32 row-major.
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return LabeledImages(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes)


def _folder_entries(path: Path, split: str) -> tuple[list[tuple[str, str]], Callable[[str], bytes]]:
    """List (class, member) pairs under `<split>/<class>/` in a directory or zip, with a reader."""
    if path.is_dir():
        base = path / split
        entries = [
            (p.parent.name, str(p)) for p in sorted(base.glob("*/*")) if p.suffix.lower() in IMAGE_SUFFIXES
        ]
        return entries, lambda member: Path(member).read_bytes()
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not a zip archive; give {FORMATS}") from None
    entries = []
    for name in sorted(archive.namelist()):
        parts = PurePosixPath(name).parts
        if len(parts) == 3 and parts[0] == split and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
            entries.append((parts[1], name))
    return entries, archive.read


def load_image_folder(path: Path, split: str = "train", size: int = 32) -> LabeledImages:
    """Read `<split>/<class>/<image>` from a directory or a .zip; classes are the sorted folder names."""
    entries, read = _folder_entries(path, split)
    if not entries:
        raise DataError(f"no images under {split}/<class>/ in {path}{_splits_hint(path)}")
    classes = sorted({cls for cls, _ in entries})
    index = {cls: i for i, cls in enumerate(classes)}
    images = np.empty((len(entries), size, size, 3), dtype=np.uint8)
    progress = tqdm(entries, desc=f"decoding {path.name} {split}", unit="img", disable=None, leave=False)
    for i, (_, member) in enumerate(progress):
        images[i] = decode_rgb(read(member), size)
    labels = np.array([index[cls] for cls, _ in entries], dtype=np.int64)
    return LabeledImages(images, labels, classes)


def load_dataset(path: Path, split: str = "train", size: int = 32) -> LabeledImages:
    """Pick the reader from what is at `path`: CIFAR python batches, or an image folder/zip."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no data at {path}: give {FORMATS}")
    if (path / "batches.meta").exists():
        return load_cifar_python(path, split)
    if (path / "cifar-10-batches-py" / "batches.meta").exists():
        return load_cifar_python(path / "cifar-10-batches-py", split)
    return load_image_folder(path, split, size)


def _splits_hint(path: Path) -> str:
    """'(it holds: train)' for a folder or zip that has other splits, else ''."""
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.is_dir())
    else:
        with zipfile.ZipFile(path) as archive:
            found = sorted({PurePosixPath(n).parts[0] for n in archive.namelist() if "/" in n})
    return f" (it holds: {', '.join(found)})" if found else ""


def split_train_val(labels: np.ndarray, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: the same `val_size` images (balanced over classes) for the
    same labels and seed, whatever machine or session runs it. A class with fewer images than its
    share goes to validation whole (training checks that something is left to train on)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = val_size // max(1, len(classes))
    val_parts = []
    for cls in classes:
        members = np.flatnonzero(labels == cls)
        val_parts.append(rng.permutation(members)[:per_class])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    if per_class < 1:  # an empty split would make every accuracy a division by zero
        raise DataError(
            f"a held-out split of {val_size} images over {len(classes)} classes is empty: "
            "it needs at least one image per class"
        )
    return train, val


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units; stored with the weights so clients need not know."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return pixels.mean(axis=0).tolist(), pixels.std(axis=0).tolist()
