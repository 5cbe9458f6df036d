"""app/core/maps.py: numpy colormaps, heatmaps, overlays and the labelled grid."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.maps import (
    COLORMAPS,
    class_posterior,
    colormap_lut,
    grid_png,
    legend_words,
    map_png,
    render_map,
    upsample,
    value_range,
    weighted_posterior,
)

LABELS = ("a", "b", "c", "d", "e")
SAMPLES = Path(__file__).resolve().parents[3] / "app" / "web" / "samples"


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
    assert upsample(np.zeros((8, 8), np.float32), 64, 48).shape == (48, 64)


def test_render_map_normalisation_and_overlay() -> None:
    m = maps()
    own = render_map(m, 0, size=32, colormap="gray", normalize="map")
    shared = render_map(m, 0, size=32, colormap="gray", normalize="global")
    assert own.shape == (32, 32, 3)
    assert own.max() == 255 and own.min() == 0  # stretched to its own range
    assert shared.max() < 255  # map 0 is not the global maximum
    weighted = render_map(m, 0, size=32, colormap="gray", normalize="weighted")
    np.testing.assert_array_equal(render_map(m, 0, size=32, colormap="gray"), weighted)  # the default
    preview = np.full((16, 16, 3), 200, np.uint8)
    over = render_map(m, 0, size=32, colormap="gray", normalize="map", preview=preview)
    np.testing.assert_allclose(over.astype(float), 0.5 * 200 + 0.5 * own, atol=1)
    faint = render_map(m, 0, size=32, colormap="gray", normalize="map", preview=preview, alpha=0.2)
    np.testing.assert_allclose(faint.astype(float), 0.8 * 200 + 0.2 * own, atol=1)


def test_a_weak_class_is_not_painted_like_a_strong_one_by_default() -> None:
    """The issue's case: a class at score ~0.001 must not come out as bright as the top class."""
    y, x = np.mgrid[0:8, 0:8].astype(np.float32)
    strong = 12.0 * np.exp(-((x - 4) ** 2 + (y - 4) ** 2) / 6)  # the top class: a clear peak
    weak = -6.0 + 0.5 * np.exp(-((x - 2) ** 2 + (y - 2) ** 2) / 4)  # low everywhere, a tiny bump
    m = np.stack([strong, weak]).astype(np.float32)

    def red_share(pixels: np.ndarray) -> float:  # jet's orange-to-dark-red end
        return float(((pixels[..., 0] > 120) & (pixels[..., 2] < 80)).mean())

    for normalize in ("weighted", "posterior", "global"):  # the weak map stays cool
        assert red_share(render_map(m, 0, size=64, normalize=normalize)) > 0.05
        assert red_share(render_map(m, 1, size=64, normalize=normalize)) == 0.0
    assert red_share(render_map(m, 1, size=64, normalize="map")) > 0.05  # opt-in: its own range
    assert value_range(m, 1, "global") == (float(m.min()), float(m.max()))
    assert value_range(m, 1, "map") == (float(weak.min()), float(weak.max()))


def test_overlays_keep_the_preview_aspect_ratio() -> None:
    m = maps()
    wide = np.zeros((30, 60, 3), np.uint8)
    assert render_map(m, 1, size=200, preview=wide).shape == (100, 200, 3)
    tall = np.zeros((90, 30, 3), np.uint8)
    assert render_map(m, 1, size=90, preview=tall).shape == (90, 30, 3)
    assert render_map(m, 1, size=200).shape == (200, 200, 3)  # no overlay: the model's square grid
    grid = Image.open(io.BytesIO(grid_png(m, LABELS, np.full(5, 0.2), cell=64, preview=wide)))
    square = Image.open(io.BytesIO(grid_png(m, LABELS, np.full(5, 0.2), cell=64)))
    assert grid.width == square.width and grid.height < square.height  # 64x32 cells instead of 64x64


def test_jpeg_previews_are_decoded_for_overlays() -> None:
    photo = np.zeros((240, 320, 3), np.uint8)
    photo[:, 160:] = 255  # right half white
    jpeg = io.BytesIO()
    Image.fromarray(photo).save(jpeg, format="JPEG", quality=90)
    over = render_map(maps(), 0, size=160, colormap="gray", preview=jpeg.getvalue(), alpha=0.0)
    assert over.shape == (120, 160, 3)
    assert over[:, :70].max() < 20 and over[:, 90:].min() > 235  # the photo itself, alpha 0


def test_legend_adds_title_and_colour_bar() -> None:
    m = maps()
    plain = Image.open(io.BytesIO(map_png(m, 2, size=256, colormap="viridis")))
    legend = Image.open(
        io.BytesIO(map_png(m, 2, size=256, colormap="viridis", legend=True, label="c", score=0.5))
    )
    assert legend.width == 256 and legend.height > plain.height + 30
    strip = np.asarray(legend.convert("RGB"))[256:]
    lut = colormap_lut("viridis").astype(int)
    row = next(r for r in strip if (np.abs(r[128].astype(int) - lut).sum(axis=-1) < 8).any())
    assert (
        np.abs(row[6].astype(int) - lut[0]).sum() < 12 and np.abs(row[-8].astype(int) - lut[255]).sum() < 12
    )
    small = Image.open(io.BytesIO(map_png(m, 2, size=64, legend=True, label="c")))
    assert small.width >= 200  # a margin keeps the legend's text legible under a small map
    grid = Image.open(io.BytesIO(grid_png(m, LABELS, np.full(5, 0.2), cell=64, legend=True)))
    assert grid.height > Image.open(io.BytesIO(grid_png(m, LABELS, np.full(5, 0.2), cell=64))).height


