"""app/core/decode.py: every supported format and mode becomes the same 8-bit RGB policy."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from app.core.decode import BACKGROUND, decode_image, decode_rgb, preview_pixels, strip_jpeg_metadata
from app.core.errors import EmptyImage, ImageTooLarge, InvalidImage, UnsupportedMediaType
from tests.app.helpers import encode, pattern, png_chunk

LIMIT = 40_000_000


def decode(data: bytes, size: int = 32, **kw) -> np.ndarray:
    return decode_image(data, size, max_pixels=kw.pop("max_pixels", LIMIT), **kw).pixels


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "GIF", "WEBP", "JPEG"])
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    pixels = pattern(3)
    options = {"WEBP": {"lossless": True}, "JPEG": {"quality": 95, "subsampling": 0}}.get(fmt, {})
    out = decode(encode(pixels, fmt, **options))
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    if fmt in ("PNG", "BMP", "TIFF", "WEBP"):  # lossless: the exact pixels
        np.testing.assert_array_equal(out, pixels)
    else:  # GIF quantises to 256 colours, JPEG is lossy
        assert np.abs(out.astype(int) - pixels).mean() < 12


def test_gif_uses_the_first_frame() -> None:
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    buffer = io.BytesIO()
    red.save(buffer, "GIF", save_all=True, append_images=[blue], duration=100)
    out = decode(buffer.getvalue())
    assert tuple(out[16, 16]) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored left edge becomes the top
    decoded = decode_image(encode(stored, "PNG", exif=exif), 32, max_pixels=LIMIT)
    assert (decoded.width, decoded.height) == (20, 40)
    assert tuple(decoded.pixels[2, 16]) == (255, 0, 0) and tuple(decoded.pixels[29, 16]) == (0, 0, 255)


def _photo(width: int, height: int) -> np.ndarray:
    """Smooth gradients plus a little texture: what JPEG photos look like, unlike pure noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = (x / width * 255, y / height * 255, 128 + 60 * np.sin(x / 9) * np.cos(y / 7))
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def test_large_jpegs_are_decoded_at_reduced_scale_with_the_same_result() -> None:
    data = encode(_photo(640, 480), "JPEG", quality=90)
    decoded = decode_image(data, 32, max_pixels=LIMIT, preview_size=128)
    with Image.open(io.BytesIO(data)) as full:  # every pixel decoded, then the documented resize
        rgb = full.convert("RGB")
        expected = np.asarray(rgb.resize((32, 32), Image.Resampling.BICUBIC, reducing_gap=3.0))
    assert np.abs(decoded.pixels.astype(int) - expected).max() <= 2
    assert (decoded.width, decoded.height) == (640, 480)  # the original size, not the decoded one
    assert preview_pixels(decoded.preview).shape == (96, 128, 3)  # the photo's aspect ratio


def test_reduced_scale_jpegs_report_their_oriented_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(_photo(640, 480), "JPEG", exif=exif), 32, max_pixels=LIMIT)
    assert (decoded.width, decoded.height) == (480, 640)


def test_grey_palette_and_bilevel_become_rgb() -> None:
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    out = decode(encode(grey))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    pal = Image.fromarray(pattern(1)).convert("P", palette=Image.Palette.ADAPTIVE)
    np.testing.assert_array_equal(decode(encode(pal)), np.asarray(pal.convert("RGB")))
    bilevel = Image.fromarray(grey).convert("1")
    assert set(np.unique(decode(encode(bilevel)))) <= {0, 255}


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200  # red-ish...
    rgba[:, 16:, 3] = 255  # ...opaque on the right, fully transparent on the left
    rgba[:16, :16, 3] = 0
    out = decode(encode(rgba))
    assert tuple(out[0, 0]) == BACKGROUND and tuple(out[0, 31]) == (200, 0, 0)
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    assert tuple(decode(encode(la))[0, 0]) == BACKGROUND
    half = rgba.copy()
    half[..., 3] = 128
    assert tuple(decode(encode(half))[0, 0]) == (227, 127, 127)  # 200*a + 255*(1-a), a = 128/255


