"""Image bytes -> the model's pixels: the one decode/resize policy shared by training and serving.

Policy (train and serve must see the same pixels, so `model/data.py` should call `decode_rgb`):
  1. Only JPEG, PNG, WebP, BMP, GIF and TIFF are opened; the header's width*height is checked
     against a pixel limit *before* any pixel is decoded (decompression bombs).
  2. Multi-frame files (GIF, WebP, TIFF) use their first frame; EXIF orientation is applied.
  3. Every mode becomes 8-bit RGB: alpha (RGBA, LA, palette transparency) is composited over
     white, 16-bit and 32-bit integer grey is scaled (not clipped) to 8 bits, float grey in
     [0, 1] is scaled by 255, CMYK/YCbCr/LAB/palette/1-bit are converted by Pillow.
  4. The image is resized to size x size with Pillow's bicubic filter, which is antialiased
     when downscaling (its support widens with the scale factor), after a box reduction by an
     integer factor that keeps at least 3x the target size (Pillow's `reducing_gap=3`): within
     one grey level of the exact filter, and 5x faster for a 640x480 photo. Non-square images
     are stretched, not cropped: CIFAR objects fill the frame, and a crop can cut the object out.
     A JPEG at least twice as large as that box reduction keeps (3x the target) is decoded at
     1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (Pillow's `draft`), which does the box
     reduction's work during decoding: within one grey level of decoding at full size, and
     1.67 -> 1.18 ms for a 640x480 photo (`decode_image`).
  5. The preview, the backdrop of map overlays, keeps the input's aspect ratio (an overlay must
     not stretch a photo) with its long side up to `preview_size`, and costs the request as little
     as possible: a 32x32 input is its own preview; an upload of at most `keep_bytes` is kept and
     decoded only when an overlay is drawn (`preview_pixels`) when it is a JPEG of at most
     4 x `preview_size` on a side (libjpeg decodes it at 1/2 or 1/4 scale for overlays), kept without its
     metadata segments (`strip_jpeg_metadata`: EXIF, XMP, IPTC, comments; the EXIF orientation
     stays, as a one-tag EXIF), or any other format of at most 2 x `preview_size` on a side that
     carries no metadata (`KEPT_INFO` lists what may be there); anything else is reduced to
     `preview_size` and kept as JPEG, or as raw pixels when that small. So no upload's metadata is
     kept, and a phone photo's classification decodes it at the model's DCT scale only: a
     640x480 JPEG with EXIF took ~3x as long when its preview was made per request.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import time
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from app.core.errors import (
    DeadlineExceeded,
    EmptyImage,
    ImageTooComplex,
    ImageTooLarge,
    InvalidImage,
    MetadataTooLarge,
    UnsupportedMediaType,
)

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
# Content-Types a raw (non-multipart) body may declare; the bytes are still sniffed.
SUPPORTED_MEDIA_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "image/webp",
        "image/bmp",
        "image/x-bmp",
        "image/x-ms-bmp",
        "image/gif",
        "image/tiff",
        "image/tif",
    }
)
BACKGROUND = (255, 255, 255)  # alpha is composited over white, in training and serving alike
RESAMPLE = Image.Resampling.BICUBIC
REDUCING_GAP = 3.0  # box-reduce first while the image stays >= 3x the target: same pixels +-1
# The preview only sits under a heatmap overlay: bilinear from the nearest box reduction is enough,
# and at a third of the cost it stops the preview from costing more than the model's own input.
PREVIEW_RESAMPLE, PREVIEW_REDUCING_GAP = Image.Resampling.BILINEAR, 1.0
# Previews up to this long side stay raw pixels (<= 48 KB): encoding them would cost more time than
# the bytes it saves. Larger re-made ones become JPEG at this quality: under a 50 % heatmap the
# artefacts are invisible, and a 512x384 preview takes ~40 KB instead of 590 KB.
PREVIEW_RAW_MAX_SIDE, PREVIEW_JPEG_QUALITY = 128, 90
# Scans (SOS markers) a JPEG may have. libjpeg decodes every progressive scan over every block of
# its components, so the work grows with scans x pixels: 3,000 scans in 281 KB kept a 4000x4000
# image decoding for ~30 s. Encoders write 6 (grey) to 10 (colour) scans with libjpeg's default
# progression, ~24 for CMYK, a handful more with mozjpeg's scan optimisation; libjpeg-turbo's own
# tools stop at 500 (`djpeg -maxscans`, TJPARAM_SCANLIMIT), a bound for files of any size. 100 is
# four times the most an encoder writes and keeps a 40 M-pixel worst case to a few seconds.
MAX_JPEG_SCANS = 100
PILLOW_READ_BLOCK = 65536  # what Pillow's decoders read at a time (ImageFile.decodermaxblock)
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
# Pillow `info` keys that say how to decode, not who, where or when: an upload with any other key
# (exif, xmp, comment, PNG text, photoshop, TIFF tags, ...) is never kept as sent.
# JPEG segments kept when an upload is kept as its own preview: JFIF (APP0), ICC profile (APP2) and
# Adobe (APP14, its colour transform changes how the pixels decode); every other APPn and comments go.
JPEG_KEPT_APPS = frozenset({0xE0, 0xE2, 0xEE})
# After 0xFF, not a segment: a stuffed zero and restart markers (inside entropy-coded data), a fill byte.
_NOT_MARKERS = frozenset({0x00, *range(0xD0, 0xD8), 0xFF})
# The next marker that may start a segment: 0xFF then anything but _NOT_MARKERS, found at C speed
# (the entropy-coded data of a 110 KB photo holds hundreds of stuffed FF 00 pairs).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# x preview_size: a kept JPEG decodes at a DCT scale for the overlay, at most 2048 px for the largest
# one (~9 MB), well within the render price of a 2048 px overlay (app/core/memory.py).
JPEG_KEEP_SIDE = 4
KEPT_INFO = frozenset(
    {
        "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "progressive", "progression",
        "adobe", "adobe_transform", "icc_profile", "gamma", "srgb", "chromaticity", "transparency",
        "background", "interlace", "aspect", "compression", "version", "duration", "loop",
        "timestamp",
    }
)  # fmt: skip

# The stored overlay backdrop: uint8 [h, w, 3] RGB pixels, or an encoded image (the upload as sent,
# or a JPEG made from it) that `preview_pixels` decodes.
Preview = np.ndarray | bytes


@dataclass(frozen=True, slots=True)
class DecodedImage:
    pixels: np.ndarray  # uint8 [size, size, 3] RGB: the model input
    preview: Preview  # the input at its own aspect ratio, long side <= preview_size, for overlays
    width: int  # original size, after EXIF orientation
    height: int
    format: str  # Pillow's format name, e.g. "PNG"


class _DeadlineReader(io.BytesIO):
    """The upload as a file that refuses to be read past `deadline`: Pillow's decoders read their
    input block by block, so a decode that outlives its request stops at its next read and frees
    what it holds, instead of keeping its thread (and the lane it runs in) for as long as it takes.

    `stops` (offsets of a JPEG's scans) end a read early at the next scan: libjpeg then returns
    after each scan, so a file of tiny scans, each a pass over the whole image, is checked after
    every one of them instead of all of them arriving in one 64 KB read."""

    def __init__(self, data: bytes, deadline: float) -> None:
        super().__init__(data)
        self.deadline = deadline
        self.stops: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        late = time.monotonic() - self.deadline
        if late > 0:
            raise DeadlineExceeded(f"the request's deadline passed {late * 1000:.0f} ms into decoding")
        if self.stops and size is not None and size > 0:
            here = self.tell()
            while self.stops and self.stops[0] <= here:
                self.stops.pop(0)
            if self.stops:
                size = min(size, self.stops[0] - here)
        return super().read(size)


def open_image(data: bytes, max_pixels: int, deadline: float | None = None) -> Image.Image:
    """Open (header only) and check format, size and, for JPEG, scans; raises InvalidImage,
    ImageTooLarge (and its ImageTooComplex, MetadataTooLarge) or UnsupportedMediaType. With a
    `deadline` (time.monotonic), reading the pixels later raises DeadlineExceeded once it passes."""
    if not data:
        raise EmptyImage("the image is empty (0 bytes)")
    try:
        # Files Pillow reads in one block gain nothing from a deadline between reads (a 32x32 PNG
        # would pay ~10 us for the checks); JPEGs are read scan by scan (_DeadlineReader).
        timed = deadline is not None and (data[:2] == b"\xff\xd8" or len(data) > PILLOW_READ_BLOCK)
        source = _DeadlineReader(data, deadline) if timed and deadline is not None else io.BytesIO(data)
        img = Image.open(source, formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge("image rejected as a decompression bomb: too many pixels") from None
    except DeadlineExceeded:
        raise
    except Exception as exc:  # corrupt headers raise anything from SyntaxError to struct.error
        raise _metadata_too_large(exc) or InvalidImage(
            "cannot read the image header: corrupt or truncated"
        ) from None
    try:
        check_pixels(*img.size, max_pixels)
    except ImageTooLarge:
        img.close()
        raise
    return img


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """InvalidImage for no pixels, ImageTooLarge for more than `max_pixels`: the header's verdict."""
    if width < 1 or height < 1:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            width=width,
            height=height,
            max_pixels=max_pixels,
        )


