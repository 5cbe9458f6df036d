"""Load one model version: ONNX Runtime session, the NiN contract check, warm-up, its batcher.

    control = LoadControl(limit_bytes=reserved + slack, warmup_deadline_s=30)
    served = await load_version(model, version, settings, precision="int8", run_pixels=n,
                                run_gate=gate, cost=bytes, control=control)

The session is created and warmed up in a thread, beside whatever is serving: nothing is
swapped until this returns. `control` bounds it like a request: the warm-up has a deadline
(ONNX Runtime's `RunOptions.terminate`, set from a timer thread: a graph that loops for ever
stops within one node), a watchdog samples the process's RSS and terminates the warm-up when
loading has grown it past what was reserved, and `cancel()` (an unload of a LOADING model)
stops it the same way. Its `held` is what the version measurably holds once warm.

Besides the checks the engine makes on every artifact (one `image` uint8 [N,H,W,3] input,
`scores` and `confidence_maps` outputs, readable `classes`), a repository version must give one
map per class and agree with its config.json's labels; the warm-up runs check the output shapes.
Anything wrong raises ModelLoadError with the reason the index shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time

import numpy as np
import onnxruntime as ort

from app.config import Settings
from app.core.batcher import Batcher
from app.core.engine import Engine, ModelLoadError
from app.core.served import Served
from app.repository.layout import ModelSource, VersionSource
from app.repository.policy import pick_precision

logger = logging.getLogger("ninserve")


def variant(model: ModelSource, version: VersionSource, settings: Settings, device: str) -> str:
    """The precision to load: config.json's pin, else NINSERVE_PRECISION, as the version has it."""
    wanted = model.precision or settings.precision
    precision = pick_precision(wanted, device, version.files)
    if wanted not in ("auto", precision):
        logger.warning("model %s: no %s variant, loading %s", model.name, wanted, precision)
    return precision


def rss_bytes() -> int:
    """This process's resident set (/proc/self/statm; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
WATCH_EVERY_S = 0.005
_DEADLINE_SETTING = "NINSERVE_MODEL_WARMUP_TIMEOUT_S"


class LoadControl:
    """One load's deadline, memory watchdog and cancellation, shared with the thread that loads."""

    def __init__(self, *, limit_bytes: int, warmup_deadline_s: float) -> None:
        self.limit_bytes = limit_bytes  # RSS growth beyond this stops the load
        self.warmup_deadline_s = warmup_deadline_s
        self.options = ort.RunOptions()  # the warm-up's: terminate stops its run
        # Each warm-up run hands the CPU arena back at its end: what stays is the version's own
        # (weights, session), not the runs' share that the shared arena holds for serving.
        self.options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.reason: str | None = None  # why it was stopped
        self.over_memory = False  # stopped by the watchdog
        self.base = 0
        self.peak = 0
        self._done = threading.Event()

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.options.terminate = True

    def check(self) -> None:
        if self.reason is not None:
            raise ModelLoadError(self.reason)

    def watch(self) -> None:
        """Sample RSS until `finish()`; over the limit, cancel (the warm-up stops at its next node)."""
        while not self._done.wait(WATCH_EVERY_S):
            grown = rss_bytes() - self.base
            self.peak = max(self.peak, grown)
            if grown > self.limit_bytes:
                self.over_memory = True
                self.cancel(
                    f"memory: loading grew the process by {grown / 2**20:.0f} MB, more than the "
                    f"{self.limit_bytes / 2**20:.0f} MB reserved for it; stopped"
                )
                return

    def finish(self) -> None:
        self._done.set()


def open_engine(
    model: ModelSource,
    version: VersionSource,
    settings: Settings,
    precision: str,
    control: LoadControl | None = None,
    run_gate: threading.BoundedSemaphore | None = None,
) -> tuple[Engine, int]:
    """Session + contract + warm-up, in the calling thread (slow: call it off the event loop).
    Returns the engine and the RSS it added (what the version holds once warm)."""
    control = control or LoadControl(limit_bytes=1 << 62, warmup_deadline_s=settings.model_warmup_timeout_s)
    control.base = rss_bytes()
    watchdog = threading.Thread(target=control.watch, name="ninserve-load-watch", daemon=True)
    watchdog.start()
    try:
        engine = _open(model, version, settings, precision, control, run_gate)
    finally:
        control.finish()
        watchdog.join()
    return engine, rss_bytes() - control.base


def _open(
    model: ModelSource,
    version: VersionSource,
    settings: Settings,
    precision: str,
    control: LoadControl,
    run_gate: threading.BoundedSemaphore | None,
) -> Engine:
    path = version.files[precision]
    engine = Engine(
        path,
        device=settings.device,
        device_id=settings.cuda_device_id,
        intra_op_threads=settings.intra_op_threads,
        arena=settings.ort_arena,
        shrink_above_images=settings.max_batch_size,
        name=model.name,
    )
    control.check()  # cancelled, or over its memory, while the session was built
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
    late = f"warm-up took longer than {control.warmup_deadline_s:g} s ({_DEADLINE_SETTING}); stopped"
    deadline = threading.Timer(control.warmup_deadline_s, control.cancel, (late,))
    deadline.daemon = True
    deadline.start()
    started = time.monotonic()
    try:
        # Warm-up runs take the ORT run gate like serving batches: their memory is the runs' share.
        if run_gate is not None:
            run_gate.acquire()
        try:
            engine.warmup(tuple(sizes), control.options)
        finally:
            if run_gate is not None:
                run_gate.release()
    except Exception as exc:
        if control.reason is not None:  # terminated on purpose: say why, not ORT's "Exiting due to..."
            raise ModelLoadError(control.reason) from None
        raise ModelLoadError(f"warm-up failed: {type(exc).__name__}: {exc}") from exc
    finally:
        deadline.cancel()
    control.check()
    logger.debug("model %s warmed up in %.2f s", model.name, time.monotonic() - started)
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
    control: LoadControl | None = None,
) -> Served:
    """A warmed-up version with its batcher (not started); raises ModelLoadError (or what ONNX
    Runtime raised). `run_gate` is shared by every loaded version: ORT runs of all models together
    stay within the memory plan's concurrent runs (each batcher alone keeps to its own)."""
    engine, held = await asyncio.to_thread(
        open_engine, model, version, settings, precision, control, run_gate
    )
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
    return Served(engine, batcher, precision, cost, held=held)
