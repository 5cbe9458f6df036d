"""Confidence maps -> pictures: colormapped heatmaps, overlays on the input, a labelled grid.

Colormaps are lookup tables in numpy (no matplotlib at runtime): jet is matplotlib's piecewise-
linear definition, exact; viridis, inferno, magma and turbo are matplotlib's tables sampled at 33
points and linearly interpolated (within 3/255 of the originals, 4/255 for inferno).
Maps are upsampled bilinearly as float32, then normalised and colour-mapped, so edges stay smooth.
CPU-bound: callers run these in a thread pool.
"""

from __future__ import annotations

import io
import math
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Normalize = Literal["map", "global"]

_SAMPLED = {  # 33 RGB triples each, hex, from matplotlib 3.11 at linspace(0, 1, 33)
    "viridis": "440154470d6048186a482374472d7b4537814240863e49893b528b375b8d33638d2f6b8e2c728e297a8e268"
    "28e23898e21918c1f988b1fa08822a78528ae8032b67a3fbc734ec36b5ec96270cf5784d44b98d83eaddc30c2df23d8e219ece51bfde725",
    "inferno": "0000040403120b0724150b37210c4a2f0a5b3d09654a0c6b57106e64156e71196e7d1e6d8a226a972766a32c6"
    "1b0315bbc3754c73e4cd24644db503be45a31eb6628f1731df68013f98e09fb9d07fcac11fbbc21f9cb35f5db4cf2ea69f3f68afcffa4",
    "magma": "0000040303120a0822130d341d114729115a36106b440f7651127c5d177f6a1c81762181832681902a819c2e7f"
    "aa337db73779c43c75d0416fdc4869e75263ef5d5ef56b5cf9795dfc8961fd9869fea772feb67cfec488fed395fde2a3fcf0b2fcfdbf",
    "turbo": "30123b392a734040a24456c7466be34680f64294ff37a8fa28bceb1ccdd818ddc21fe9af32f2984ef97d6dfe628b"
    "ff4ba4fc3cb9f635cdec34dfdf37eecf3af8be39fdac34fe962bfb7e21f46617eb500edf3f08d02f05be2102a91601920b017a0403",
}
_JET = (  # matplotlib's _jet_data: (x, value) anchors per channel
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)
COLORMAPS = ("jet", "viridis", "inferno", "magma", "turbo", "gray")
Colormap = Literal["jet", "viridis", "inferno", "magma", "turbo", "gray"]
OVERLAY_ALPHA = 0.5  # heatmap weight over the input image


@cache
def colormap_lut(name: str) -> np.ndarray:
    """uint8 [256, 3] table for a colormap name in COLORMAPS."""
    x = np.linspace(0.0, 1.0, 256)
    if name == "gray":
        channels = [x * 255.0] * 3
    elif name == "jet":
        channels = [np.interp(x, [a for a, _ in ch], [v for _, v in ch]) * 255.0 for ch in _JET]
    elif name in _SAMPLED:
        anchors = (
            np.frombuffer(bytes.fromhex(_SAMPLED[name]), dtype=np.uint8).reshape(-1, 3).astype(np.float64)
        )
        xs = np.linspace(0.0, 1.0, len(anchors))
        channels = [np.interp(x, xs, anchors[:, c]) for c in range(3)]
    else:
        raise ValueError(f"unknown colormap {name!r}; choose from {', '.join(COLORMAPS)}")
    return np.clip(np.rint(np.stack(channels, axis=1)), 0, 255).astype(np.uint8)


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max to [0, 1]; a flat map becomes all zeros instead of dividing by zero."""
    span = hi - lo
    if not math.isfinite(span) or span <= 1e-12:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - lo) / span, 0.0, 1.0).astype(np.float32)


def upsample(values: np.ndarray, size: int) -> np.ndarray:
    """float32 [h, w] -> float32 [size, size], bilinear."""
    img = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))  # mode F
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def colorize(values01: np.ndarray, colormap: str) -> np.ndarray:
    """float [H, W] in [0, 1] -> uint8 [H, W, 3]."""
    return colormap_lut(colormap)[np.rint(values01 * 255.0).astype(np.uint8)]


def _blend(heat: np.ndarray, preview: np.ndarray | None, size: int) -> np.ndarray:
    if preview is None:
        return heat
    base = Image.fromarray(preview)
    if base.size != (size, size):
        base = base.resize((size, size), Image.Resampling.BICUBIC)
    mixed = (1.0 - OVERLAY_ALPHA) * np.asarray(base, dtype=np.float32) + OVERLAY_ALPHA * heat
    return np.rint(mixed).astype(np.uint8)


def render_map(
    maps: np.ndarray,
    index: int,
    *,
    size: int,
    colormap: str = "jet",
    normalize: Normalize = "map",
    preview: np.ndarray | None = None,
) -> np.ndarray:
    """One class's map [K, h, w][index] -> uint8 [size, size, 3], optionally over `preview`."""
    values = upsample(maps[index], size)
    source = maps[index] if normalize == "map" else maps
    heat = colorize(_scale(values, float(source.min()), float(source.max())), colormap)
    return _blend(heat, preview, size)


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: heatmaps are smooth, so fast compression is within ~15% of the best size.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def map_png(maps: np.ndarray, index: int, **options) -> bytes:
    return encode_png(render_map(maps, index, **options))


@cache
def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except Exception:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def grid_png(
    maps: np.ndarray,
    labels: tuple[str, ...] | list[str],
    scores: np.ndarray,
    *,
    cell: int = 128,
    colormap: str = "jet",
    normalize: Normalize = "global",
    preview: np.ndarray | None = None,
) -> bytes:
    """All K maps in one image, in class order, each captioned `label  score`."""
    k = len(labels)
    cols = math.ceil(math.sqrt(2 * k))  # wider than tall: 10 classes -> 5 x 2
    rows = math.ceil(k / cols)
    caption = max(14, cell // 7)
    pad = 4
    canvas = Image.new(
        "RGB", (cols * (cell + pad) + pad, rows * (cell + caption + pad) + pad), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    font = _font(max(9, caption - 4))
    lo, hi = float(maps.min()), float(maps.max())
    for i in range(k):
        r, c = divmod(i, cols)
        x, y = pad + c * (cell + pad), pad + r * (cell + caption + pad)
        values = upsample(maps[i], cell)
        if normalize == "map":
            lo, hi = float(maps[i].min()), float(maps[i].max())
        tile = _blend(colorize(_scale(values, lo, hi), colormap), preview, cell)
        canvas.paste(Image.fromarray(tile), (x, y))
        draw.text((x + 2, y + cell + 1), f"{labels[i]}  {float(scores[i]):.3f}", fill=(0, 0, 0), font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
