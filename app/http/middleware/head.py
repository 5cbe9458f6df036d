"""HEAD wherever GET is served (RFC 9110 9.3.2): the GET answer's status and headers, no body.

FastAPI routes declared with `@router.get` take GET only, so HEAD got 405 on `/`, the probes and
every GET API route (monitors and link checkers use HEAD). `HeadAsGetRoute` is the router's last
route: only a HEAD request that no route took reaches it, and it routes that request again as
GET, dropping the body of the answer (uvicorn, which keeps the original scope, would drop it too;
h11 would refuse it). GET and POST requests never get this far, so they pay nothing for it, and
a HEAD to a path without GET gets the same 404 or 405 as a GET would.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetRoute(BaseRoute):
    """Matches any HEAD request; answers it as the router answers the same GET."""

    def __init__(self, router: ASGIApp) -> None:
        self.router = router

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server keeps the original scope and knows from it that no body is due.
        await self.router({**scope, "method": "GET"}, receive, without_body)


def install_head(app: FastAPI) -> None:
    """Call after every route is added: this one must come last."""
    app.router.routes.append(HeadAsGetRoute(app.router))
