"""app/maps.py: numpy colormaps, heatmaps, overlays and the labelled grid."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.maps import COLORMAPS, colormap_lut, grid_png, map_png, render_map, upsample

LABELS = ("a", "b", "c", "d", "e")


def maps(k: int = 5, h: int = 8) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:h].astype(np.float32)
    return np.stack([x * (i + 1) - y for i in range(k)]).astype(np.float32)  # [K, h, w], distinct ranges


@pytest.mark.parametrize("name", COLORMAPS)
def test_luts_are_256_rgb_entries(name: str) -> None:
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8


def test_lut_anchors_match_matplotlib() -> None:
    assert tuple(colormap_lut("viridis")[0]) == (68, 1, 84) and tuple(colormap_lut("viridis")[255]) == (
        253,
        231,
        37,
    )
    assert tuple(colormap_lut("jet")[0]) == (0, 0, 128) and tuple(colormap_lut("jet")[255]) == (128, 0, 0)
    assert tuple(colormap_lut("gray")[128]) == (128, 128, 128)
    with pytest.raises(ValueError):
        colormap_lut("rainbow")


def test_upsample_is_bilinear_and_sized() -> None:
    up = upsample(np.array([[0.0, 1.0], [0.0, 1.0]], np.float32), 64)
    assert up.shape == (64, 64) and up.dtype == np.float32
    assert up[0, 0] == 0.0 and up[0, -1] == 1.0 and 0 < up[0, 32] < 1


def test_render_map_normalisation_and_overlay() -> None:
    m = maps()
    own = render_map(m, 0, size=32, colormap="gray", normalize="map")
    shared = render_map(m, 0, size=32, colormap="gray", normalize="global")
    assert own.shape == (32, 32, 3)
    assert own.max() == 255 and own.min() == 0  # stretched to its own range
    assert shared.max() < 255  # map 0 is not the global maximum
    preview = np.full((16, 16, 3), 200, np.uint8)
    over = render_map(m, 0, size=32, colormap="gray", preview=preview)
    np.testing.assert_allclose(over.astype(float), 0.5 * 200 + 0.5 * own, atol=1)


def test_flat_map_does_not_divide_by_zero() -> None:
    flat = np.zeros((2, 8, 8), np.float32)
    assert (render_map(flat, 1, size=16, colormap="gray") == 0).all()


def test_map_png_and_grid_png_decode() -> None:
    img = Image.open(io.BytesIO(map_png(maps(), 2, size=100, colormap="viridis")))
    assert img.format == "PNG" and img.size == (100, 100) and img.mode == "RGB"
    grid = Image.open(io.BytesIO(grid_png(maps(), LABELS, np.linspace(0.1, 0.3, 5), cell=64)))
    assert grid.format == "PNG"
    assert grid.width > 64 * 3 and grid.height > 64 * 2  # 5 classes: 4 columns x 2 rows + captions
    captions = np.asarray(grid.convert("L"))[64 + 4 : 64 + 4 + 14, 4 : 4 + 64]
    assert captions.min() < 100  # some dark caption text under the first cell
