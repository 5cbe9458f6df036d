"""A corpus of hostile requests against the whole app, over raw sockets: each gets a 4xx (or is
closed by the protocol layer), never a 5xx, and the server keeps answering afterwards."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator

import orjson
import pytest

from tests.app.helpers import png
from tests.app.http.test_server import guarded_server

B = b"hostileboundary"
MP = b"multipart/form-data; boundary=" + B


def request(method: bytes, target: bytes, body: bytes = b"", headers: tuple[bytes, ...] = ()) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: x", b"Connection: close", *headers]
    if body and not any(h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def part(name: bytes, data: bytes, filename: bytes | None = b"a.png", ctype: bytes = b"image/png") -> bytes:
    disposition = (
        b'form-data; name="' + name + b'"' + (b'; filename="' + filename + b'"' if filename else b"")
    )
    return (
        b"--"
        + B
        + b"\r\nContent-Disposition: "
        + disposition
        + b"\r\nContent-Type: "
        + ctype
        + b"\r\n\r\n"
        + data
        + b"\r\n"
    )


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


INFER = b"/v2/models/tiny/infer"
CORPUS: dict[str, bytes] = {
    # multipart
    "multipart without boundary": request(
        b"POST", b"/v1/classify", b"x", (b"Content-Type: multipart/form-data",)
    ),
    "multipart never closed": request(
        b"POST", b"/v1/classify", part(b"file", png()), (b"Content-Type: " + MP,)
    ),
    "multipart garbage": request(b"POST", b"/v1/classify", b"\x00" * 500, (b"Content-Type: " + MP,)),
    "multipart 1000 fields": request(
        b"POST",
        b"/v1/classify",
        b"".join(part(b"f%d" % i, b"v", None) for i in range(1000)) + b"--" + B + b"--",
        (b"Content-Type: " + MP,),
    ),
    "multipart 40 files to batch": request(
        b"POST",
        b"/v1/classify/batch",
        b"".join(part(b"files", png()) for _ in range(40)) + b"--" + B + b"--",
        (b"Content-Type: " + MP,),
    ),
    "multipart NUL filename": request(
        b"POST",
        b"/v1/classify",
        part(b"file", png(), b"a\x00.png") + b"--" + B + b"--",
        (b"Content-Type: " + MP,),
    ),
    "multipart svg part": request(
        b"POST",
        b"/v1/classify",
        part(b"file", b"<svg/>", ctype=b"image/svg+xml") + b"--" + B + b"--",
        (b"Content-Type: " + MP,),
    ),
    "multipart header flood": request(
        b"POST", b"/v1/classify", b"--" + B + b"\r\n" + b"X: y\r\n" * 20000, (b"Content-Type: " + MP,)
    ),
    # images
    "truncated png": request(b"POST", b"/v1/classify", png()[:60], (b"Content-Type: image/png",)),
    "png claiming 6300x6300": request(
        b"POST",
        b"/v1/classify",
        png()[:16] + (6300).to_bytes(4, "big") * 2 + png()[24:],
        (b"Content-Type: image/png",),
    ),
    "text as jpeg": request(b"POST", b"/v1/classify", b"hello", (b"Content-Type: image/jpeg",)),
    "empty image": request(b"POST", b"/v1/classify", b"", (b"Content-Type: image/png", b"Content-Length: 0")),
    # query strings and paths
    "giant top_k": request(
        b"POST", b"/v1/classify?top_k=" + b"9" * 5000, png(), (b"Content-Type: image/png",)
    ),
    "arabic digit resolution": request(
        b"POST", b"/v1/classify?resolution=%D9%A3%D9%A2", png(), (b"Content-Type: image/png",)
    ),
    "float resolution": request(
        b"POST", b"/v1/classify?resolution=32.0e400", png(), (b"Content-Type: image/png",)
    ),
    "NUL in query": request(b"POST", b"/v1/classify?maps=%00", png(), (b"Content-Type: image/png",)),
    "4301-digit label": request(b"GET", b"/v1/predictions/abc/maps/" + b"9" * 4301 + b".png"),
    "unicode label": request(b"GET", b"/v1/predictions/abc/maps/%D9%A3.png"),
    "long prediction id": request(b"GET", b"/v1/predictions/" + b"a" * 8000),
    "bad percent escape": request(b"GET", b"/v1/predictions/%zz%"),
    "overlong utf-8 path": request(b"GET", b"/v1/predictions/%C0%AF"),
    "map size huge": request(b"GET", b"/v1/predictions/abc/maps.png?size=" + b"9" * 400),
    # V2 codec
    "v2 bad json": request(b"POST", INFER, b"{not json"),
    "v2 deep json": request(b"POST", INFER, b'{"inputs":' + deep(5000) + b"}"),
    "v2 deep data": request(
        b"POST",
        INFER,
        b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[1],"data":' + deep(500) + b"}]}",
    ),
    "v2 giant numbers": request(
        b"POST",
        INFER,
        b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[1,1,1,3],"data":[1e999,-9'
        + b"9" * 5000
        + b",2]}]}",
    ),
    "v2 giant shape": request(
        b"POST",
        INFER,
        b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[99999999999,99999999999],"data":[]}]}',
    ),
    "v2 list datatype": request(
        b"POST", INFER, b'{"inputs":[{"name":"image","datatype":[1],"shape":[1],"data":[1]}]}'
    ),
    "v2 5000-digit header length": request(
        b"POST", INFER, b"{}", (b"Inference-Header-Content-Length: " + b"9" * 5000,)
    ),
    "v2 negative header length": request(b"POST", INFER, b"{}", (b"Inference-Header-Content-Length: -1",)),
    "v2 binary size past the end": request(
        b"POST",
        INFER,
        b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":99}}]}',
        (b"Inference-Header-Content-Length: 98",),
    ),
    "v2 gzip garbage": request(b"POST", INFER, b"\x1f\x8b\x08garbage", (b"Content-Encoding: gzip",)),
    "v2 gzip trailing": request(b"POST", INFER, gzip.compress(b"{}") + b"tail", (b"Content-Encoding: gzip",)),
    "v2 gzip bomb": request(b"POST", INFER, gzip.compress(b" " * (64 << 20)), (b"Content-Encoding: gzip",)),
    "v2 unknown encoding": request(b"POST", INFER, b"{}", (b"Content-Encoding: br, gzip, " + b"x" * 3000,)),
    "v2 long model name": request(b"GET", b"/v2/models/" + b"m" * 10000),
    "v2 NULs in json": request(b"POST", INFER, orjson.dumps({"inputs": [{"name": "\x00" * 100}]})),
    "v2 surrogates in json": request(b"POST", INFER, b'{"id":"\\ud800","inputs":[]}'),
    # HTTP framing
    "content-length mismatch": request(
        b"POST", b"/v1/classify", b"abc", (b"Content-Type: image/png", b"Content-Length: 2")
    ),
    "two content-lengths": request(
        b"POST",
        b"/v1/classify",
        b"abc",
        (b"Content-Type: image/png", b"Content-Length: 3", b"Content-Length: 4"),
    ),
    "giant content-length": request(
        b"POST", b"/v1/classify", b"", (b"Content-Type: image/png", b"Content-Length: " + b"9" * 400)
    ),
    "bad chunked": request(
        b"POST",
        b"/v1/classify",
        b"zz\r\nabc\r\n0\r\n\r\n",
        (b"Content-Type: image/png", b"Transfer-Encoding: chunked"),
    ),
    "NUL in header value": request(b"GET", b"/healthz", b"", (b"X-A: a\x00b",)),
    "obs-fold header": request(
        b"GET",
        b"/healthz",
        b"",
        (
            b"X-A: a",
            b" folded",
        ),
    ),
    "unknown method": request(b"BREW", b"/v1/classify"),
    "absolute-form target": request(b"GET", b"http://evil.example/v1/models"),
    "authorization flood": request(b"GET", b"/v1/models", b"", (b"Authorization: Bearer " + b"k" * 12000,)),
    "non-utf8 content-type": request(b"POST", b"/v1/classify", png(), (b"Content-Type: image/\xff\xfe",)),
}


@pytest.fixture(scope="module")
def port(make_settings) -> Iterator[int]:
    settings = make_settings(max_body_bytes=1 << 20, header_timeout_s=5.0, body_timeout_s=5.0)
    with guarded_server(settings) as p:
        yield p


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        try:
            conn.sendall(raw)
            conn.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before taking it all
            pass
        out = b""
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_request_gets_no_5xx(port: int, name: str) -> None:
    answer = send(port, CORPUS[name])
    if answer:  # an empty answer: the protocol layer closed the connection
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:600]
    assert send(port, request(b"GET", b"/healthz")).startswith(b"HTTP/1.1 200 ")