def test_palette_transparency_is_composited() -> None:
    img = Image.new("P", (32, 32), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 1
    assert tuple(decode(encode(img, "GIF", transparency=1))[5, 5]) == BACKGROUND
    assert tuple(decode(encode(img, "PNG", transparency=1))[5, 5]) == BACKGROUND


def test_cmyk_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    for fmt in ("TIFF", "JPEG"):
        r, g, b = decode(encode(cmyk, fmt))[16, 16].astype(int)
        assert r > 230 and g < 25 and b < 25, fmt


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.full((32, 32), 65535, np.uint16)
    values[:, :16] = 32896  # 128 * 257
    img = Image.fromarray(values)
    assert img.mode.startswith("I")
    out = decode(encode(img, "PNG"))
    assert tuple(out[0, 0]) == (128, 128, 128) and tuple(out[0, 31]) == (255, 255, 255)
    out_tiff = decode(encode(img, "TIFF"))
    assert tuple(out_tiff[0, 31]) == (255, 255, 255)


def test_float_grey_in_unit_range_is_scaled() -> None:
    img = Image.fromarray(np.full((32, 32), 0.5, np.float32))
    assert tuple(decode(encode(img, "TIFF"))[0, 0]) == (128, 128, 128)


def test_resize_is_bicubic_and_stretches() -> None:
    big = pattern(5, size=96)
    expected = np.asarray(Image.fromarray(big).resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(decode(encode(big)), expected)
    wide = np.zeros((32, 64, 3), np.uint8)
    decoded = decode_image(encode(wide), 32, max_pixels=LIMIT)
    assert decoded.pixels.shape == (32, 32, 3) and (decoded.width, decoded.height) == (64, 32)


def test_larger_resolution_and_preview() -> None:
    decoded = decode_image(encode(pattern(2, size=512)), 64, max_pixels=LIMIT, preview_size=256)
    assert decoded.pixels.shape == (64, 64, 3) and preview_pixels(decoded.preview).shape == (256, 256, 3)
    small = decode_image(encode(pattern(2)), 32, max_pixels=LIMIT, preview_size=256)
    assert small.preview is small.pixels  # nothing bigger to keep: the 32x32 hot path copies nothing
    no_preview = decode_image(encode(pattern(2, size=512)), 32, max_pixels=LIMIT, preview_size=32)
    assert no_preview.preview is no_preview.pixels  # callers that render no overlay


def test_preview_keeps_the_aspect_ratio_small_raw_large_jpeg() -> None:
    tiny = decode_image(encode(_photo(60, 30)), 32, max_pixels=LIMIT, preview_size=512)
    assert isinstance(tiny.preview, np.ndarray) and tiny.preview.shape == (30, 60, 3)  # as sent, raw
    np.testing.assert_array_equal(tiny.preview, _photo(60, 30))
    photo = _photo(640, 480)
    big = decode_image(encode(photo, "JPEG", quality=95), 32, max_pixels=LIMIT, preview_size=512)
    assert isinstance(big.preview, bytes) and len(big.preview) < 512 * 384 * 3 // 8  # JPEG, compact
    pixels = preview_pixels(big.preview)
    assert pixels.shape == (384, 512, 3)
    expected = np.asarray(Image.fromarray(photo).resize((512, 384), Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(pixels.astype(int) - expected).mean() < 3  # sharp: no detour through a small square
    tall = decode_image(encode(_photo(300, 900)), 32, max_pixels=LIMIT, preview_size=512)
    assert preview_pixels(tall.preview).shape == (512, 171, 3)


def test_a_small_clean_upload_is_kept_as_its_own_preview() -> None:
    data = encode(_photo(640, 480), "JPEG", quality=90)
    kept = decode_image(data, 32, max_pixels=LIMIT, preview_size=512, keep_bytes=1 << 20)
    assert kept.preview == data  # no work per request: decoded when an overlay is drawn
    assert preview_pixels(kept.preview).shape == (480, 640, 3)
    assert preview_pixels(kept.preview, 200).shape == (240, 320, 3)  # DCT-scaled for a small overlay
    remade = decode_image(data, 32, max_pixels=LIMIT, preview_size=512, keep_bytes=1 << 20).pixels
    reduced = decode_image(data, 32, max_pixels=LIMIT, preview_size=32).pixels  # no preview at all
    np.testing.assert_array_equal(remade, reduced)  # kept: the JPEG still decodes at 1/4 scale
    for reason, upload, options in [
        ("over keep_bytes", data, {"keep_bytes": len(data) - 1}),
        ("over 2 x preview_size", encode(_photo(1100, 300), "PNG"), {"keep_bytes": 1 << 20}),
        ("JPEG over 4 x preview_size", encode(_photo(2100, 40), "JPEG"), {"keep_bytes": 1 << 20}),
        ("PNG text", encode(_photo(300, 200), "PNG", pnginfo=_text_chunk()), {"keep_bytes": 1 << 20}),
    ]:
        preview = decode_image(upload, 32, max_pixels=LIMIT, preview_size=512, **options).preview
        assert isinstance(preview, bytes) and preview != upload, reason
        with Image.open(io.BytesIO(preview)) as remade_preview:
            assert remade_preview.format == "JPEG" and "exif" not in remade_preview.info, reason


def test_a_small_jpeg_is_kept_without_its_metadata_and_decodes_to_the_same_pixels() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # GPS latitude
    photo = Image.fromarray(_photo(1600, 1200))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=80, exif=exif, comment=b"taken at home", icc_profile=b"icc" * 40)
    data = buffer.getvalue() + b"trailer: not an image"
    decoded = decode_image(data, 32, max_pixels=LIMIT, preview_size=512, keep_bytes=1 << 20)
    kept = decoded.preview
    assert isinstance(kept, bytes) and len(kept) < len(data)
    assert b"PhoneMaker" not in kept and b"taken at home" not in kept and b"trailer" not in kept
    with Image.open(io.BytesIO(kept)) as img:
        assert dict(img.getexif()) == {0x0112: 6} and "comment" not in img.info
        assert img.info.get("icc_profile") == b"icc" * 40  # colour, not metadata: kept
    with Image.open(io.BytesIO(data)) as original:  # the same pixels, shown the same way up
        upright = np.asarray(ImageOps.exif_transpose(original).convert("RGB"))
    np.testing.assert_array_equal(preview_pixels(kept), upright)
    assert preview_pixels(kept, 512).shape == (800, 600, 3)  # upright, at 1/2: the smallest DCT scale >= 512
    # the model input is what it is without a preview (decoded at the model's DCT scale)
    alone = decode_image(data, 32, max_pixels=LIMIT, preview_size=32).pixels
    np.testing.assert_array_equal(decoded.pixels, alone)


def test_strip_jpeg_metadata_refuses_what_it_cannot_walk() -> None:
    data = encode(_photo(200, 150), "JPEG")
    assert strip_jpeg_metadata(data) == data  # nothing to cut
    assert strip_jpeg_metadata(data[:-2]) is None  # no end marker
    assert strip_jpeg_metadata(b"\xff\xd8\xff\xe1\xff\xff" + data[2:]) is None  # a segment past the end
    assert strip_jpeg_metadata(b"\x89PNG" + data) is None


def _text_chunk() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone")
    return info


def test_preview_of_a_rotated_jpeg_is_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    decoded = decode_image(encode(_photo(640, 480), "JPEG", exif=exif), 32, max_pixels=LIMIT)
    assert preview_pixels(decoded.preview).shape == (512, 384, 3)


def test_decode_rgb_is_the_training_entry_point() -> None:
    data = encode(pattern(7, size=40))
    np.testing.assert_array_equal(decode_rgb(data, 32), decode(data))


def bomb_png(width: int, height: int) -> bytes:
    """A header that claims width x height, with a few bytes of data: rejected before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [7_000, 60_000])  # over our limit; over Pillow's own bomb limit too
def test_decompression_bomb_is_rejected_from_the_header(side: int) -> None:
    with pytest.raises(ImageTooLarge, match="pixels|bomb"):
        decode(bomb_png(side, side))


def test_pixel_limit_applies_to_real_images() -> None:
    with pytest.raises(ImageTooLarge):
        decode(encode(pattern(0, size=64)), max_pixels=64 * 64 - 1)
    decode(encode(pattern(0, size=64)), max_pixels=64 * 64)


def test_bad_bytes() -> None:
    with pytest.raises(EmptyImage):
        decode(b"")
    with pytest.raises(InvalidImage, match="not a decodable image"):
        decode(b"definitely not an image")
    truncated = encode(pattern(1, size=128))[:400]
    with pytest.raises(InvalidImage):
        decode(truncated)


@pytest.mark.parametrize("fmt", ["ICO", "PPM"])
def test_known_but_unsupported_formats(fmt: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=fmt):
        decode(encode(pattern(1), fmt))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("size", [32, 48])
def test_same_pixels_as_the_training_decoder(fmt: str, size: int) -> None:
    """Train/serve parity on the training data's kind of image (opaque RGB, no EXIF)."""
    from model.data import decode_rgb as training_decode

    data = encode(pattern(size, size=size), fmt)
    np.testing.assert_array_equal(decode_rgb(data, 32), training_decode(data, 32))


def test_strip_jpeg_metadata_walks_past_stuffed_bytes_restarts_and_fill_bytes() -> None:
    """Markers are found by a C-speed search; the entropy-coded data's FF 00 pairs, restart
    markers and fill bytes before a marker stay part of the stream, byte for byte."""
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "camera"
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG", quality=100, restart_marker_blocks=2, exif=exif.tobytes(), comment=b"c")
    data = buffer.getvalue()
    assert data.count(b"\xff\x00") > 50 and b"\xff\xd0" in data  # stuffed bytes and restarts
    sos = data.index(b"\xff\xda")
    filled = data[:sos] + b"\xff\xff" + data[sos:]  # fill bytes before the scan's marker
    for source in (data, filled, data + b"trailer\xff\xd8"):
        kept = strip_jpeg_metadata(source)
        assert kept is not None and b"camera" not in kept and b"\xff\xfe" not in kept[:sos]
        assert kept.endswith(b"\xff\xd9") and kept[kept.index(b"\xff\xda") :] == data[sos:]
        with Image.open(io.BytesIO(kept)) as a, Image.open(io.BytesIO(data)) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
