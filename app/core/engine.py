"""ONNX Runtime: load the NiN artifact, check its contract, pick the execution provider, run.

Contract (model/export.py writes it): input `image` uint8 [N, H, W, 3] RGB, normalisation inside
the graph; outputs `scores` float32 [N, K] (softmax) and `confidence_maps` float32 [N, K, H/4, W/4];
metadata `classes` (JSON list), `native_size`, `model_version`, `val_top1`, `mean`, `std`, ...

`Engine.run` is synchronous and thread-safe (ORT sessions are); the batcher calls it in a thread.
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

logger = logging.getLogger("ninserve")

INPUT_NAME = "image"
SCORES, MAPS = "scores", "confidence_maps"
CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"
ArenaPolicy = Literal["shared", "shrink", "off", "keep"]
_shared_arena_lock = threading.Lock()
_shared_arena = False


class ModelLoadError(RuntimeError):
    """The artifact is missing, malformed, or breaks the contract; the server cannot start."""


class DeviceUnavailable(ModelLoadError):
    """NINSERVE_DEVICE=cuda where CUDA cannot work: the process must exit, not wait unhealthy."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    classes: tuple[str, ...]
    native_size: int
    path: str
    metadata: dict[str, str]  # every metadata_prop, verbatim
    inputs: list[dict[str, Any]] = field(default_factory=list)  # [{name, dtype, shape}]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def val_top1(self) -> float | None:
        try:
            return float(self.metadata["val_top1"])
        except (KeyError, ValueError):
            return None


def cuda_problem() -> str | None:
    """Why CUDA cannot be used in this process, or None. Cheap (no model, no session): it runs
    before the server starts, so that a GPU container started without its GPU exits at once."""
    available = ort.get_available_providers()
    if CUDA_EP not in available:
        return f"this onnxruntime build has no {CUDA_EP} (it has {', '.join(available)})"
    driver = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        cuda = ctypes.CDLL(driver)
    except OSError:
        return f"the NVIDIA driver ({driver}) is not visible: no GPU was given to this container or host"
    count = ctypes.c_int(0)
    status = cuda.cuInit(0)
    if status != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return f"the NVIDIA driver reports no usable GPU (cuInit status {status})"
    return None


def require_device(device: str) -> None:
    """Raise DeviceUnavailable when `device` is `cuda` and CUDA cannot be used; cpu/auto pass."""
    if device == "cuda" and (problem := cuda_problem()) is not None:
        raise DeviceUnavailable(
            f"NINSERVE_DEVICE=cuda but {problem}. Run the GPU image with a GPU, or set "
            "NINSERVE_DEVICE=auto to fall back to the CPU."
        )


def select_providers(device: str, device_id: int = 0) -> list[Any]:
    """cpu: CPU; cuda: CUDA or DeviceUnavailable; auto: CUDA when usable, else CPU with a warning."""
    if device == "cpu":
        return [CPU_EP]
    require_device(device)
    if device == "auto" and (problem := cuda_problem()) is not None:
        _warn_once(f"NINSERVE_DEVICE=auto: {problem}; serving on the CPU")
        return [CPU_EP]
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu from pip finds CUDA/cuDNN wheels this way
        try:
            ort.preload_dlls()
        except Exception as exc:  # a system CUDA install may still work
            logger.debug("onnxruntime.preload_dlls failed: %s", exc)
    return [(CUDA_EP, {"device_id": device_id}), CPU_EP]


