"""The memory budget: how one process's RSS is split between its parts, and what work costs.

    plan = plan_memory(budget_mb=800, store_bytes=64 * MiB, max_resolution=256, ...)
    plan.run_pixels      # input pixels one ONNX Runtime run may hold
    decode_cost(data, size, max_pixels)  # bytes a decode will hold, from the header only

The budget is the RSS the process should stay within (the shipped containers allow 1 GiB, so the
default 800 MB leaves ~220 MB for allocator fragmentation and what is not modelled). It is split:

    runtime reserve  interpreter, libraries, ONNX Runtime itself (~100 MB measured without a model,
                     the first session's start charged to the models)
    models           loaded model versions: session and weights (model_memory_mb; model_cost
                     below); with a per-session arena (ort_arena shrink/keep) also the arena each
                     keeps for a full batch of native-size images
    result store     the memory store's byte bound (0 with Redis: the results live there)
    ORT runs         up to 35 % of the rest, no more than one image at max_resolution or a
                     full batch of native-size images needs (65,536 pixels, 128 MB by default):
                     input pixels per run x bytes per pixel x concurrent runs
    decoding         45 : 20 of what remains with rendering: small decodes in the shared pool
                     (16 MB each) and the large decode (one at a time, its own thread)
    rendering        heatmap PNGs, in their own lane

Costs are priced before the work starts, so a request that cannot fit is refused (413) or waits
for room (503 when the wait is full) before it allocates anything. The per-pixel figures are
peaks measured with VmHWM (docs/reliability.md): ONNX Runtime holds 1.5-1.8 KB per input pixel
for the fp32 NiN (its first layers keep 192 float32 channels at the input resolution), 1.3 KB
for int8. Decoding, measured per format and mode with `bench/decode_memory.py` (RSS, since libjpeg,
libwebp and zlib allocate outside Python), holds per source pixel: ~5 B for 1-bit, grey, palette
and RGB files, ~20 B for alpha and 16-bit ones (alpha compositing and 16-bit scaling make
float/RGBA copies), ~27 B for 32-bit float and integer grey, ~15 B for WebP without alpha and
~27 B with it (libwebp decodes to RGBA, Pillow copies the frame twice); a progressive or
multi-scan JPEG keeps libjpeg's coefficients for the whole image, 2 B per sample of every
component (6 B/px at 4:4:4, 8 B/px for CMYK), whatever scale it is decoded at. Every decode also
holds ~2 MB whatever its size (codec state, row buffers, the preview).
"""

from __future__ import annotations

import ctypes
import math
import struct
from collections.abc import Sequence

from PIL import Image

# The budget's split lives in app/budget.py (app/config.py checks it at start); its names are
# re-exported here for the modules that price work against it.
from app.budget import STORE_WRITE_BACKLOG as STORE_WRITE_BACKLOG
from app.budget import MemoryPlan as MemoryPlan
from app.budget import MiB
from app.budget import plan_for as plan_for
from app.budget import plan_memory as plan_memory
from app.core.decode import REDUCING_GAP, check_pixels, jpeg_first_scan, jpeg_header, open_image

# One loaded version, measured as the RSS growth of loading and warming up one more session (batch
# 1 and 32 at 32x32; bench/model_memory.py): with a per-session arena (`shrink`, `keep`) fp32 NiN
# (3.9 MB file) 54 MB, int8 (1.0 MB) 15 MB; with the shared arena (`shared`) 7-13 MB and 2-3 MB,
# the arena itself (~50 MB for a batch of 32) being the ORT runs' share, paid once. Estimated from
# the file before loading (fixed + per file byte; with its own arena scaled with the batch it
# keeps); then charged what the load measurably took, if more.
MODEL_FIXED, MODEL_BYTES_PER_FILE_BYTE, MODEL_COST_BATCH = 8 * MiB, 12, 32
SHARED_FIXED, SHARED_BYTES_PER_FILE_BYTE = 4 * MiB, 3
# A load's measured growth may exceed its reservation by this much (other requests allocate while
# it is measured) before it is stopped or unloaded as over its price.
LOAD_SLACK = 32 * MiB

