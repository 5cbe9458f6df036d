"""The benchmark's test images, generated (not downloaded) so every run sends the same bytes.

- `png32`: a 32x32 RGB PNG, the model's native size: no resize, the cheapest decode.
- `jpeg`: a 640x480 JPEG (quality 90), a typical phone-upload-sized photo scaled down: decode
  and the antialiased bicubic downscale dominate, as they do for real clients.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

IMAGES = {"png32": ("image/png", "png"), "jpeg": ("image/jpeg", "jpg")}


def _picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus mild noise: compresses like a photo, not like flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / width * 6.3)
    g = 128 + 100 * np.cos(y / height * 4.1)
    b = 128 + 80 * np.sin((x + y) / (width + height) * 9.0)
    rgb = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def make(name: str) -> bytes:
    buf = io.BytesIO()
    if name == "png32":
        _picture(32, 32).save(buf, format="PNG")
    elif name == "jpeg":
        _picture(640, 480).save(buf, format="JPEG", quality=90)
    else:
        raise ValueError(f"unknown image {name!r}; one of {sorted(IMAGES)}")
    return buf.getvalue()


def write_all(folder: Path) -> dict[str, Path]:
    """Write every test image into `folder`; returns {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (_, ext) in IMAGES.items():
        path = folder / f"{name}.{ext}"
        path.write_bytes(make(name))
        paths[name] = path
    return paths
