"""Headers every response carries, whoever answered it (a route, an error handler, a middleware).

- `X-Content-Type-Options: nosniff`: a browser must not run an uploaded image or a JSON error
  as HTML or script.
- `Referrer-Policy: no-referrer`: prediction URLs are capabilities (whoever has the id can read
  the result and maps); they must not leak to other sites in a Referer header.
- `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page may frame this one
  (clickjacking). Only frame-ancestors is set: a route may send a fuller policy of its own (the
  web page does), and headers a route already set are kept.
- `Server-Timing` is removed unless NINSERVE_SERVER_TIMING allows it (app/config.py).

Every answer passes here, so the headers are added to the raw ASGI list in one pass with
pre-encoded names: Starlette's MutableHeaders (a scan per lookup and per insert) cost ~4.6 us a
response, ~1 % of the event loop's time per 32x32 classification.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULTS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
)
_RAW_DEFAULTS = tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in DEFAULTS)
_SERVER_TIMING = b"server-timing"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, server_timing: bool) -> None:
        self.app, self.server_timing = app, server_timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self.secured(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, with_headers)

    def secured(self, raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The response's raw headers plus each default it lacks (a route's own value is kept),
        without Server-Timing unless it is allowed."""
        if self.server_timing:
            headers = list(raw)
        else:
            headers = [(name, value) for name, value in raw if name.lower() != _SERVER_TIMING]
        present = {name.lower() for name, _ in headers}
        headers.extend(item for item in _RAW_DEFAULTS if item[0] not in present)
        return headers