# Bytes one decode holds per source pixel, by Pillow mode (with a margin over the measured peak).
_LIGHT_MODES = frozenset({"1", "L", "P", "RGB"})  # 5.1-5.3 B/px measured (RGB 4.2)
_HEAVY_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La", "I;16", "I;16L", "I;16B", "I;16N"})
_WIDE_MODES = frozenset({"I", "F"})  # 32-bit grey: float64 copies while scaling, 23-27 B/px
LIGHT_BYTES_PER_PIXEL, OTHER_BYTES_PER_PIXEL, HEAVY_BYTES_PER_PIXEL = 6, 10, 24  # heavy: 19-22 measured
WIDE_BYTES_PER_PIXEL = 32
WEBP_BYTES_PER_PIXEL, WEBP_ALPHA_BYTES_PER_PIXEL = 17, 30  # 15.2-15.7 and 26.6 B/px measured
JPEG_COEFFICIENT_BYTES = 128  # per 8x8 block of each component: libjpeg's whole-image buffer
DECODE_FIXED = 3 * MiB  # ~2 MB measured in every decode, whatever its size
# Rendering holds per output pixel: with an overlay 34 B/px measured at 2048 px (the blend in
# 16-bit fixed point, app/core/maps.py); without overlay 16-17 B/px; a grid keeps the RGB canvas and
# one cell's temporaries.
RENDER_OVERLAY_BYTES, RENDER_PLAIN_BYTES, GRID_CANVAS_BYTES = 40, 24, 8
RENDER_FIXED = 2 * MiB

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COMPRESSED_PNG_METADATA = (b"zTXt", b"iTXt", b"iCCP")


