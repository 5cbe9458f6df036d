"""`ninserve export` into a model repository: a checkpoint becomes the next version of a model,
REPOSITORY/MODEL/<version>/model.onnx (+ model-int8.onnx), appearing whole.

The version is built in a staging folder beside the repository and renamed into place, so a
server polling the repository (NINSERVE_REPOSITORY_POLL_S) sees either nothing or the finished
version, never an fp32 file whose int8 variant is still being calibrated.

    ninserve export --checkpoint runs/shapes/checkpoint.pt --repository /srv/models --int8
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from model.errors import DataError
from model.export import export
from model.places import REPOSITORY, model_name, next_version

# Where torch.onnx logs the custom ops it skips when torchvision is absent (not our model's ops).
TORCH_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


def export_version(
    checkpoint: Path,
    *,
    repository: Path | None = None,
    model: str | None = None,
    int8: bool = False,
    data: Path | None = None,
    calibration_images: int = 1024,
    weights: str = "ema",
    flip_tta: bool = False,
) -> Path:
    """Export `checkpoint` as the next version of `model` in `repository`; returns its folder."""
    repository = Path(repository or os.environ.get("NINSERVE_MODEL_REPOSITORY") or REPOSITORY)
    name = model_name(model or checkpoint.resolve().parent.name)
    if not checkpoint.is_file():
        raise DataError(f"no checkpoint at {checkpoint} (ninserve train writes runs/<name>/checkpoint.pt)")
    model_dir = repository / name
    repository.mkdir(parents=True, exist_ok=True)
    # Beside the repository, not in it: a scan would report a half-built folder as a bad entry.
    staging = Path(tempfile.mkdtemp(prefix=f".ninserve-export-{name}-", dir=repository.resolve().parent))
    try:
        quiet_export(checkpoint, staging / "model.onnx", weights=weights, flip_tta=flip_tta)
        if int8:
            from model.quantize import quantize

            source = data or _trained_on(checkpoint)
            quantize(staging / "model.onnx", staging / "model-int8.onnx", source, calibration_images)
        model_dir.mkdir(exist_ok=True)  # now, not before: an empty model folder is a bad entry to a scan
        version = next_version(model_dir)
        target = model_dir / str(version)
        os.rename(staging, target)  # one step: the version appears whole
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = ", ".join(sorted(p.name for p in target.iterdir()))
    print(f"exported {name} version {version}: {target}/ ({files})", flush=True)
    return target


def quiet_export(checkpoint: Path, out: Path, **options: object) -> None:
    """model.export.export without torch.onnx's chatter ("torchvision is not installed. Skipping
    torchvision::nms" x4, FutureWarnings): what it prints is its own steps and the parity figures."""
    registration = logging.getLogger(TORCH_REGISTRATION_LOGGER)
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            export(checkpoint, out, **options)  # type: ignore[arg-type]
    finally:
        registration.setLevel(level)


def _trained_on(checkpoint: Path) -> Path:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return Path(state["config"]["data"])
