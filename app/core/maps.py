"""Confidence maps -> pictures: colormapped heatmaps, overlays on the input, a labelled grid.

Colormaps are lookup tables in numpy (no matplotlib at runtime): jet is matplotlib's piecewise-
linear definition, exact; viridis, inferno, magma and turbo are matplotlib's tables sampled at 33
points and linearly interpolated (within 3/255 of the originals, 4/255 for inferno).
Maps are upsampled bilinearly as float32, then normalised and colour-mapped, so edges stay smooth.

Normalisation decides what a colour means, so the default must not mislead. The K maps of one
image are logits per location (the global average of each is its class's logit, and the softmax
of those is the scores). Four choices, two bounded to [0, 1] and the same for every class:

- `posterior`: the softmax over the K maps at each location, the probability of the class at
  that location (what the net would say of an image that looked like that spot everywhere). The
  K values of a location sum to 1. This model's local logits span 0-40, so it is nearly one-hot:
  on 99 % of the CIFAR-10 training images where the logit scale misleads, some class scored
  under 5 % still reaches the top colour (or ties) where it wins locally (bench/map_scales.py).
- `weighted`, the default: the class's score times that posterior, the probability that the
  image is this class and this location says so. It never exceeds the class's score, so a class
  the net does not pick stays cool while the top class is red where it is seen; a runner-up at
  0.3 still shows, at most at 0.3. The K values of a location sum to at most 1.
- `global`: the raw logits of all classes through one range. It compares magnitudes, but a
  class can hold the reddest spot with a score of 1 % (on the shipped airplane sample the deer
  map, score 0.014, does).
- `map`: each map stretched to its own min-max: the *shape* of a weak class's evidence, painted
  as red as a strong class's.

`legend=True` adds the class, its score and a colour bar labelled in the scale's unit, so a
picture saved on its own still says what its colours mean.

Overlays keep the input's aspect ratio: the net sees a stretched square, so its map is stretched
back over the stored preview (app/core/decode.py), whose long side becomes `size`.
CPU-bound: callers run these in a thread pool.
"""

from __future__ import annotations

import io
import math
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.core.decode import Preview, preview_pixels

Normalize = Literal["weighted", "posterior", "global", "map"]
NORMALIZE_DEFAULT: Normalize = "weighted"
BOUNDED = frozenset({"weighted", "posterior"})  # probabilities: colours from 0 to 1 for every class
# What the colour bar's values are, per normalisation: the legend's words and the X-Map-Units header.
UNITS: dict[str, str] = {
    "weighted": "probability",
    "posterior": "probability",
    "global": "logit",
    "map": "logit",
}

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
OVERLAY_ALPHA = 0.5  # default heatmap weight over the input image
LEGEND_MIN_WIDTH = 220  # px: a narrower image gets a white margin so the legend stays legible


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


def class_posterior(maps: np.ndarray) -> np.ndarray:
    """[K, h, w] logits -> [K, h, w] float32 in [0, 1]: the softmax over classes at each location."""
    shifted = maps.astype(np.float32) - maps.max(axis=0, keepdims=True)  # no overflow in exp
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=0, keepdims=True)
    return shifted


def weighted_posterior(maps: np.ndarray) -> np.ndarray:
    """[K, h, w] logits -> [K, h, w] float32: each class's score (the softmax of the maps' means,
    as the model computes it) times its posterior at each location; never above the score."""
    logits = maps.mean(axis=(1, 2), dtype=np.float64)
    scores = np.exp(logits - logits.max())
    scores /= scores.sum()
    posterior = class_posterior(maps)
    posterior *= scores.astype(np.float32)[:, None, None]
    return posterior


def map_values(maps: np.ndarray, normalize: Normalize) -> np.ndarray:
    """The [K, h, w] values that get colours: probabilities for the bounded scales, else the logits."""
    if normalize == "weighted":
        return weighted_posterior(maps)
    return class_posterior(maps) if normalize == "posterior" else maps


def value_range(maps: np.ndarray, index: int, normalize: Normalize) -> tuple[float, float]:
    """The (low, high) values that become the colormap's ends for class `index`: probabilities
    0 and 1 for `weighted` and `posterior`, logits for `global` and `map`."""
    if normalize in BOUNDED:
        return 0.0, 1.0
    source = maps[index] if normalize == "map" else maps
    return float(source.min()), float(source.max())