@dataclass(frozen=True, slots=True)
class JpegHeader:
    """What pricing needs from a JPEG, read in one walk of its segments (jpeg_header)."""

    width: int
    height: int
    layers: list[tuple[int, int, int, int]]  # per component: (id, h, v, table), as Pillow's `layer`
    progressive: bool
    first_scan: int  # offset of the first SOS marker
    buffered: bool  # libjpeg keeps the whole image's coefficients (see jpeg_first_scan)


# Frames priced from jpeg_header: Huffman baseline, extended and progressive, 8-bit samples (what
# every camera and encoder writes). Anything else is opened with Pillow to be priced.
_WALKED_SOF = frozenset({0xC0, 0xC1, 0xC2})


def jpeg_header(data: bytes) -> JpegHeader | None:
    """Size, components and scan layout from the segments before the first scan, without Pillow
    (~3 us against ~21 us for Image.open, which parses every APPn in Python); None for anything
    not laid out plainly (no SOF or SOS reached, another frame type, not 8-bit, not 1, 3 or 4
    components), which is then priced through Pillow as before."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end, sof = 2, len(data), None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xDA:
            if sof is None:
                return None
            width, height, layers, progressive = sof
            in_scan = data[pos + 4] if pos + 4 < end else 0
            return JpegHeader(width, height, layers, progressive, pos, progressive or in_scan < len(layers))
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > end:
            return None
        if marker in _SOF:
            if marker not in _WALKED_SOF or sof is not None or length < 8 or data[pos + 4] != 8:
                return None
            height, width = (
                int.from_bytes(data[pos + 5 : pos + 7], "big"),
                int.from_bytes(data[pos + 7 : pos + 9], "big"),
            )
            count = data[pos + 9]
            if count not in (1, 3, 4) or length != 8 + 3 * count:
                return None
            at = pos + 10
            layers = [
                (data[i], data[i + 1] >> 4, data[i + 1] & 15, data[i + 2])
                for i in range(at, at + 3 * count, 3)
            ]
            sof = (width, height, layers, marker == 0xC2)
        pos += 2 + length
    return None


def jpeg_first_scan(data: bytes) -> tuple[int, bool]:
    """(offset of the first scan's SOS marker or -1, whether libjpeg keeps the whole image's
    coefficients: a progressive file, or a sequential one whose first scan lacks a component).

    Walks the segments before the first scan by their lengths (an EXIF thumbnail's own scans sit
    inside APP1 and are skipped): a few segments, a few microseconds, no pixel decoded."""
    pos, end, progressive, components = 2, len(data), False, 0
    while pos + 4 <= end:
        if data[pos] != 0xFF:  # junk between segments: libjpeg and Pillow skip to the next FF
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
        elif marker == 0xDA:
            in_scan = data[pos + 4] if pos + 4 < end else 0
            return pos, progressive or in_scan < components
        else:
            if marker in _SOF and pos + 9 < end:
                progressive, components = marker in _PROGRESSIVE_SOF, data[pos + 9]
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return -1, progressive


def jpeg_scans(data: bytes, limit: int = MAX_JPEG_SCANS) -> list[int]:
    """Offsets of a JPEG's scans (SOS markers), at most `limit` + 1 of them (more is refused).

    A single-scan file is answered from its header. Otherwise every FF DA between the first scan
    and the end of the image (EOI) is a scan: entropy-coded data never holds an FF followed by
    anything but 00 or a restart marker. Bytes after EOI (a phone's appended video or second
    image) are not counted. C-speed searches: ~3 ms a MB on the shared 2-core machine."""
    first, buffered = jpeg_first_scan(data)
    if first < 0:  # headers that could not be walked: every FF DA counts, thumbnails' too
        first, buffered = data.find(b"\xff\xda"), True
    if first < 0 or not buffered:
        return [first] if first >= 0 else []
    eoi = data.find(b"\xff\xd9", first)
    end = eoi if eoi >= 0 else len(data)
    scans, pos = [first], first
    while len(scans) <= limit and (pos := data.find(b"\xff\xda", pos + 2, end)) >= 0:
        scans.append(pos)
    return scans


def _metadata_too_large(exc: Exception) -> MetadataTooLarge | None:
    """Pillow's refusal of a PNG text, zTXt, iTXt or iCCP chunk that inflates past 1 MB, or of
    text chunks past 64 MB together (its MAX_TEXT_CHUNK, MAX_TEXT_MEMORY), in our words."""
    if isinstance(exc, ValueError) and "MAX_TEXT_" in str(exc):
        return MetadataTooLarge(
            "a metadata chunk is too large: PNG text and ICC profile chunks may inflate to 1 MB "
            "each, 64 MB together"
        )
    return None


def _unidentified(data: bytes) -> Exception:
    """415 when Pillow knows the format but we do not serve it, 400 for anything else."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            fmt = other.format
    except Exception:
        return InvalidImage("the data is not a decodable image (JPEG, PNG, WebP, BMP, GIF or TIFF)")
    return UnsupportedMediaType(
        f"image format {fmt} is not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF"
    )


