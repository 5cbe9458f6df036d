"""Load one model version: ONNX Runtime session, the NiN contract check, warm-up, its batcher.

    served = await load_version(model, version, settings, precision="int8", run_pixels=n,
                                run_gate=gate, cost=bytes)

The session is created and warmed up in a thread, beside whatever is serving: nothing is
swapped until this returns. Besides the checks the engine makes on every artifact (one `image`
uint8 [N,H,W,3] input, `scores` and `confidence_maps` outputs, readable `classes`), a repository
version must give one map per class and agree with its config.json's labels; the warm-up runs
check the output shapes. Anything wrong raises ModelLoadError with the reason the index shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading

import numpy as np

from app.config import Settings
from app.core.batcher import Batcher
from app.core.engine import Engine, ModelLoadError
from app.repository.layout import ModelSource, VersionSource
from app.repository.policy import pick_precision
from app.repository.served import Served

logger = logging.getLogger("ninserve")


def variant(model: ModelSource, version: VersionSource, settings: Settings, device: str) -> str:
    """The precision to load: config.json's pin, else NINSERVE_PRECISION, as the version has it."""
    wanted = model.precision or settings.precision
    precision = pick_precision(wanted, device, version.files)
    if wanted not in ("auto", precision):
        logger.warning("model %s: no %s variant, loading %s", model.name, wanted, precision)
    return precision


def open_engine(model: ModelSource, version: VersionSource, settings: Settings, precision: str) -> Engine:
    """Session + contract + warm-up, in the calling thread (slow: call it off the event loop)."""
    path = version.files[precision]
    engine = Engine(
        path,
        device=settings.device,
        device_id=settings.cuda_device_id,
        intra_op_threads=settings.intra_op_threads,
        arena=settings.ort_arena,
        shrink_above_images=settings.max_batch_size,
    )
    info = engine.info
    classes = model.labels or info.classes
    if len(classes) != info.num_classes:
        raise ModelLoadError(
            f"{path}: config.json has {len(classes)} labels but the artifact has {info.num_classes} classes"
        )
    if info.native_size < 4 or info.native_size % 4:
        raise ModelLoadError(f"{path}: native_size {info.native_size} is not a positive multiple of 4")
    label = version.label or info.version
    metadata = info.metadata | {"precision": precision}
    engine.info = dataclasses.replace(
        info, name=model.name, version=label, classes=classes, metadata=metadata
    )
    # On CUDA every new batch shape triggers a cuDNN algorithm search: do them all now,
    # not on a client's request. On CPU the smallest and largest batch are enough.
    n = settings.max_batch_size
    sizes = range(1, n + 1) if engine.device == "cuda" else sorted({1, n})
    engine.warmup(tuple(sizes))
    return engine


async def load_version(
    model: ModelSource,
    version: VersionSource,
    settings: Settings,
    *,
    precision: str,
    run_pixels: int,
    run_gate: threading.BoundedSemaphore,
    cost: int,
) -> Served:
    """A warmed-up version with its batcher (not started); raises ModelLoadError (or what ONNX
    Runtime raised). `run_gate` is shared by every loaded version: ORT runs of all models together
    stay within the memory plan's concurrent runs (each batcher alone keeps to its own)."""
    engine = await asyncio.to_thread(open_engine, model, version, settings, precision)
    run = engine.run

    def gated(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with run_gate:  # uncontended unless another model's batch is running: ~1 us a batch
            return run(images)

    batcher = Batcher(
        gated,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_s,
        max_queue=settings.max_queue,
        concurrency=settings.concurrent_batches,
        max_pixels=run_pixels,
        default_timeout_s=settings.request_timeout_s,
    )
    return Served(engine, batcher, precision, cost)