def return_large_frees_to_the_os(threshold: int = 4 * MiB) -> bool:
    """Allocations of `threshold` bytes or more get their own mapping, unmapped when freed.

    glibc raises its mmap threshold as large blocks are freed (up to 32 MB), after which image
    buffers come from heap arenas that are rarely trimmed: a burst of large decodes left RSS
    ~200 MB above baseline. A fixed threshold (mallopt M_MMAP_THRESHOLD) returns that memory the
    moment it is freed; smaller allocations, the whole 32x32 path included, are unaffected.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False


def model_cost(file_bytes: int, max_batch_size: int, *, own_arena: bool = False) -> int:
    """Bytes one loaded version will hold, estimated from its artifact's size (with external data)
    before loading it; `own_arena`: the session keeps an arena of its own (ort_arena shrink/keep)."""
    if not own_arena:
        return SHARED_FIXED + file_bytes * SHARED_BYTES_PER_FILE_BYTE
    scale = max(1.0, max_batch_size / MODEL_COST_BATCH)
    return MODEL_FIXED + int(file_bytes * MODEL_BYTES_PER_FILE_BYTE * scale)


def quick_png_size(data: bytes, max_chunks: int = 16) -> tuple[int, int] | None:
    """Width and height of a PNG whose decode cost is its pixels alone: at most `max_chunks` chunks
    (Pillow reads each in Python, ~3 us), none of them compressed metadata (zTXt, iTXt, iCCP: up to
    1 MB inflated each). None for anything else, a PNG cut short included."""
    if data[:8] != _PNG_SIGNATURE:
        return None
    size, pos = None, 8
    for _ in range(max_chunks):
        if pos + 8 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind in _COMPRESSED_PNG_METADATA:
            return None
        if kind == b"IHDR" and length >= 8:
            size = struct.unpack_from(">II", data, pos + 8)
        elif kind == b"IEND":
            return size
        pos += 12 + length
    return None


def decode_cost(data: bytes, size: int, max_pixels: int) -> int:
    """Peak bytes decoding `data` to `size` will hold, from the header alone (no pixel decoded).

    Raises what app/core/decode.open_image raises for a bad or oversized header (or a JPEG with too
    many scans). An 8-bit RGB PNG is priced from its IHDR chunk without Pillow (the common case,
    ~0.1 us instead of ~17 us), a plain JPEG from one walk of its segments (jpeg_header: 29 -> 8 us
    for the 640x480 test photo, the same price).
    """
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height, depth, color = struct.unpack(">IIBB", data[16:26])
        if color == 2 and depth == 8 and 0 < width * height <= max_pixels:  # no alpha, no palette
            return DECODE_FIXED + width * height * LIGHT_BYTES_PER_PIXEL
    if (jpeg := jpeg_header(data)) is not None:
        check_pixels(jpeg.width, jpeg.height, max_pixels)
        held = DECODE_FIXED
        if jpeg.buffered:
            held += jpeg_coefficient_bytes(jpeg.width, jpeg.height, jpeg.layers)
        per_pixel = OTHER_BYTES_PER_PIXEL if len(jpeg.layers) == 4 else LIGHT_BYTES_PER_PIXEL  # CMYK
        width, height = _draft_size(jpeg.width, jpeg.height, size)
        return held + width * height * per_pixel
    img = open_image(data, max_pixels)
    try:
        width, height = img.size
        if img.format == "WEBP":
            alpha = img.mode != "RGB"
            return DECODE_FIXED + width * height * (
                WEBP_ALPHA_BYTES_PER_PIXEL if alpha else WEBP_BYTES_PER_PIXEL
            )
        held = DECODE_FIXED
        if img.format == "JPEG":
            if img.info.get("progressive") or jpeg_first_scan(data)[1]:
                held += jpeg_coefficient_bytes(width, height, img.layer)  # type: ignore[attr-defined]  # JpegImageFile's
            width, height = _draft_size(width, height, size)
        return held + width * height * _bytes_per_pixel(img)
    finally:
        img.close()


def _draft_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The size libjpeg decodes at under Pillow's draft: 1/2, 1/4 or 1/8 scale (decode_image)."""
    need = math.ceil(REDUCING_GAP * size)
    scale = min(width // need, height // need)
    factor = next((f for f in (8, 4, 2) if scale >= f), 1)
    return math.ceil(width / factor), math.ceil(height / factor)


def jpeg_coefficient_bytes(width: int, height: int, layers: Sequence[tuple[object, int, int, int]]) -> int:
    """The DCT coefficients libjpeg keeps for a whole progressive or multi-scan image: one
    64 x int16 block per 8x8 samples of each component, padded to whole MCUs. `layers` is
    Pillow's (id, h, v, table) per component from the SOF header."""
    h_max = max((h for _, h, _, _ in layers), default=1) or 1
    v_max = max((v for _, _, v, _ in layers), default=1) or 1
    mcus_x, mcus_y = math.ceil(width / (8 * h_max)), math.ceil(height / (8 * v_max))
    blocks = sum(mcus_x * max(h, 1) * mcus_y * max(v, 1) for _, h, v, _ in layers)
    return blocks * JPEG_COEFFICIENT_BYTES


def _bytes_per_pixel(img: Image.Image) -> int:
    transparent = "transparency" in img.info
    if img.mode in _WIDE_MODES:
        return WIDE_BYTES_PER_PIXEL
    if img.mode in _HEAVY_MODES or (transparent and img.mode in ("P", "L")):
        return HEAVY_BYTES_PER_PIXEL
    return LIGHT_BYTES_PER_PIXEL if img.mode in _LIGHT_MODES else OTHER_BYTES_PER_PIXEL


def render_cost(side: int, *, overlay: bool, cells: int = 1) -> int:
    """Peak bytes rendering maps of `side` px: one map, or a grid of `cells` on one canvas."""
    per_pixel = RENDER_OVERLAY_BYTES if overlay else RENDER_PLAIN_BYTES
    canvas = cells * side * side * 5 // 4 * GRID_CANVAS_BYTES if cells > 1 else 0  # + captions, padding
    return RENDER_FIXED + side * side * per_pixel + canvas
