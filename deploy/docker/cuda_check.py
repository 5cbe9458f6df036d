"""The GPU image's CUDA check: ONNX Runtime lists the CUDA provider and every library it needs loads.

CUDA, cuBLAS, cuFFT, cuRAND and cuDNN come from the hash-locked `nvidia-*` wheels of
requirements/gpu.txt, not from a CUDA base image, so the build runs this to fail when one is
missing or does not load. It needs no GPU: the one library the image cannot carry is the
driver's `libcuda.so.1`, which the NVIDIA Container Toolkit mounts at run time. A library that
links it directly (ORT's CUDA provider, one cuDNN engine) cannot load without it, so for those
every *other* library they link (their ELF DT_NEEDED entries) must load. With a driver present
everything is loaded outright. Prints one JSON line; exits 0, or 1 with what failed.

    python3 /opt/ninserve/cuda_check.py        # in the gpu image
"""

from __future__ import annotations

import ctypes
import json
import struct
import sys
from pathlib import Path

import onnxruntime as ort

CUDA_EP = "CUDAExecutionProvider"
DRIVER = "libcuda.so.1"  # from the host's NVIDIA driver, never from the image
DT_NEEDED, SHT_DYNAMIC = 1, 6


def wheel_libraries() -> list[Path]:
    """Every shared library the nvidia-* wheels installed (site-packages/nvidia/<part>/lib)."""
    roots = [Path(p) / "nvidia" for p in sys.path if (Path(p) / "nvidia").is_dir()]
    return sorted({lib for root in roots for lib in root.glob("*/lib/*.so*") if lib.is_file()})


def needed(path: Path) -> list[str]:
    """The sonames a 64-bit little-endian ELF library links (DT_NEEDED): what `ldd` would resolve."""
    data = path.read_bytes()
    shoff, shentsize, shnum = struct.unpack_from("<Q", data, 0x28)[0], *struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names: list[str] = []
    for _, kind, _, _, offset, size, link, *_ in sections:
        if kind != SHT_DYNAMIC:
            continue
        strtab = sections[link][4]
        for tag, value in struct.iter_unpack("<qQ", data[offset : offset + size]):
            if tag == DT_NEEDED:
                names.append(data[strtab + value : data.index(b"\0", strtab + value)].decode())
    return names


def load(lib: Path) -> str | None:
    """None when `lib` loads, or when only the driver is missing and all else it links loads;
    else why not."""
    try:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        return None
    except OSError as exc:
        if DRIVER not in str(exc):
            return f"{lib.name}: {exc}"
    missing = []
    for soname in needed(lib):
        if soname == DRIVER:
            continue
        try:
            ctypes.CDLL(soname, mode=ctypes.RTLD_GLOBAL)  # already loaded above, or on the loader path
        except OSError as exc:
            missing.append(f"{soname} ({exc})")
    return f"{lib.name}: needs {', '.join(missing)}" if missing else None


def driver_present() -> bool:
    try:
        ctypes.CDLL(DRIVER)
        return True
    except OSError:
        return False


def main() -> int:
    providers = ort.get_available_providers()
    failures = [] if CUDA_EP in providers else [f"{CUDA_EP} is not among ONNX Runtime's providers"]
    # ORT's own loader first: it opens CUDA and cuDNN in dependency order, as the engine does.
    ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    capi = Path(ort.__file__).parent / "capi"
    # The CUDA provider last: it links cudart, cuBLAS(Lt), cuFFT, cuRAND and cuDNN.
    shared, provider = capi / "libonnxruntime_providers_shared.so", capi / "libonnxruntime_providers_cuda.so"
    libraries = [*wheel_libraries(), shared, provider]
    failures += [why for lib in libraries if (why := load(lib)) is not None]
    print(
        json.dumps(
            {
                "onnxruntime": ort.__version__,
                "providers": providers,
                "driver": driver_present(),
                "libraries_checked": len(libraries),
                "libraries": [lib.name for lib in libraries],
                "failures": failures,
            }
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