def test_flat_map_does_not_divide_by_zero() -> None:
    flat = np.zeros((2, 8, 8), np.float32)
    for normalize in ("global", "map"):
        assert (render_map(flat, 1, size=16, colormap="gray", normalize=normalize) == 0).all()
    assert (render_map(flat, 1, size=16, colormap="gray", normalize="posterior") == 128).all()  # 0.5 each
    assert (render_map(flat, 1, size=16, colormap="gray") == 64).all()  # weighted: score 0.5 x 0.5


def test_map_png_and_grid_png_decode() -> None:
    img = Image.open(io.BytesIO(map_png(maps(), 2, size=100, colormap="viridis")))
    assert img.format == "PNG" and img.size == (100, 100) and img.mode == "RGB"
    grid = Image.open(io.BytesIO(grid_png(maps(), LABELS, np.linspace(0.1, 0.3, 5), cell=64)))
    assert grid.format == "PNG"
    assert grid.width > 64 * 3 and grid.height > 64 * 2  # 5 classes: 4 columns x 2 rows + captions
    captions = np.asarray(grid.convert("L"))[64 + 4 : 64 + 4 + 14, 4 : 4 + 64]
    assert captions.min() < 100  # some dark caption text under the first cell


def test_posterior_is_a_distribution_over_classes_at_each_location() -> None:
    m = maps() * 40.0  # large logits: the softmax must not overflow
    p = class_posterior(m)
    assert p.shape == m.shape and p.dtype == np.float32
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(p.argmax(axis=0), m.argmax(axis=0))
    np.testing.assert_allclose(class_posterior(m + 7.0), p, rtol=1e-5, atol=1e-7)  # only differences count
    assert value_range(m, 2, "posterior") == (0.0, 1.0)


def test_posterior_colours_are_probabilities_on_one_fixed_scale() -> None:
    """Where every class is high, `global` paints every map red; the posterior shows the one class
    that wins there, and the tiles of one location sum to one (at most one can be above half)."""
    y, x = np.mgrid[0:8, 0:8].astype(np.float32)
    everyone = 10.0 * np.exp(-((x - 2) ** 2 + (y - 2) ** 2) / 3)  # a spot where all classes are high
    strong = everyone + 3.0 * np.exp(-((x - 5) ** 2 + (y - 5) ** 2) / 4)
    weak = everyone + 0.5
    m = np.stack([strong, weak, everyone]).astype(np.float32)
    gray = [
        render_map(m, i, size=8, colormap="gray", normalize="posterior")[..., 0].astype(int) for i in range(3)
    ]
    # gray: level = round(255 * probability); three levels that sum to 255 within rounding
    assert np.abs(sum(gray) - 255).max() <= 2
    logit_peaks = [render_map(m, i, size=8, colormap="gray", normalize="global").max() for i in range(3)]
    assert min(logit_peaks) > 200  # the shared logit scale: every map has a bright spot
    assert gray[0].max() > 128 > max(gray[1].max(), gray[2].max())


def test_legend_words_say_what_the_colours_are() -> None:
    assert legend_words("posterior", 0.0, 1.0) == (
        "0",
        "1",
        ("probability of this class at this location", "probability of this class here", "probability"),
    )
    assert legend_words("global", -1.5, 12.25)[:2] == ("-1.50", "12.25")
    assert "logit" in legend_words("global", -1.5, 12.25)[2][0]
    assert legend_words("map", None, None, grid=True)[:2] == ("low", "high")
    assert (
        legend_words("posterior", 0.0, 1.0, grid=True)[2][0] == "probability of each class at this location"
    )


def test_weighted_is_the_score_times_the_posterior_and_never_above_the_score() -> None:
    m = maps() * 3.0
    logits = m.mean(axis=(1, 2))
    scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    w = weighted_posterior(m)
    np.testing.assert_allclose(w, class_posterior(m) * scores[:, None, None], rtol=1e-5, atol=1e-8)
    assert (w.reshape(5, -1).max(axis=1) <= scores + 1e-6).all()
    assert (w.sum(axis=0) <= 1 + 1e-6).all()
    assert value_range(m, 0, "weighted") == (0.0, 1.0)


def test_on_the_shipped_airplane_sample_the_default_does_not_paint_a_weak_class_reddest() -> None:
    """The real model on app/web/samples/cifar10-airplane.jpg (airplane ~97 %): with the shared logit
    scale the deer map (~1 %) holds the highest value of all maps, and the plain posterior paints
    deer's patch as red as airplane's (the local logits are large: nearly one-hot). The default,
    weighted by the score, keeps deer below its score while airplane reaches red."""
    ort = pytest.importorskip("onnxruntime")
    from app.config import DEFAULT_MODEL_PATH
    from app.core.decode import decode_rgb

    session = ort.InferenceSession(str(DEFAULT_MODEL_PATH), providers=["CPUExecutionProvider"])
    photo = (SAMPLES / "cifar10-airplane.jpg").read_bytes()
    scores, m = session.run(["scores", "confidence_maps"], {"image": decode_rgb(photo, 32)[None]})
    scores, m = scores[0], m[0]
    airplane, deer = 0, 4
    assert scores.argmax() == airplane and scores[airplane] > 0.9 and scores[deer] < 0.05

    def peaks(normalize: str) -> np.ndarray:  # each class's highest colour level (gray: 0..255)
        return np.array(
            [render_map(m, i, size=64, colormap="gray", normalize=normalize).max() for i in range(10)]
        )

    assert peaks("global").argmax() == deer  # the misleading case
    assert peaks("posterior")[deer] >= peaks("posterior")[airplane] - 2  # a tie at the top colour
    weighted = peaks("weighted")
    assert weighted.argmax() == airplane and weighted[airplane] > 200
    assert (weighted[scores < 0.05] <= 255 * 0.05).all()  # a weak class stays at the cool end