def oriented_size(img: Image.Image, turn: int | None = None) -> tuple[int, int]:
    """(width, height) as shown, after EXIF orientation (5-8 swap the axes); `turn`: the
    orientation when the caller has read it already."""
    width, height = img.size
    if turn is None:
        turn = orientation(img)
    return (height, width) if turn in (5, 6, 7, 8) else (width, height)


def to_rgb(img: Image.Image, turn: int | None = None) -> Image.Image:
    """First frame, EXIF-oriented, 8-bit RGB; see the module docstring for the per-mode policy.
    `turn`: the EXIF orientation when the caller has read it (1: nothing to turn, no EXIF walk)."""
    img.seek(0)
    if turn != 1:  # None: not read yet
        with contextlib.suppress(Exception):  # a broken EXIF block should not lose the image
            ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when there is nothing to do
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img)
        # 16-bit files open as I;16 or I (PNG, TIFF): scale the full range to 8 bits.
        scale = 257.0 if values.max(initial=0) <= 65535 else 16843009.0  # 2^16-1 / 2^32-1 over 255
        grey = np.clip(np.rint(values.astype(np.float64) / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(img, dtype=np.float64))
        if values.max(initial=0.0) <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and img.has_transparency_data):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "L" and img.has_transparency_data:  # grey with a tRNS colour key
        return to_rgb(img.convert("LA"))
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX


