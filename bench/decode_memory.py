"""What decoding each image format and mode really holds, against what admission prices it at.

    .venv/bin/python -m bench.decode_memory --side 2000            # every case at 2000x2000
    .venv/bin/python -m bench.decode_memory --side 6300 --cases webp-lossless,jpeg-progressive-cmyk

Each case is generated here, then decoded by app/core/decode.decode_image in a fresh child process
(as the server decodes it: model input at 32 px, a 512-px preview). The peak is measured twice:
the child's resident set (VmHWM, reset through /proc/self/clear_refs, minus VmRSS before the
decode), which sees what libjpeg, libwebp, libtiff and zlib allocate outside Python, and
tracemalloc's peak (numpy and Pillow's image buffers only). Prints one line per case:
price, RSS peak, tracemalloc peak, price / peak, decode seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import struct
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

MiB = 1024 * 1024


def picture(side: int, mode: str = "RGB") -> Image.Image:
    """Smooth gradients: quick to encode at any size, not flat (flat files decode differently)."""
    y, x = np.ogrid[0:side, 0:side]
    rgb = np.empty((side, side, 3), np.uint8)
    rgb[..., 0] = (x * 3 + y) % 256
    rgb[..., 1] = x % 256
    rgb[..., 2] = y % 256
    img = Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        img.putalpha(Image.fromarray(((x + y) % 256).astype(np.uint8), "L"))
    elif mode != "RGB":
        img = img.convert(mode)
    return img


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def interlaced_png(side: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """An Adam7-interlaced PNG (Pillow cannot write one): a gradient, colour type and depth as
    given (2 RGB, 6 RGBA, 0 grey)."""
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    bytes_per_sample = bit_depth // 8
    y, x = np.ogrid[0:side, 0:side]
    plane = ((x + y) % 256).astype(np.uint8)
    full = np.repeat(plane[..., None], channels * bytes_per_sample, axis=2)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
    passes += ((0, 1, 1, 2),)  # Adam7: (x0, y0, dx, dy) of each pass
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = full[y0::dy, x0::dx]
        if sub.size:
            rows = sub.reshape(sub.shape[0], -1)
            raw += np.hstack([np.zeros((rows.shape[0], 1), np.uint8), rows]).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, color_type, 0, 0, 1)
    idat = zlib.compress(bytes(raw), 6)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def repeat_last_scan(jpeg: bytes, scans: int) -> bytes:
    """A progressive JPEG whose last scan is repeated until the file has `scans` scans: every
    repeat makes libjpeg pass over every block again (a CPU bomb of a few bytes per scan)."""
    last = jpeg.rfind(b"\xff\xda")
    end = jpeg.rfind(b"\xff\xd9")
    have = jpeg.count(b"\xff\xda")
    return jpeg[:end] + jpeg[last:end] * max(0, scans - have) + jpeg[end:]


CASES: dict[str, Callable[[int], bytes]] = {
    "png-rgb": lambda s: encode(picture(s), "PNG", compress_level=1),
    "png-rgba": lambda s: encode(picture(s, "RGBA"), "PNG", compress_level=1),
    "png-1bit": lambda s: encode(Image.new("1", (s, s)), "PNG"),
    "png-grey16": lambda s: encode(picture(s, "L").convert("I;16"), "PNG", compress_level=1),
    "png-interlaced-rgb": lambda s: interlaced_png(s),
    "png-interlaced-rgba16": lambda s: interlaced_png(s, 16, 6),
    "jpeg-baseline-rgb": lambda s: encode(picture(s), "JPEG", quality=85),
    "jpeg-baseline-cmyk": lambda s: encode(picture(s, "CMYK"), "JPEG", quality=85),
    "jpeg-progressive-420": lambda s: encode(picture(s), "JPEG", progressive=True, quality=85),
    "jpeg-progressive-444": lambda s: encode(picture(s), "JPEG", progressive=True, subsampling=0, quality=85),
    "jpeg-progressive-cmyk": lambda s: encode(picture(s, "CMYK"), "JPEG", progressive=True, quality=85),
    "jpeg-progressive-grey": lambda s: encode(picture(s, "L"), "JPEG", progressive=True, quality=85),
    "webp-lossless": lambda s: encode(picture(s), "WEBP", lossless=True, quality=0, method=0),
    "webp-lossless-rgba": lambda s: encode(picture(s, "RGBA"), "WEBP", lossless=True, quality=0, method=0),
    "webp-lossy": lambda s: encode(picture(s), "WEBP", quality=80, method=0),
    "gif": lambda s: encode(picture(s, "P"), "GIF"),
    "bmp-rgb": lambda s: encode(picture(s), "BMP"),
    "bmp-rgba": lambda s: encode(picture(s, "RGBA"), "BMP"),
    "tiff-rgb-deflate": lambda s: encode(picture(s), "TIFF", compression="tiff_adobe_deflate"),
    "tiff-rgba": lambda s: encode(picture(s, "RGBA"), "TIFF"),
    "tiff-cmyk": lambda s: encode(picture(s, "CMYK"), "TIFF"),
    "tiff-float": lambda s: encode(picture(s, "F"), "TIFF"),
    "tiff-int32": lambda s: encode(picture(s, "I"), "TIFF"),
    "tiff-grey16": lambda s: encode(picture(s, "L").convert("I;16"), "TIFF"),
}


def measure(data: bytes, size: int = 32, preview_size: int = 512) -> dict[str, float]:
    """Decode `data` once to warm up, then again with the peaks reset: RSS and tracemalloc peak
    above what was resident before the decode. Run it in a fresh process (`measure_all`)."""
    from app.core.decode import decode_image
    from app.core.memory import return_large_frees_to_the_os

    return_large_frees_to_the_os()  # as the server does at start
    options = {"max_pixels": 10**9, "preview_size": preview_size}
    decode_image(data, size, **options)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS
    before = _status_kb("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    decode_image(data, size, **options)
    seconds = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rss_peak": (_status_kb("VmHWM") - before) * 1024, "traced_peak": traced, "seconds": seconds}


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def measure_all(inputs: dict[str, bytes], size: int = 32) -> dict[str, dict[str, float]]:
    """Each input in a fresh spawned process, one after the other: no case inherits another's heap."""
    out = {}
    context = multiprocessing.get_context("spawn")
    for name, data in inputs.items():
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            out[name] = pool.submit(measure, data, size).result()
    return out


def main(argv: list[str] | None = None) -> int:
    from app.core.memory import decode_cost

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    inputs = {name: CASES[name](args.side) for name in args.cases.split(",")}
    peaks = measure_all(inputs)
    rows = {}
    for name, data in inputs.items():
        price = decode_cost(data, 32, 10**9)
        peak = peaks[name]
        rows[name] = {"bytes": len(data), "price": price, **peak}
        if not args.json:
            print(
                f"{name:24s} {len(data) / 1024:9.0f} KB  price {price / MiB:7.1f} MB  "
                f"rss {peak['rss_peak'] / MiB:7.1f} MB  traced {peak['traced_peak'] / MiB:7.1f} MB  "
                f"price/peak {price / max(peak['rss_peak'], peak['traced_peak'], 1):5.2f}  "
                f"{peak['seconds'] * 1000:6.0f} ms",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
