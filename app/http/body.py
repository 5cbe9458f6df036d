"""Request bytes in: reading images from a request, either multipart/form-data (`file` /
`files`) or a raw image body with an image/* Content-Type, and undoing a compressed body's
Content-Encoding (V2 clients may gzip their requests). What a body may cost is bounded before
this, by app/http/middleware/body_limits.py.
"""

from __future__ import annotations

import zlib

from starlette.requests import Request

from app.core.decode import SUPPORTED_MEDIA_TYPES
from app.core.echo import shown
from app.core.errors import (
    EmptyImage,
    ImageTooLarge,
    InvalidImage,
    InvalidParameter,
    InvalidUpload,
    NinServeError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from app.http.multipart import Part, read_parts

MULTIPART = "multipart/form-data"
UPLOAD_DOC = {  # OpenAPI requestBody for the classify routes (parsed in read_image, not by FastAPI)
    "required": True,
    "content": {
        MULTIPART: {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
BATCH_UPLOAD_DOC = {
    "required": True,
    "content": {
        MULTIPART: {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        }
    },
}


def unsupported(media_type: str) -> UnsupportedMediaType:
    """415 for an image/* type we do not decode (e.g. image/svg+xml), quoted short."""
    return UnsupportedMediaType(
        f"{shown(media_type)} is not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF"
    )


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _image_bytes(part: Part) -> bytes:
    declared = part.content_type.split(";")[0].strip().lower()
    if declared.startswith("image/") and declared not in SUPPORTED_MEDIA_TYPES:  # e.g. image/svg+xml
        raise unsupported(declared)
    if not part.data:
        raise EmptyImage(f"file {shown(part.filename)} is empty (0 bytes)")
    return bytes(part.data)


IMAGE_ERRORS = (InvalidImage, ImageTooLarge, UnsupportedMediaType)  # errors about one image, not the request


def _image_bytes_named(part: Part) -> bytes:
    try:
        return _image_bytes(part)
    except NinServeError as exc:
        raise naming_file(exc, part.filename) from None


def naming_file(exc: NinServeError, filename: str | None) -> NinServeError:
    """The same error with the uploaded file's name in front of its detail, for errors about the
    image itself (undecodable, too large, unsupported), so a client that sent files knows which
    one; other errors (overload, deadline) and the raw-body case (no name) pass unchanged."""
    if (
        filename is None
        or not isinstance(exc, IMAGE_ERRORS)
        or exc.detail.startswith(f"file {shown(filename)}")
    ):
        return exc
    return type(exc)(f"file {shown(filename)}: {exc.detail}", **exc.extensions)


async def read_image(request: Request) -> tuple[str | None, bytes]:
    """(filename, bytes) of one image from `file` (multipart) or the raw body (image/*, no name)."""
    kind = media_type(request)
    if kind == MULTIPART:
        parts = await read_parts(request, max_files=1)
        uploads = [p for p in parts if p.name == "file" and p.filename is not None]
        if not uploads:
            raise InvalidParameter("multipart field 'file' (an uploaded file) is required")
        return uploads[0].filename, _image_bytes_named(uploads[0])
    if kind.startswith("image/"):
        if kind not in SUPPORTED_MEDIA_TYPES:
            raise unsupported(kind)
        data = await request.body()
        if not data:
            raise EmptyImage("the request body is empty")
        return None, data
    raise UnsupportedMediaType(
        f"Content-Type {shown(kind) if kind else '(none)'} is not accepted: send multipart/form-data "
        "with a 'file' field, or the image itself with an image/* Content-Type"
    )


async def read_images(request: Request, max_files: int) -> list[tuple[str | None, bytes | NinServeError]]:
    """Every `files` part, in order, as (filename, bytes or the error for that item)."""
    if media_type(request) != MULTIPART:
        raise UnsupportedMediaType("send multipart/form-data with one or more 'files' fields")
    parts = [p for p in await read_parts(request, max_files=max_files) if p.name == "files"]
    if not parts:
        raise InvalidParameter("multipart field 'files' (one or more uploaded files) is required")
    items: list[tuple[str | None, bytes | NinServeError]] = []
    for part in parts:
        if part.filename is None:
            items.append((None, InvalidParameter("a 'files' part is a text field, not a file")))
            continue
        try:
            items.append((part.filename, _image_bytes_named(part)))
        except (EmptyImage, UnsupportedMediaType) as exc:
            items.append((part.filename, exc))
    return items


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo a request's Content-Encoding (tritonclient can gzip or deflate requests), inflating at
    most `max_bytes`, so a small compressed body cannot get past the body limit."""
    kind = (encoding or "identity").strip().lower()
    if kind == "identity":
        return body
    if kind not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"Content-Encoding {shown(kind)} is not supported; use gzip, deflate or none"
        )
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)  # HTTP deflate is zlib-wrapped
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error:  # zlib's own text ("Error -3 while decompressing data: ...") stays here
        raise InvalidUpload(f"the {kind} request body is not valid {kind} data") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"the decompressed request body is over the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise InvalidUpload(f"the {kind} request body is truncated")
    if inflater.unused_data:  # a second gzip member or trailing garbage: neither is what was sent
        raise InvalidUpload(f"the {kind} request body has {len(inflater.unused_data)} bytes after its end")
    return out
