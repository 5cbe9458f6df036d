"""app/core/memory.py: the budget split, and prices read from image headers (nothing decoded)."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from app.core import memory
from app.core.decode import decode_image
from app.core.errors import ImageTooLarge, InvalidImage
from app.core.maps import grid_png, map_png
from app.core.memory import STORE_WRITE_BACKLOG, MiB, decode_cost, plan_for, plan_memory, render_cost
from tests.app.helpers import encode, pattern

FIXED = memory.DECODE_FIXED


def test_the_default_plan_fits_the_shipped_limit_and_one_image_at_max_resolution(make_settings) -> None:
    settings = make_settings()
    plan = plan_for(settings)
    assert settings.memory_budget_mb == 800
    assert settings.store_max_bytes == 64 * MiB  # derived from the budget for the memory store
    parts = plan.reserve + plan.models + plan.store + plan.run_bytes + plan.large_decode + plan.render
    assert parts + plan.small_decode * settings.decode_threads <= plan.budget <= 1024 * MiB * 0.8
    assert plan.run_pixels == 256 * 256  # one image at resolution 256 per ORT run
    assert plan.run_bytes == plan.run_pixels * settings.ort_bytes_per_pixel
    # A 1-bit 6300x6300 PNG (39.7 M pixels, the in-limit worst case) can be decoded.
    assert plan.large_decode >= 6300 * 6300 * memory.LIGHT_BYTES_PER_PIXEL


def test_redis_keeps_results_out_of_the_process(make_settings) -> None:
    plan = plan_for(make_settings(result_store="redis://localhost:6379/0"))
    assert plan.store == STORE_WRITE_BACKLOG == 16 * MiB  # only what waits to be written
    assert make_settings(result_store="redis://localhost:6379/0").store_max_bytes == 256 * MiB


def test_a_budget_that_cannot_hold_one_image_at_max_resolution_stops_the_server(make_settings) -> None:
    with pytest.raises(ValueError, match="memory_budget_mb"):
        make_settings(memory_budget_mb=300)
    with pytest.raises(ValueError, match="fewer than one image at max_resolution"):
        make_settings(max_run_pixels=128 * 128)
    with pytest.raises(ValueError, match="leaves nothing"):
        make_settings(memory_budget_mb=256, store_max_bytes=200 * MiB)
    assert plan_for(make_settings(memory_budget_mb=400, max_resolution=128)).run_pixels >= 128 * 128


def test_concurrent_batches_split_the_run_budget() -> None:
    common = dict(
        budget_mb=2000,
        store_bytes=0,
        max_resolution=64,
        native_size=32,
        max_batch_size=1024,
        decode_threads=2,
        ort_bytes_per_pixel=2048,
    )
    one, two = plan_memory(concurrent_batches=1, **common), plan_memory(concurrent_batches=2, **common)
    assert two.run_pixels * 2 <= one.run_pixels + 2
    assert abs(one.run_bytes - two.run_bytes) <= 2 * 2048 * 2


def png_header_only(width: int, height: int, mode: str) -> bytes:
    """A small file whose header claims a large image (a decompression-bomb shape)."""
    return encode(Image.new(mode, (width, height)), "PNG", optimize=True)


def test_decode_cost_from_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = encode(pattern(1, 64))
    opened: list[bytes] = []
    real_open = memory.open_image
    monkeypatch.setattr(
        memory, "open_image", lambda data, limit: opened.append(data) or real_open(data, limit)
    )
    assert decode_cost(rgb, 32, 10**8) == FIXED + 64 * 64 * memory.LIGHT_BYTES_PER_PIXEL
    assert opened == []  # an 8-bit RGB PNG is priced from its IHDR chunk alone
    one_bit = png_header_only(6300, 6300, "1")
    assert len(one_bit) < 8000
    assert decode_cost(one_bit, 32, 40_000_000) == FIXED + 6300 * 6300 * memory.LIGHT_BYTES_PER_PIXEL
    rgba = png_header_only(1000, 1000, "RGBA")
    assert decode_cost(rgba, 32, 10**8) == FIXED + 1000 * 1000 * memory.HEAVY_BYTES_PER_PIXEL
    grey16 = encode(Image.new("I;16", (100, 50)), "PNG")
    assert decode_cost(grey16, 32, 10**8) == FIXED + 100 * 50 * memory.HEAVY_BYTES_PER_PIXEL


def test_a_large_jpeg_is_priced_at_the_scale_libjpeg_decodes_it() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 20, 30)).save(buffer, "JPEG")
    data = buffer.getvalue()
    # Resolution 32 needs 96 px: decoded at 1/8 -> 500x375; resolution 256 needs 768: 1/2.
    assert decode_cost(data, 32, 10**8) == FIXED + 500 * 375 * memory.LIGHT_BYTES_PER_PIXEL
    assert decode_cost(data, 256, 10**8) == FIXED + 2000 * 1500 * memory.LIGHT_BYTES_PER_PIXEL


def test_decode_cost_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(ImageTooLarge):
        decode_cost(png_header_only(3000, 3000, "1"), 32, 1_000_000)
    with pytest.raises(ImageTooLarge):  # the IHDR fast path checks the limit too
        decode_cost(encode(pattern(1, 64)), 32, 64 * 63)
    with pytest.raises(InvalidImage):
        decode_cost(b"not an image at all", 32, 10**8)


def test_render_cost_grows_with_size_overlay_and_cells() -> None:
    assert render_cost(256, overlay=False) < render_cost(256, overlay=True) < render_cost(512, overlay=True)
    assert render_cost(512, overlay=True, cells=10) < 60 * MiB


@pytest.mark.parametrize(("side", "overlay", "cells"), [(2048, True, 1), (1024, False, 1), (512, True, 10)])
def test_render_cost_covers_the_measured_peak(side: int, overlay: bool, cells: int) -> None:
    """The price is an upper bound on what rendering really allocates (numpy and Pillow buffers)."""
    maps = np.random.default_rng(0).standard_normal((10, 8, 8)).astype(np.float32)
    photo = encode(pattern(600, 600), "JPEG")
    preview = decode_image(photo, 32, max_pixels=10**7, preview_size=512).preview if overlay else None
    tracemalloc.start()
    try:
        if cells == 1:
            map_png(maps, 3, size=side, preview=preview)
        else:
            grid_png(maps, [str(i) for i in range(cells)], np.full(cells, 0.1), cell=side, preview=preview)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= render_cost(side, overlay=overlay, cells=cells) <= 1.6 * peak + 2 * MiB


@pytest.mark.parametrize(
    ("mode", "size", "options"),
    [
        ("RGB", (640, 480), {"quality": 90}),
        ("RGB", (640, 480), {"progressive": True}),
        ("RGB", (640, 480), {"subsampling": 0}),
        ("RGB", (641, 479), {"subsampling": 1}),
        ("L", (300, 200), {}),
        ("CMYK", (320, 240), {}),
        ("RGB", (4000, 3000), {"optimize": True}),
        ("RGB", (16, 16), {"restart_marker_blocks": 2}),
        ("RGB", (640, 480), {"exif": b"Exif\x00\x00" + Image.Exif().tobytes(), "comment": b"x" * 5000}),
    ],
)
def test_a_jpeg_priced_from_its_segments_costs_what_pillow_prices(mode, size, options, monkeypatch) -> None:
    buffer = io.BytesIO()
    Image.new(mode, size, "red" if mode != "L" else 128).save(buffer, format="JPEG", **options)
    data = buffer.getvalue()
    walked = memory.jpeg_header(data)
    assert walked is not None and (walked.width, walked.height) == size
    fast = decode_cost(data, 32, 10**9)
    monkeypatch.setattr(memory, "jpeg_header", lambda data: None)  # through Pillow, as before
    assert fast == decode_cost(data, 32, 10**9)


def test_a_walked_jpeg_is_refused_as_pillow_would_refuse_it() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    with pytest.raises(ImageTooLarge) as caught:
        decode_cost(data, 32, max_pixels=400 * 300 - 1)
    assert caught.value.extensions["width"] == 400
    # Not walked: cut before the scan, another frame type, 12-bit: Pillow decides, as before.
    sof = data.index(b"\xff\xc0")
    assert memory.jpeg_header(data[: sof + 6]) is None
    assert memory.jpeg_header(data[:sof] + b"\xff\xc3" + data[sof + 2 :]) is None
    assert memory.jpeg_header(data[: sof + 4] + b"\x0c" + data[sof + 5 :]) is None
    with pytest.raises(InvalidImage):
        decode_cost(data[: sof + 6], 32, 10**9)