def register_shared_arena() -> None:
    """One CPU arena in ONNX Runtime's environment, used by every session that opts in
    (`session.use_env_allocators`): a loaded version then holds its weights, not an arena of its
    own sized for a full batch (docs/repository.md, "Memory": 54 -> ~12 MB per fp32 NiN)."""
    global _shared_arena
    with _shared_arena_lock:
        if _shared_arena:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))  # ORT's defaults
        _shared_arena = True


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Once per process: the same fact repeated on every version load hides what is new."""
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s", message)


def _describe(args: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "dtype": a.type, "shape": [d if isinstance(d, int) else str(d) for d in a.shape]}
        for a in args
    ]


def _read_info(session: ort.InferenceSession, path: Path, name: str | None = None) -> ModelInfo:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = {o.name for o in outputs}
    if (
        [i.name for i in inputs] != [INPUT_NAME]
        or inputs[0].type != "tensor(uint8)"
        or len(inputs[0].shape) != 4
    ):
        raise ModelLoadError(
            f"{path}: expected one input '{INPUT_NAME}' uint8 [N,H,W,3], got {_describe(inputs)}"
        )
    if not {SCORES, MAPS} <= names:
        raise ModelLoadError(f"{path}: expected outputs '{SCORES}' and '{MAPS}', got {sorted(names)}")
    meta = dict(session.get_modelmeta().custom_metadata_map)
    try:
        classes = tuple(str(c) for c in json.loads(meta["classes"]))
        native_size = int(meta.get("native_size", "32"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelLoadError(
            f"{path}: metadata 'classes' (JSON list) / 'native_size' unreadable: {exc}"
        ) from exc
    if not classes or len(set(classes)) != len(classes):
        raise ModelLoadError(f"{path}: metadata 'classes' must be a non-empty list of unique names")
    return ModelInfo(
        name=name or meta.get("name", path.stem),
        version=meta.get("model_version", "unknown"),
        classes=classes,
        native_size=native_size,
        path=str(path),
        metadata=meta,
        inputs=_describe(inputs),
        outputs=_describe(outputs),
    )


class Engine:
    """One ORT session. `run(images uint8 [N,H,W,3]) -> (scores [N,K], maps [N,K,H/4,W/4])`."""

    def __init__(
        self,
        path: Path,
        *,
        device: str = "auto",
        device_id: int = 0,
        intra_op_threads: int = 0,
        arena: ArenaPolicy = "keep",
        shrink_above_images: int = 32,
        name: str | None = None,
    ):
        options = ort.SessionOptions()
        # ORT's CPU arena keeps the largest run's peak for the life of the process (a batch at
        # resolution 256 left 4 GB behind). `off` frees every run's memory at its end; `shrink`
        # keeps the arena for small runs (the 32x32 hot path) and hands it back after larger ones.
        options.enable_cpu_mem_arena = arena != "off"
        if arena == "shared":
            register_shared_arena()
            options.add_session_config_entry("session.use_env_allocators", "1")
        self._shrink_above: int | None = None  # input pixels; set from the native size below
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        # Idle ORT threads spin by default; between batches that burns the cores decoding needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = select_providers(device, device_id)
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path}: {exc}") from exc
        self.provider = self._session.get_providers()[0]
        if device == "cuda" and self.provider != CUDA_EP:
            raise DeviceUnavailable(
                f"NINSERVE_DEVICE=cuda but the session runs on {self.provider} (CUDA/cuDNN libraries?)"
            )
        if device == "auto" and self.provider != CUDA_EP and providers[0] != CPU_EP:
            _warn_once("NINSERVE_DEVICE=auto: CUDA failed to initialise; serving on the CPU")
        self.device = "cuda" if self.provider == CUDA_EP else "cpu"
        self._device_id = device_id
        self.info = _read_info(self._session, path, name)  # the repository's name, not the file's stem
        if arena in ("shrink", "shared"):  # runs up to a full batch of native-size images keep the arena
            self._shrink_above = shrink_above_images * self.info.native_size**2
        self._outputs = [SCORES, MAPS]
        logger.info(
            "model %s (version %s, %d classes, native %dpx) on %s",
            self.info.name,
            self.info.version,
            self.info.num_classes,
            self.info.native_size,
            self.provider,
        )

    def run(self, images: np.ndarray, options: ort.RunOptions | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] -> scores float32 [N, K], maps float32 [N, K, H/4, W/4]. `options`:
        a warm-up's, which another thread can terminate (`options.terminate = True`)."""
        if self.device == "cuda":
            return self._run_cuda(images, options)
        n, height, width = images.shape[:3]
        large = self._shrink_above is not None and n * height * width > self._shrink_above
        scores, maps = self._session.run(
            self._outputs, {INPUT_NAME: images}, options or (self._shrink if large else None)
        )
        return scores, maps

    def _run_cuda(
        self, images: np.ndarray, options: ort.RunOptions | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        # IOBinding: one explicit host->device copy of the uint8 batch (4x smaller than float),
        # outputs allocated on the device by ORT, then one copy back per output.
        binding = self._session.io_binding()
        binding.bind_cpu_input(INPUT_NAME, np.ascontiguousarray(images))
        for name in self._outputs:
            binding.bind_output(name, "cuda", self._device_id)
        self._session.run_with_iobinding(binding, options)
        scores, maps = binding.copy_outputs_to_cpu()
        return scores, maps

    def warmup(self, batch_sizes: tuple[int, ...] = (1,), options: ort.RunOptions | None = None) -> None:
        """Run the native size once per batch size, and check the output shapes against the contract."""
        size, k = self.info.native_size, self.info.num_classes
        for n in batch_sizes:
            scores, maps = self.run(np.zeros((n, size, size, 3), dtype=np.uint8), options)
            if scores.shape != (n, k) or maps.ndim != 4 or maps.shape[:2] != (n, k):
                raise ModelLoadError(
                    f"warm-up: got scores {scores.shape} and maps {maps.shape} for {n} images of "
                    f"{size}x{size}; expected [{n},{k}] and [{n},{k},h,w]"
                )
