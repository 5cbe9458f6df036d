"""Bytes in flight under large uploads (app/http/server.py, app/http/body_readers.py,
app/http/middleware/body_limits.py): a refused large body is not read, a small request has room
when uploads fill the budget, and large bodies are read a few at a time, in turns."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from app.http.body_readers import BodyReaders
from app.http.middleware.body_limits import BodyBudget
from tests.app.helpers import png
from tests.app.http.test_server import guarded_server

MiB = 1024 * 1024


def upload_head(declared: int, content_type: str = "image/png") -> bytes:
    return (
        f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()


def read_until_closed(conn: socket.socket, wait_s: float) -> tuple[bytes, bool]:
    """What the server sends within `wait_s`, and whether it closed the connection."""
    conn.settimeout(wait_s)
    out = b""
    try:
        while chunk := conn.recv(65536):
            out += chunk
        return out, True
    except TimeoutError:
        return out, False


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/plain", b"415"), ("image/png", b"413")],  # refused by the route / by the middleware
)
def test_a_large_body_answered_before_it_is_read_is_not_read(
    make_settings, content_type: str, status: bytes
) -> None:
    """Before, the server read (and dropped) the rest of a refused body, up to max_body_bytes, on
    its event loop; under an upload flood that was most of what it read."""
    declared = 3 * MiB if status == b"415" else 40 * MiB
    with (
        guarded_server(make_settings(max_body_bytes=4 * MiB)) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as conn,
    ):
        conn.sendall(upload_head(declared, content_type) + b"x" * 100_000)  # most of it never sent
        answer, closed = read_until_closed(conn, wait_s=5.0)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert b"connection: close" in head and closed


def test_a_client_still_sending_reads_the_refusal(make_settings) -> None:
    """A client that writes its whole body before reading (httpx) gets the 503, not a reset."""
    settings = make_settings(max_body_bytes=8 * MiB, max_body_bytes_in_flight=8 * MiB)
    with guarded_server(settings) as port, socket.create_connection(("127.0.0.1", port)) as holder:
        holder.sendall(upload_head(7 * MiB))  # holds 7 MiB of the budget, sends nothing more
        time.sleep(0.2)
        refused = httpx.post(
            f"http://127.0.0.1:{port}/v1/classify",
            content=b"y" * (6 * MiB),
            headers={"Content-Type": "image/png"},
            timeout=10,
        )
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"


def test_a_small_request_has_room_when_uploads_fill_the_budget(make_settings) -> None:
    """Before, two uploads declaring the whole budget turned every other request away with 503."""
    settings = make_settings(max_body_bytes=2 * MiB, max_body_bytes_in_flight=4 * MiB, body_timeout_s=10.0)
    with guarded_server(settings) as port:
        uploads = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for conn in uploads:
                conn.sendall(upload_head(2 * MiB) + b"x" * 1000)
                time.sleep(0.2)
            small = httpx.post(
                f"http://127.0.0.1:{port}/v1/classify", content=png(1), headers={"Content-Type": "image/png"}
            )
            assert small.status_code == 200, small.text
            second, _ = read_until_closed(uploads[1], wait_s=2.0)
            assert second.startswith(b"HTTP/1.1 503 "), second[:100]  # the large one waits its turn
        finally:
            for conn in uploads:
                conn.close()


def test_the_budget_keeps_a_reserve_for_small_bodies() -> None:
    budget = BodyBudget(8000, reserve=1000)
    assert budget.take(6000, large=True) and not budget.take(1500, large=True)
    assert budget.take(1500) and budget.in_use == 7500 and budget.large_in_use == 6000
    budget.give_back(6000, large=True)
    assert budget.in_use == 1500 and budget.large_in_use == 0


class FakeReader:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def may_read(self) -> None:
        self.log.append(f"+{self.name}")

    def must_wait(self) -> None:
        self.log.append(f"-{self.name}")


def test_large_bodies_are_read_a_few_at_a_time_in_turns() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        readers = BodyReaders(slots=2, slice_s=0.01)
        a, b, c = (FakeReader(n, log) for n in "abc")
        for reader in (a, b, c):
            readers.start(reader)
        assert log == ["+a", "+b", "-c"]  # two turns; c waits
        await asyncio.sleep(0.015)  # both slices are over with someone waiting: round robin
        assert log[3:] == ["-a", "+c", "-b", "+a"] and readers.turns_passed == 2
        readers.done(c)  # a body read to its end passes its turn on at once
        assert log[-1] == "+b" and set(readers.reading) == {a, b} and not readers.waiting
        for reader in (a, b):
            readers.done(reader)
        assert not readers.reading and not readers.waiting
        return log

    asyncio.run(main())


def test_without_waiters_a_turn_lasts() -> None:
    async def main() -> None:
        log: list[str] = []
        readers = BodyReaders(slots=1, slice_s=0.005)
        readers.start(FakeReader("a", log))
        await asyncio.sleep(0.03)
        assert log == ["+a"] and readers.turns_passed == 0

    asyncio.run(main())


def test_connections_closed_after_a_refusal_leave_the_connection_cap(make_settings) -> None:
    """A refused upload's connection lingers (FIN, then closed after 2 s) outside the cap: with
    hundreds of refusals a second they filled it and pushed idle keep-alive clients out."""
    with guarded_server(make_settings(max_connections=3, max_body_bytes=4 * MiB)) as port:
        refused = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        try:
            for conn in refused:
                conn.sendall(upload_head(3 * MiB, "text/plain") + b"x" * 1000)
                answer, closed = read_until_closed(conn, wait_s=5.0)
                assert answer.startswith(b"HTTP/1.1 415 ") and closed
            newcomer = httpx.post(
                f"http://127.0.0.1:{port}/v1/classify", content=png(1), headers={"Content-Type": "image/png"}
            )
            assert newcomer.status_code == 200, newcomer.text
        finally:
            for conn in refused:
                conn.close()


def test_many_large_uploads_at_once_all_get_their_answer(make_settings) -> None:
    """More large bodies than reading turns, some arriving whole with their headers: each waits
    its turn, none is lost or left paused, and their connections stay usable."""
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(3).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    body = buffer.getvalue()
    assert len(body) > 64 * 1024  # large: read in turns

    async def upload(port: int) -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = []
        for _ in range(2):  # a second request on the same connection
            writer.write(upload_head(len(body)) + body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            statuses.append(int(head.split()[1]))
        writer.close()
        return statuses

    async def main(port: int) -> list[list[int]]:
        return await asyncio.wait_for(asyncio.gather(*(upload(port) for _ in range(12))), 60)

    with guarded_server(make_settings(max_queue=64)) as port:
        answers = asyncio.run(main(port))
    assert answers == [[200, 200]] * 12
