"""What request bodies may cost, checked before and while they arrive, for every route.

- One body: over `max_body_bytes` it is refused with 413, at once from `Content-Length`, or as
  soon as a streamed (chunked) body passes the limit.
- All bodies together: request bodies are held in memory until their request is answered, and
  they arrive before admission control (app/core/admission.py) can price the image inside. Without a
  bound, `max_connections` uploads of `max_body_bytes` each could hold gigabytes. `BodyBudget`
  counts the bytes of every body being received or held; a request whose declared body does not
  fit gets 503 + Retry-After before a byte of it is read, and a streamed body that stops fitting
  is cut off the same way. Its bytes are given back when the request ends. The last
  `SMALL_RESERVE` bytes of the budget are kept for small bodies (up to `SMALL_BODY`): uploads
  filling the budget cannot turn a 3 KB request away.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import NinServeError, Overloaded, PayloadTooLarge
from app.http.problems import note_error
from app.http.v2.errors import error_response_for

MAX_LENGTH_DIGITS = 18  # a longer value counts as 10**18 bytes: int() refuses over 4,300 digits
MAX_DECLARED_LENGTH = 10**MAX_LENGTH_DIGITS
SMALL_BODY = 64 * 1024  # an image request as most are (a 32x32 PNG is 3 KB, a phone photo ~1 MB)
SMALL_RESERVE = 4 * 1024 * 1024  # 64 small bodies at once, beside uploads that fill the rest


class BodyBudget:
    """Bytes of request bodies in memory across all requests of this process, up to `total`;
    a body over SMALL_BODY may use all but the reserve."""

    def __init__(self, total: int, reserve: int = SMALL_RESERVE) -> None:
        self.total, self.in_use = total, 0
        self.reserve = min(reserve, total // 8)
        self.large_in_use = 0  # the part held by bodies over SMALL_BODY

    def take(self, size: int, *, large: bool | None = None) -> bool:
        """Count `size` more bytes of one body; `large`: the body's total is over SMALL_BODY
        (default: judged from `size`)."""
        large = size > SMALL_BODY if large is None else large
        limit = self.total - self.reserve if large else self.total
        if self.in_use + size > limit:
            return False
        self.in_use += size
        if large:
            self.large_in_use += size
        return True

    def give_back(self, size: int, *, large: bool = False) -> None:
        self.in_use -= size
        if large:
            self.large_in_use -= size


class BodyLimitMiddleware:
    """413 for one body over `max_bytes`; 503 when the bodies in memory would pass `budget`."""

    def __init__(self, app: ASGIApp, max_bytes: int, budget: BodyBudget) -> None:
        self.app, self.max_bytes, self.budget = app, max_bytes, budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(scope, receive, send, PayloadTooLarge(self._detail(declared)))
            return
        large = declared is not None and declared > SMALL_BODY
        if declared and not self.budget.take(declared, large=large):
            await _refuse(scope, receive, send, self._busy(declared))
            return
        held = declared or 0
        received = 0

        async def limited() -> Message:
            nonlocal received, held, large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._detail(received, streaming=True))
                if received > held:  # a body without Content-Length: take its bytes as they come
                    if received > SMALL_BODY and not large:  # from now on it counts as large
                        self.budget.give_back(held)
                        large, held = True, 0
                    if not self.budget.take(received - held, large=large):
                        raise self._busy(received)
                    held = received
            return message

        try:
            await self.app(scope, limited, send)
        finally:
            self.budget.give_back(held, large=large)

    def _detail(self, size: int, streaming: bool = False) -> str:
        seen = "more than " if streaming or size == MAX_DECLARED_LENGTH else ""
        return f"request body is {seen}{size} bytes; the limit is {self.max_bytes}"

    def _busy(self, size: int) -> Overloaded:
        return Overloaded(
            f"the server is holding {self.budget.in_use} bytes of request bodies and cannot take "
            f"{size} more now (limit {self.budget.total}); retry shortly"
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            if len(value) > MAX_LENGTH_DIGITS:  # leading zeros are allowed (RFC 9110 8.6): 0…010 is 10
                value = value.lstrip(b"0") or b"0"
            return int(value) if len(value) <= MAX_LENGTH_DIGITS else MAX_DECLARED_LENGTH
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, error: NinServeError) -> None:
    """Answer before the route runs (and before the body is read), in the route's error shape."""
    note_error(scope, error.slug)
    response = error_response_for(
        scope.get("path", ""), error.status, error.detail, slug=error.slug, retry_after=error.retry_after
    )
    await response(scope, receive, send)
