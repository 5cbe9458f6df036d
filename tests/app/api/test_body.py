"""app/api/body.py `decompress`: bounded, strict about the stream's end, and in its own words."""

from __future__ import annotations

import gzip
import zlib

import pytest

from app.api.body import decompress
from app.errors import InvalidUpload, PayloadTooLarge, UnsupportedMediaType


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
