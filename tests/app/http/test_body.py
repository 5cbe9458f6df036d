"""app/http/body.py: `decompress` is bounded, strict about the stream's end and in its own words;
errors about one uploaded file name that file, on /v1/classify and per batch item."""

from __future__ import annotations

import gzip
import zlib

import httpx
import pytest

from app.core.errors import (
    ImageTooLarge,
    InvalidImage,
    InvalidUpload,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from app.http.body import decompress, naming_file
from tests.app.helpers import png


def test_an_undecodable_file_is_named(client: httpx.Client) -> None:
    response = client.post("/v1/classify", files={"file": ("holiday.jpg", b"not a jpeg", "image/jpeg")})
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "file 'holiday.jpg': the data is not a decodable image (JPEG, PNG, WebP, BMP, GIF or TIFF)"
    )
    raw = client.post("/v1/classify", content=b"not a jpeg", headers={"Content-Type": "image/jpeg"})
    assert raw.json()["detail"].startswith("the data is not a decodable image")  # no name to give


def test_batch_items_name_their_file(client: httpx.Client) -> None:
    files = [
        ("files", ("good.png", png(1), "image/png")),
        ("files", ("bad.png", b"\x89PNG\r\n\x1a\n truncated", "image/png")),
        ("files", ("empty.png", b"", "image/png")),
        ("files", ("vector.svg", b"<svg/>", "image/svg+xml")),
    ]
    results = client.post("/v1/classify/batch", files=files).json()["results"]
    assert [r["status"] for r in results] == [200, 400, 400, 415]
    for item in results[1:]:
        assert item["error"]["detail"].startswith(f"file {item['filename']!r}"), item
    assert results[2]["error"]["detail"] == "file 'empty.png' is empty (0 bytes)"  # named once


def test_long_filenames_are_quoted_short(client: httpx.Client) -> None:
    name = "holiday" * 100 + ".jpg"
    one = client.post("/v1/classify", files={"file": (name, b"not a jpeg", "image/jpeg")})
    assert one.status_code == 400 and "(704 characters)" in one.json()["detail"]
    assert len(one.json()["detail"]) < 300
    files = [("files", (name, b"", "image/png")), ("files", (name, b"not a png", "image/png"))]
    for item in client.post("/v1/classify/batch", files=files).json()["results"]:
        assert item["status"] == 400 and len(item["error"]["detail"]) < 300, item


@pytest.mark.parametrize("content_type", ["image/" + "x" * 5000, "text/" + "x" * 5000])
def test_long_media_types_are_quoted_short(client: httpx.Client, content_type: str) -> None:
    response = client.post("/v1/classify", content=b"data", headers={"Content-Type": content_type})
    assert response.status_code == 415 and "characters)" in response.json()["detail"]
    assert len(response.json()["detail"]) < 300
    part = client.post("/v1/classify", files={"file": ("a.png", b"data", content_type[:600])})
    assert part.status_code in (400, 415) and len(part.json()["detail"]) < 300


def test_naming_file_keeps_type_and_extensions_and_leaves_other_errors() -> None:
    named = naming_file(ImageTooLarge("too big", width=9, height=9), "a.png")
    assert isinstance(named, ImageTooLarge) and named.detail == "file 'a.png': too big"
    assert named.extensions == {"width": 9, "height": 9}
    busy = Overloaded("queue full")
    assert naming_file(busy, "a.png") is busy
    plain = InvalidImage("bad")
    assert naming_file(plain, None) is plain


def test_gzip_and_deflate_round_trip() -> None:
    assert decompress(gzip.compress(b"hello"), "gzip", 100) == b"hello"
    assert decompress(zlib.compress(b"hello"), "Deflate", 100) == b"hello"
    assert decompress(b"raw", None, 100) == b"raw"


@pytest.mark.parametrize("tail", [b"x", b"trailing garbage", gzip.compress(b"second member")])
def test_bytes_after_the_stream_are_refused(tail: bytes) -> None:
    with pytest.raises(InvalidUpload, match="bytes after its end"):
        decompress(gzip.compress(b"{}") + tail, "gzip", 1000)


def test_corrupt_data_is_described_without_zlibs_text() -> None:
    with pytest.raises(InvalidUpload) as info:
        decompress(b"not gzip at all", "gzip", 1000)
    assert info.value.detail == "the gzip request body is not valid gzip data"


def test_truncated_and_oversized_streams() -> None:
    with pytest.raises(InvalidUpload, match="truncated"):
        decompress(gzip.compress(b"x" * 1000)[:-8], "gzip", 10_000)
    with pytest.raises(PayloadTooLarge):
        decompress(gzip.compress(b" " * 100_000), "gzip", 1000)


def test_unknown_encodings_are_quoted_short() -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decompress(b"", "x" * 5000, 10)
    assert len(info.value.detail) < 200
