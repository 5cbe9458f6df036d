"""The peers' preprocessing must give ninserve's pixels, or the comparison is not like for like."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.core.decode import decode_rgb
from bench import images
from bench.peers import common


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("name", list(images.IMAGES))
def test_bench_images_decode_like_ninserve(name: str) -> None:
    data = images.make(name)
    np.testing.assert_array_equal(common.preprocess(data), decode_rgb(data, 32))


def test_alpha_and_grey_decode_like_ninserve() -> None:
    rng = np.random.default_rng(1)
    rgba = Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA")
    grey = Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L")
    for data in (_encode(rgba, "PNG"), _encode(grey, "PNG"), _encode(rgba.convert("RGB"), "JPEG")):
        np.testing.assert_array_equal(common.preprocess(data), decode_rgb(data, 32))
