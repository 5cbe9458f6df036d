"""503 + Retry-After, not 500, for requests cut off when the graceful-shutdown window ends.

On SIGTERM uvicorn stops accepting connections, lets requests in flight run for
`timeout_graceful_shutdown` (NINSERVE_GRACEFUL_SHUTDOWN_S) and then cancels the tasks still
running. A cancelled request task would reach uvicorn as an exception, answered 500 ("Exception in
ASGI application"). This outermost middleware turns that cancellation into the answer an overloaded
or stopping server owes: 503, Retry-After, `Connection: close`, so the client retries elsewhere.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.echo import shown
from app.http.v2.errors import error_response_for

logger = logging.getLogger("ninserve")

RETRY_AFTER_S = 1  # another replica (or this one, restarted) can take it at once
DETAIL = "the server is shutting down; retry the request"


class ShutdownGuardMiddleware:
    """Answers 503 for a request whose task is cancelled before its response started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except asyncio.CancelledError:
            # The request task is being cancelled, which only the server does when stopping (a
            # client going away sets a disconnect instead). Answer, then let the task end quietly:
            # re-raising would have uvicorn log it as an application error.
            if started:
                raise
            path = scope.get("path", "")
            logger.warning(
                "%s %s cut off by the end of the graceful-shutdown window: 503", scope["method"], shown(path)
            )
            response = error_response_for(
                path,
                503,
                DETAIL,
                slug="shutting-down",
                retry_after=RETRY_AFTER_S,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