def resize_rgb(img: Image.Image, size: int) -> np.ndarray:
    """RGB image -> uint8 [size, size, 3], stretched, bicubic (antialiased when downscaling)."""
    if img.size != (size, size):
        img = img.resize((size, size), RESAMPLE, reducing_gap=REDUCING_GAP)
    return np.asarray(img, dtype=np.uint8)


def decode_image(
    data: bytes,
    size: int,
    *,
    max_pixels: int,
    preview_size: int = 512,
    keep_bytes: int = 0,
    deadline: float | None = None,
) -> DecodedImage:
    """Bytes -> model input at `size` plus a preview for overlays; CPU-bound, run it in a thread pool.

    `preview_size <= size` keeps no preview of its own: the model input stands in (callers that
    never render overlays, and training). See the module docstring, 5., for the preview policy.
    Past `deadline` (time.monotonic) the decode stops at its next block of input: DeadlineExceeded."""
    img = open_image(data, max_pixels, deadline)
    turn = orientation(img)  # read once: the shown size, the turn and a kept JPEG's EXIF use it
    width, height = oriented_size(img, turn)
    keep = preview_size > size and keepable(img, len(data), preview_size, keep_bytes)
    kept: bytes | None = data
    if keep and not KEPT_INFO.issuperset(img.info):  # a JPEG with metadata: cut it out
        kept = strip_jpeg_metadata(data, turn)
        keep = kept is not None
    try:
        with img:
            fmt = img.format or "?"
            if fmt == "JPEG":  # decode no more pixels than the model's resize (and the preview) need
                need = math.ceil(REDUCING_GAP * size)
                keep_w, keep_h = (0, 0) if keep else preview_box(*img.size, preview_size)
                img.draft(None, (max(need, keep_w), max(need, keep_h)))
                scans = jpeg_scans(data)
                if len(scans) > MAX_JPEG_SCANS:
                    raise ImageTooComplex(
                        f"the JPEG has more than {MAX_JPEG_SCANS} scans, the most this server decodes "
                        "(encoders write 6 to 30): re-encode it",
                        max_scans=MAX_JPEG_SCANS,
                    )
                reader = getattr(img, "fp", None)  # an ImageFile's source, the stream given to open
                if isinstance(reader, _DeadlineReader) and len(scans) > 1:
                    reader.stops = scans
            rgb = to_rgb(img, turn)
            rgb.load()
            # PNG text chunks may follow the pixels; a kept JPEG lost its metadata segments.
            keep = keep and (fmt == "JPEG" or KEPT_INFO.issuperset(img.info))
    except (ImageTooLarge, InvalidImage, DeadlineExceeded):
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge("image rejected as a decompression bomb: it decodes to too many pixels") from None
    except Exception as exc:  # truncated or corrupt data surfaces here, on the first pixel read
        raise _metadata_too_large(exc) or InvalidImage(
            "cannot decode the image: its data is truncated or corrupt"
        ) from None
    pixels = resize_rgb(rgb, size)
    if preview_size <= size or (width, height) == (size, size):  # the 32x32 hot path: nothing to copy
        preview: Preview = pixels
    else:
        preview = kept if keep and kept is not None else make_preview(rgb, preview_size)
    return DecodedImage(pixels=pixels, preview=preview, width=width, height=height, format=fmt)


