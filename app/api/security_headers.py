"""Headers every response carries, whoever answered it (a route, an error handler, a middleware).

- `X-Content-Type-Options: nosniff`: a browser must not run an uploaded image or a JSON error
  as HTML or script.
- `Referrer-Policy: no-referrer`: prediction URLs are capabilities (whoever has the id can read
  the result and maps); they must not leak to other sites in a Referer header.
- `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page may frame this one
  (clickjacking). Only frame-ancestors is set: a route may send a fuller policy of its own (the
  web page does), and headers a route already set are kept.
- `Server-Timing` is removed unless NINSERVE_SERVER_TIMING allows it (app/config.py).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULTS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, server_timing: bool) -> None:
        self.app, self.server_timing = app, server_timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULTS:
                    if name not in headers:
                        headers[name] = value
                if not self.server_timing and "server-timing" in headers:
                    del headers["server-timing"]
            await send(message)

        await self.app(scope, receive, with_headers)
