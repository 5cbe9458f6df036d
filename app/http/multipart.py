"""multipart/form-data -> parts held in memory, parsed by python-multipart as the body streams in.

Images are decoded from memory anyway, so the parts are kept as bytes. Starlette's form parser
wraps every file in an UploadFile over a SpooledTemporaryFile; for a small image that layer cost
about four times the parse itself (docs/benchmarks.md, "Where a request's CPU goes"). The body
is already bounded by BodyLimitMiddleware, and the number of parts is bounded here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # a TypedDict defined for type checkers only
from starlette.requests import Request

from app.core.errors import InvalidUpload, TooManyFiles


@dataclass(slots=True)
class Part:
    name: str = ""
    filename: str | None = None  # None: a text field, not a file
    content_type: str = ""
    data: bytearray = field(default_factory=bytearray)


class _Collector:
    """python-multipart callbacks that build the list of parts, counting files and fields."""

    def __init__(self, max_files: int, max_fields: int) -> None:
        self.parts: list[Part] = []
        self.max_files, self.max_fields = max_files, max_fields
        self._files = self._fields = 0
        self._field, self._value = bytearray(), bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self.parts[-1].data.extend(data[start:end]),
        }

    def _part_begin(self) -> None:
        self.parts.append(Part())
        self._headers.clear()

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        part = self.parts[-1]
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise InvalidUpload("malformed multipart body: a part without 'Content-Disposition: form-data'")
        part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")
            self._files += 1
            if self._files > self.max_files:
                hint = " (send several to /v1/classify/batch)" if self.max_files == 1 else ""
                raise TooManyFiles(f"too many files; the limit is {self.max_files} per request{hint}")
        else:
            self._fields += 1
            if self._fields > self.max_fields:
                raise InvalidUpload(f"too many form fields; the limit is {self.max_fields}")
        part.content_type = self._headers.get(b"content-type", b"").decode("latin-1").strip()


async def read_parts(request: Request, *, max_files: int, max_fields: int = 100) -> list[Part]:
    """Every part of a multipart/form-data request, in order; InvalidUpload if it is malformed."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidUpload("malformed multipart body: the Content-Type has no boundary")
    collector = _Collector(max_files, max_fields)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
    except FormParserError:
        raise InvalidUpload("malformed multipart body: the Content-Type's boundary is too long") from None
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
    except FormParserError as exc:
        raise InvalidUpload(f"malformed multipart body: {what_went_wrong(exc)}") from None
    if parser.state != MultipartState.END:
        raise InvalidUpload("malformed multipart body: it ends before the closing boundary")
    return collector.parts


def what_went_wrong(exc: FormParserError) -> str:
    """Our words for a python-multipart error: its own ("Did not find CR at end of boundary (10)")
    name parser internals and offsets, which a client cannot act on."""
    text = str(exc).lower()
    if "header" in text:
        return "a part's headers are malformed or too large"
    if "boundary" in text:
        return "a boundary line does not match the boundary in the Content-Type"
    return "the body is not multipart/form-data"
