"""multipart/form-data parsing (app/http/multipart.py) over real HTTP: well-formed bodies in any
chunking give the exact bytes; malformed ones give 400 invalid-upload, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.app.helpers import png
from tests.app.http.test_errors import assert_problem

BOUNDARY = "b0undary"
HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def part(name: str, data: bytes, filename: str | None = "x.png", content_type: str = "image/png") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
    return head.encode() + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def test_same_answer_as_starlette_encoded_upload_in_any_chunking(client: httpx.Client) -> None:
    image = png(7)
    expected = client.post("/v1/classify", files={"file": ("a.png", image, "image/png")}).json()["scores"]
    raw = body(part("note", b"a text field", filename=None), part("file", image))

    def in_chunks(size: int) -> Iterator[bytes]:  # boundaries and headers split across reads
        for start in range(0, len(raw), size):
            yield raw[start : start + size]

    for size in (len(raw), 7, 1):
        response = client.post("/v1/classify", content=in_chunks(size), headers=HEADERS)
        assert response.status_code == 200, response.text
        assert response.json()["scores"] == expected


def test_non_ascii_filename_is_kept(client: httpx.Client) -> None:
    raw = body(part("files", png(1), filename="chat-été.png"))
    response = client.post("/v1/classify/batch", content=raw, headers=HEADERS)
    assert response.json()["results"][0]["filename"] == "chat-été.png"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (body(part("file", png(1)))[:-10], "closing boundary"),  # truncated
        (
            b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/png\r\n\r\nxx\r\n--b0undary--\r\n",
            "Content-Disposition",
        ),
        (body(*(part(f"f{i}", b"v", filename=None) for i in range(101)), part("file", png(1))), "fields"),
    ],
    ids=["truncated", "no-disposition", "too-many-fields"],
)
def test_malformed_bodies_are_400(client: httpx.Client, raw: bytes, detail: str) -> None:
    problem = assert_problem(client.post("/v1/classify", content=raw, headers=HEADERS), 400, "invalid-upload")
    assert detail in problem["detail"]


@pytest.mark.parametrize(
    ("boundary", "raw", "detail"),
    [
        (BOUNDARY, b"--b0undaryXX\r\n", "a boundary line does not match the boundary in the Content-Type"),
        (BOUNDARY, b"--b0undary\rX", "a boundary line does not match the boundary in the Content-Type"),
        (BOUNDARY, b"--b0undary\r\nBad Header: x\r\n\r\n", "a part's headers are malformed or too large"),
        (
            BOUNDARY,
            b"--b0undary\r\n" + b"X-Big: " + b"a" * 20_000,
            "a part's headers are malformed or too large",
        ),
        ("b" * 5000, b"--" + b"b" * 5000 + b"\r\n", "the Content-Type's boundary is too long"),
    ],
    ids=["boundary-cr", "boundary-lf", "header-char", "header-size", "boundary-length"],
)
def test_parser_failures_in_our_own_words(
    client: httpx.Client, boundary: str, raw: bytes, detail: str
) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    problem = assert_problem(client.post("/v1/classify", content=raw, headers=headers), 400, "invalid-upload")
    assert problem["detail"] == f"malformed multipart body: {detail}"


def test_a_text_field_named_file_is_not_an_image(client: httpx.Client) -> None:
    raw = body(part("file", b"not a file", filename=None))
    problem = assert_problem(
        client.post("/v1/classify", content=raw, headers=HEADERS), 422, "invalid-parameter"
    )
    assert "'file'" in problem["detail"]
