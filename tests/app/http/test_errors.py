"""Every client error over real HTTP: RFC 9457 problem+json with the right status, never a 500."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from app.http.main import create_app
from tests.app.core.test_decode import bomb_png
from tests.app.helpers import encode, live_server, pattern, png

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if slug:
        assert body["type"] == f"urn:ninserve:problem:{slug}"
    return body


def post_file(client: httpx.Client, data: bytes, path: str = "/v1/classify", **params) -> httpx.Response:
    return client.post(path, params=params, files={"file": ("x", data, "application/octet-stream")})


@pytest.mark.parametrize(
    ("data", "slug"),
    [(b"", "empty-image"), (b"\x89PNG garbage", "invalid-image"), (png(1)[:60], "invalid-image")],
)
def test_400_undecodable_or_empty(client: httpx.Client, data: bytes, slug: str) -> None:
    assert_problem(post_file(client, data), 400, slug)


def test_400_empty_raw_body(client: httpx.Client) -> None:
    assert_problem(
        client.post("/v1/classify", content=b"", headers={"Content-Type": "image/png"}), 400, "empty-image"
    )


def test_400_malformed_multipart(client: httpx.Client) -> None:
    response = client.post(
        "/v1/classify", content=b"--x\r\nnonsense", headers={"Content-Type": "multipart/form-data"}
    )  # no boundary
    assert_problem(response, 400, "invalid-upload")


def test_413_decompression_bomb(client: httpx.Client) -> None:
    body = assert_problem(post_file(client, bomb_png(7_000, 7_000)), 413, "image-too-large")
    assert body["width"] == 7_000 and body["max_pixels"] == 40_000_000
    assert_problem(post_file(client, bomb_png(60_000, 60_000)), 413, "image-too-large")


@pytest.fixture(scope="module")
def small_limits(make_settings) -> Iterator[str]:
    settings = make_settings(max_body_bytes=64 * 1024, max_image_pixels=100 * 100, max_request_images=2)
    with live_server(settings) as url:
        yield url


def test_413_body_over_the_byte_limit(small_limits: str) -> None:
    with httpx.Client(base_url=small_limits) as client:
        big = b"\x00" * (200 * 1024)
        assert_problem(
            client.post("/v1/classify", content=big, headers={"Content-Type": "image/png"}),
            413,
            "payload-too-large",
        )
        assert_problem(post_file(client, big), 413, "payload-too-large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b"\x00" * 16 * 1024

        response = client.post("/v1/classify", content=chunks(), headers={"Content-Type": "image/png"})
        assert_problem(response, 413, "payload-too-large")
        assert client.get("/healthz").status_code == 200  # the server is fine afterwards


def test_413_image_over_the_pixel_limit_and_too_many_files(small_limits: str) -> None:
    with httpx.Client(base_url=small_limits) as client:
        assert_problem(post_file(client, png(1, size=101)), 413, "image-too-large")
        assert post_file(client, png(1, size=100)).status_code == 200
        files = [("files", (f"{i}.png", png(i), "image/png")) for i in range(3)]
        assert_problem(client.post("/v1/classify/batch", files=files), 413, "too-many-files")
        assert client.post("/v1/classify/batch", files=files[:2]).status_code == 200
        two = [("file", ("a.png", png(1), "image/png")), ("file", ("b.png", png(2), "image/png"))]
        assert_problem(client.post("/v1/classify", files=two), 413, "too-many-files")


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b"hello"),
        ("application/octet-stream", png(1)),
        ("image/svg+xml", b"<svg/>"),
        (None, png(1)),
    ],
)
def test_415_unsupported_media_type(client: httpx.Client, content_type: str | None, data: bytes) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert_problem(client.post("/v1/classify", content=data, headers=headers), 415, "unsupported-media-type")


def test_415_unsupported_declared_part_type(client: httpx.Client) -> None:
    svg = {"file": ("x.svg", b"<svg/>", "image/svg+xml")}
    assert_problem(client.post("/v1/classify", files=svg), 415, "unsupported-media-type")
    response = client.post("/v1/classify/batch", files=[("files", svg["file"]), ("files", ("a.png", png(1)))])
    assert [r["status"] for r in response.json()["results"]] == [415, 200]


def test_415_known_but_unsupported_image_format(client: httpx.Client) -> None:
    body = assert_problem(post_file(client, encode(pattern(1), "ICO")), 415, "unsupported-media-type")
    assert "ICO" in body["detail"]
    assert_problem(
        client.post("/v1/classify/batch", content=png(1), headers={"Content-Type": "image/png"}), 415
    )


@pytest.mark.parametrize(
    "params",
    [
        {"top_k": 0},
        {"top_k": "x"},
        {"maps": "all"},
        {"resolution": 30},
        {"resolution": 34},
        {"resolution": 9999},
    ],
)
def test_422_bad_parameters(client: httpx.Client, params: dict) -> None:
    assert_problem(post_file(client, png(1), **params), 422, "invalid-parameter")


def test_422_missing_file_field(client: httpx.Client) -> None:
    assert_problem(client.post("/v1/classify", files={"image": ("x.png", png(1), "image/png")}), 422)
    assert_problem(
        client.post("/v1/classify", data={"file": "not a file"}, files={"other": ("y", b"1")}), 422
    )
    assert_problem(client.post("/v1/classify/batch", files={"file": ("x.png", png(1), "image/png")}), 422)


def test_404_unknown_route_id_and_label(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/nothing"), 404)
    assert_problem(client.get("/v1/predictions/0123456789abcdef"), 404, "prediction-not-found")
    rid = post_file(client, png(1)).json()["id"]
    assert_problem(client.get(f"/v1/predictions/{rid}/maps/unicorn.png"), 404, "label-not-found")
    assert_problem(client.get(f"/v1/predictions/{rid}/maps/10.png"), 404, "label-not-found")
    assert_problem(client.delete(f"/v1/predictions/{rid}"), 405)


def test_503_queue_full_and_deadline_with_retry_after(make_settings) -> None:
    """The engine is blocked on purpose: one request runs, one waits, the next is refused."""
    app = create_app(make_settings(max_batch_size=1, max_queue=1, max_batch_wait_ms=0, request_timeout_s=2))
    release = threading.Event()
    with live_server(app) as url:
        batcher = app.state.serving.batcher
        real_run = batcher._run_fn
        batcher._run_fn = lambda images: (release.wait(10), real_run(images))[1]

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as ac:

                def send(seed: int):
                    return asyncio.create_task(ac.post("/v1/classify", files={"file": ("x", png(seed))}))

                running = send(1)
                while batcher.stats.batches == 0 and not batcher.in_flight:
                    await asyncio.sleep(0.005)
                waiting = send(2)
                while batcher.queued == 0:
                    await asyncio.sleep(0.005)
                refused = await ac.post("/v1/classify", files={"file": ("x", png(3))})
                await asyncio.sleep(2.2)  # `waiting` is now past its deadline
                release.set()
                return [await running, await waiting, refused]

        running, waiting, refused = asyncio.run(scenario())
    assert running.status_code == 200
    assert_problem(refused, 503, "overloaded")
    assert refused.headers["retry-after"] == "1"
    assert_problem(waiting, 503, "deadline-exceeded")
    assert waiting.headers["retry-after"] == "1"


def test_the_deadline_counts_from_arrival_so_a_slow_upload_uses_it_up(make_settings) -> None:
    """A single-image classify spent its whole request_timeout_s again after its body had come:
    a client trickling the upload doubled the time it held a place. Now, as for batches and V2, the
    deadline is set on arrival, and a request whose upload used it up is not decoded at all."""
    boundary = "deadline-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + png(1) + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def trickled() -> Iterator[bytes]:
        yield body[:40]
        time.sleep(0.8)  # past the 0.5 s deadline before the rest arrives
        yield body[40:]

    with live_server(make_settings(request_timeout_s=0.5)) as url, httpx.Client(base_url=url) as client:
        late = client.post("/v1/classify", content=trickled(), headers=headers)
        assert "before decoding" in assert_problem(late, 503, "deadline-exceeded")["detail"]
        assert late.headers["retry-after"] == "1"
        assert client.post("/v1/classify", content=body, headers=headers).status_code == 200
