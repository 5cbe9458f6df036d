"""The GPU image's CUDA check: ONNX Runtime lists the CUDA provider and every library it needs loads.

CUDA, cuBLAS, cuFFT, cuRAND and cuDNN come from the hash-locked `nvidia-*` wheels of
requirements/gpu.txt, not from a CUDA base image, so the build runs this to fail when one is
missing or does not load; it needs no GPU and no driver (libcuda.so.1 comes with the driver, at
run time). Prints one JSON line and exits 0, or 1 with what failed.

    python3 /opt/ninserve/cuda_check.py        # in the gpu image
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import onnxruntime as ort

CUDA_EP = "CUDAExecutionProvider"


def wheel_libraries() -> list[Path]:
    """Every shared library the nvidia-* wheels installed (site-packages/nvidia/<part>/lib)."""
    roots = [Path(p) / "nvidia" for p in sys.path if (Path(p) / "nvidia").is_dir()]
    return sorted({lib for root in roots for lib in root.glob("*/lib/*.so*") if lib.is_file()})


def main() -> int:
    report: dict[str, object] = {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
    failures: list[str] = []
    if CUDA_EP not in ort.get_available_providers():
        failures.append(f"{CUDA_EP} is not among ONNX Runtime's providers")
    # ORT's own loader first: it opens CUDA and cuDNN in dependency order, as the engine does.
    ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    loaded = []
    for lib in wheel_libraries():
        try:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            loaded.append(lib.name)
        except OSError as exc:
            failures.append(f"{lib.name}: {exc}")
    # The CUDA provider itself links cudart, cuBLAS(Lt), cuFFT, cuRAND and cuDNN: it loading is
    # the proof that every library the provider needs resolves.
    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_shared.so"))
        ctypes.CDLL(str(provider))
        loaded.append(provider.name)
    except OSError as exc:
        failures.append(f"{provider.name}: {exc}")
    report |= {"libraries_loaded": len(loaded), "libraries": loaded, "failures": failures}
    print(json.dumps(report))
    return 1 if failures or not loaded else 0


if __name__ == "__main__":
    sys.exit(main())