def keepable(img: Image.Image, nbytes: int, preview_size: int, keep_bytes: int) -> bool:
    """Whether the upload itself can serve as the preview: small in bytes, not much larger than
    the preview once decoded (a JPEG at reduced scale), and without metadata once kept (a JPEG's
    is cut out), so keeping it keeps no more than the pixels."""
    side, jpeg = max(img.size), img.format == "JPEG"
    return (
        PREVIEW_RAW_MAX_SIDE < side <= (JPEG_KEEP_SIDE if jpeg else 2) * preview_size
        and nbytes <= keep_bytes
        and (jpeg or KEPT_INFO.issuperset(img.info))
    )


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8), 1 when absent or unreadable."""
    with contextlib.suppress(Exception):
        value = img.getexif().get(ExifTags.Base.Orientation)
        if isinstance(value, int) and 1 <= value <= 8:
            return value
    return 1


def strip_jpeg_metadata(data: bytes, orientation: int = 1) -> bytes | None:
    """The JPEG without its metadata segments (APPn but JPEG_KEPT_APPS, comments) and without
    anything after its end marker, byte for byte otherwise, so it decodes to the same pixels;
    an orientation other than 1 is kept as a one-tag EXIF. None for a stream not laid out as
    expected (the caller then makes a preview instead)."""
    if data[:2] != b"\xff\xd8":
        return None
    parts, start, pos, end = [b"\xff\xd8"], 2, 2, len(data)
    if data[2:4] == b"\xff\xe0" and (app0_end := 4 + int.from_bytes(data[4:6], "big")) <= end:
        parts.append(data[2:app0_end])  # JFIF's APP0 stays first
        start = pos = app0_end
    if orientation != 1:
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        payload = exif.tobytes()
        parts.append(b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload)
    while True:
        # Past stuffed zeros, restart markers and fill bytes (part of the stream) to the next marker.
        found = _NEXT_MARKER.search(data, pos)
        if found is None:
            return None  # no end marker
        pos = found.start()
        marker = data[pos + 1]
        if marker == 0xD9:  # end of image: what follows (trailers, a second image) is not kept
            parts.append(data[start : pos + 2])
            return b"".join(parts)
        if pos + 4 > end or marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD8:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > end:
            return None
        if marker == 0xFE or (0xE0 <= marker <= 0xEF and marker not in JPEG_KEPT_APPS):
            parts.append(data[start:pos])  # everything up to this segment, then skip it
            start = pos + 2 + length
        pos += 2 + length


def preview_box(width: int, height: int, preview_size: int) -> tuple[int, int]:
    """(w, h) of the preview: the input's aspect ratio, long side at most `preview_size`."""
    scale = min(1.0, preview_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def make_preview(rgb: Image.Image, preview_size: int) -> Preview:
    """The decoded image at its aspect ratio, long side <= preview_size; JPEG unless tiny."""
    box = preview_box(*rgb.size, preview_size)
    small = rgb if box == rgb.size else rgb.resize(box, PREVIEW_RESAMPLE, reducing_gap=PREVIEW_REDUCING_GAP)
    if max(box) <= PREVIEW_RAW_MAX_SIDE:
        return np.asarray(small, dtype=np.uint8)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return buffer.getvalue()


def preview_pixels(preview: Preview, long_side: int | None = None) -> np.ndarray:
    """uint8 [h, w, 3] from a stored preview; an encoded one is decoded, a JPEG at the smallest
    DCT scale that still has `long_side` pixels on its long side."""
    if isinstance(preview, np.ndarray):
        return preview
    with Image.open(io.BytesIO(preview), formats=SUPPORTED_FORMATS) as img:
        if long_side and img.format == "JPEG":
            img.draft(None, preview_box(*img.size, long_side))
        return np.asarray(to_rgb(img), dtype=np.uint8)


def decode_rgb(data: bytes, size: int, max_pixels: int = Image.MAX_IMAGE_PIXELS or 89_478_485) -> np.ndarray:
    """Image bytes -> uint8 [size, size, 3]: the training-side entry point (same policy)."""
    return decode_image(data, size, max_pixels=max_pixels, preview_size=size).pixels
