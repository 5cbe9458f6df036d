"""api/body.py: errors about one uploaded file name that file, on /v1/classify and per batch item."""

from __future__ import annotations

import httpx

from app.api.body import naming_file
from app.errors import ImageTooLarge, InvalidImage, Overloaded
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


def test_naming_file_keeps_type_and_extensions_and_leaves_other_errors() -> None:
    named = naming_file(ImageTooLarge("too big", width=9, height=9), "a.png")
    assert isinstance(named, ImageTooLarge) and named.detail == "file 'a.png': too big"
    assert named.extensions == {"width": 9, "height": 9}
    busy = Overloaded("queue full")
    assert naming_file(busy, "a.png") is busy
    plain = InvalidImage("bad")
    assert naming_file(plain, None) is plain