def upsample(values: np.ndarray, width: int, height: int | None = None) -> np.ndarray:
    """float32 [h, w] -> float32 [height, width] (square when height is None), bilinear."""
    img = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))  # mode F
    return np.asarray(img.resize((width, height or width), Image.Resampling.BILINEAR), dtype=np.float32)


def colorize(values01: np.ndarray, colormap: str) -> np.ndarray:
    """float [H, W] in [0, 1] -> uint8 [H, W, 3]."""
    return colormap_lut(colormap)[np.rint(values01 * 255.0).astype(np.uint8)]


def fit_box(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(width, height) with the aspect ratio of an [h, w, ...] array and a long side of `size`."""
    h, w = shape[:2]
    scale = size / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _backdrop(pixels: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """The preview resized to box (w, h) as float32, ready to blend."""
    img = Image.fromarray(pixels)
    if img.size != box:
        img = img.resize(box, Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _blend(heat: np.ndarray, base: np.ndarray | None, alpha: float) -> np.ndarray:
    """(1 - alpha) * base + alpha * heat in 8.8 fixed point, in place in uint16: a 2048 px overlay
    is a 12 M-value image, and float64 temporaries made it peak at 50 bytes per output pixel
    (app/core/memory.py prices renders). Within one grey level of the float blend."""
    if base is None:
        return heat
    weight = round(alpha * 256)
    mixed = base.astype(np.uint16)
    mixed *= 256 - weight
    top = heat.astype(np.uint16)
    top *= weight
    mixed += top
    mixed += 128  # round to nearest: 255 * 256 + 128 still fits in 16 bits
    mixed >>= 8
    return mixed.astype(np.uint8)


def render_map(
    maps: np.ndarray,
    index: int,
    *,
    size: int,
    colormap: str = "jet",
    normalize: Normalize = NORMALIZE_DEFAULT,
    preview: Preview | None = None,
    alpha: float = OVERLAY_ALPHA,
) -> np.ndarray:
    """One class's map [K, h, w][index] -> uint8 RGB: size x size, or over `preview` with the
    preview's aspect ratio and a long side of `size`."""
    base_pixels = None if preview is None else preview_pixels(preview, size)
    box = (size, size) if base_pixels is None else fit_box(base_pixels.shape, size)
    values = upsample(map_values(maps, normalize)[index], *box)
    heat = colorize(_scale(values, *value_range(maps, index, normalize)), colormap)
    return _blend(heat, None if base_pixels is None else _backdrop(base_pixels, box), alpha)


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: heatmaps are smooth, so fast compression is within ~15% of the best size.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def map_png(
    maps: np.ndarray,
    index: int,
    *,
    legend: bool = False,
    label: str = "",
    score: float | None = None,
    **options,
) -> bytes:
    """`render_map` as PNG; `legend` adds `label`, `score` and a colour bar under the image."""
    pixels = render_map(maps, index, **options)
    if legend:
        normalize = options.get("normalize", NORMALIZE_DEFAULT)
        lo, hi = value_range(maps, index, normalize)
        title = label if score is None else f"{label}   score {score:.3f}"
        pixels = add_legend(pixels, title, lo, hi, options.get("colormap", "jet"), normalize)
    return encode_png(pixels)


@cache
def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except Exception:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def legend_words(
    normalize: Normalize, lo: float | None, hi: float | None, *, grid: bool = False
) -> tuple[str, str, tuple[str, ...]]:
    """The colour bar's two end labels and its caption (longest first: the first that fits is used).

    lo/hi None: each map has its own range, so the ends are low/high instead of numbers."""
    whose = "each class" if grid else "this class"
    captions: tuple[str, ...]
    if normalize == "posterior":
        captions = (f"probability of {whose} at this location", f"probability of {whose} here", "probability")
        return "0", "1", captions
    if normalize == "weighted":
        captions = (
            f"score x probability of {whose} at this location",
            f"score x probability of {whose} here",
            "score x probability here",
            "score x probability",
        )
        return "0", "1", captions
    if lo is None or hi is None:
        return "low", "high", ("logit, each map its own range", "logit, own range per map")
    if normalize == "map":
        return f"{lo:.2f}", f"{hi:.2f}", ("logit, this map's own range", "logit, own range", "logit")
    return f"{lo:.2f}", f"{hi:.2f}", ("logit, one range for all classes", "logit, all classes", "logit")


def add_legend(
    pixels: np.ndarray,
    title: str,
    lo: float | None,
    hi: float | None,
    colormap: str,
    normalize: Normalize = NORMALIZE_DEFAULT,
    *,
    grid: bool = False,
) -> np.ndarray:
    """Append a white strip: `title`, then a colour bar from `lo` to `hi`, labelled with its ends and
    what its values are (probabilities or logits, `legend_words`)."""
    height, width = pixels.shape[:2]
    canvas_w = max(width, LEGEND_MIN_WIDTH)
    text_px = max(11, min(16, canvas_w // 22))
    bar_h, pad = max(8, text_px - 2), 6
    strip = 3 * pad + 2 * text_px + bar_h + text_px + 2
    canvas = Image.new("RGB", (canvas_w, height + strip), (255, 255, 255))
    canvas.paste(Image.fromarray(pixels), ((canvas_w - width) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font(text_px)
    y = height + pad
    if title:
        draw.text((pad, y), title, fill=(0, 0, 0), font=font)
    y += text_px + pad
    bar_w = canvas_w - 2 * pad
    ramp = colormap_lut(colormap)[np.rint(np.linspace(0, 255, bar_w)).astype(np.uint8)]
    canvas.paste(Image.fromarray(np.ascontiguousarray(np.broadcast_to(ramp, (bar_h, bar_w, 3)))), (pad, y))
    draw.rectangle((pad - 1, y - 1, pad + bar_w, y + bar_h), outline=(90, 90, 90))
    y += bar_h + 3
    low, high, captions = legend_words(normalize, lo, hi, grid=grid)
    room = bar_w - 2 * max(draw.textlength(low, font=font), draw.textlength(high, font=font)) - 2 * pad
    middle = next((c for c in captions if draw.textlength(c, font=font) <= room), captions[-1])
    draw.text((pad, y), low, fill=(0, 0, 0), font=font)
    draw.text((canvas_w // 2, y), middle, fill=(60, 60, 60), font=font, anchor="ma")
    draw.text((canvas_w - pad, y), high, fill=(0, 0, 0), font=font, anchor="ra")
    return np.asarray(canvas)


def grid_png(
    maps: np.ndarray,
    labels: tuple[str, ...] | list[str],
    scores: np.ndarray,
    *,
    cell: int = 128,
    colormap: str = "jet",
    normalize: Normalize = NORMALIZE_DEFAULT,
    preview: Preview | None = None,
    alpha: float = OVERLAY_ALPHA,
    legend: bool = False,
) -> bytes:
    """All K maps in one image, in class order, each captioned `label  score`; overlay cells keep
    the preview's aspect ratio (long side `cell`)."""
    k = len(labels)
    cols = math.ceil(math.sqrt(2 * k))  # wider than tall: 10 classes -> 5 x 2
    rows = math.ceil(k / cols)
    base_pixels = None if preview is None else preview_pixels(preview, cell)
    box = (cell, cell) if base_pixels is None else fit_box(base_pixels.shape, cell)
    base = None if base_pixels is None else _backdrop(base_pixels, box)  # resized once, not per cell
    caption = max(14, cell // 7)
    pad = 4
    canvas = Image.new(
        "RGB", (cols * (box[0] + pad) + pad, rows * (box[1] + caption + pad) + pad), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    font = _font(max(9, caption - 4))
    source = map_values(maps, normalize)
    for i in range(k):
        r, c = divmod(i, cols)
        x, y = pad + c * (box[0] + pad), pad + r * (box[1] + caption + pad)
        values = upsample(source[i], *box)
        lo, hi = value_range(maps, i, normalize)
        tile = _blend(colorize(_scale(values, lo, hi), colormap), base, alpha)
        canvas.paste(Image.fromarray(tile), (x, y))
        draw.text((x + 2, y + box[1] + 1), f"{labels[i]}  {float(scores[i]):.3f}", fill=(0, 0, 0), font=font)
    pixels = np.asarray(canvas)
    if legend:
        shared = normalize != "map"
        lo, hi = value_range(maps, 0, normalize)
        pixels = add_legend(
            pixels, "", lo if shared else None, hi if shared else None, colormap, normalize, grid=True
        )
    return encode_png(pixels)
