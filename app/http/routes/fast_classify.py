"""POST /v1/classify without FastAPI's per-request machinery.

FastAPI's route machinery (parameter models, dependency solving, exit stacks) cost 5-7 % of
the 32x32 PNG throughput at every concurrency (A/B in docs/benchmarks.md). This raw ASGI route
sits ahead of the documented one and runs the same handler body (`v1.classify_response`) with
the query parsed by hand. It matches only when every known query parameter is absent or
plainly valid; any other request falls through to the documented route, so validation errors,
OpenAPI and results stay FastAPI's. Exceptions reach the app's handlers as from any route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from app.http.deps import MAX_RESOLUTION, MAX_TOP_K, MIN_RESOLUTION, RESOLUTION_STEP
from app.http.routes.v1 import classify_response

PATH = "/v1/classify"
MAPS_MODES = frozenset({"none", "inline"})


def plain_query(query_string: bytes) -> dict[str, Any] | None:
    """top_k / maps / resolution from a query with only plain valid values; None otherwise
    (an unknown name, a repeated or out-of-range parameter, a non-decimal number): FastAPI then decides."""
    params: dict[str, Any] = {"top_k": 5, "maps": "none", "resolution": None}
    seen: set[str] = set()
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name not in params:
            return None  # unknown: the documented route answers 422 (deps.py reject_unknown_query)
        if name in seen:
            return None
        seen.add(name)
        if name == "maps":
            if value not in MAPS_MODES:
                return None
            params[name] = value
            continue
        if not (value.isascii() and value.isdigit() and len(value) <= 6):
            return None
        number = int(value)
        low, high, step = (
            (1, MAX_TOP_K, 1) if name == "top_k" else (MIN_RESOLUTION, MAX_RESOLUTION, RESOLUTION_STEP)
        )
        if not low <= number <= high or number % step:
            return None
        params[name] = number
    return params


QUERY_KEY = "ninserve.classify_query"


class FastClassifyRoute(Route):
    """Matches POST /v1/classify only when `plain_query` can read the query string."""

    def __init__(self) -> None:
        super().__init__(PATH, self._endpoint, methods=["POST"], include_in_schema=False)
        self.app = self._endpoint  # raw ASGI: skip Starlette's request/response wrapper

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.FULL:
            return match, child
        if (params := plain_query(scope["query_string"])) is None:
            return Match.NONE, {}
        # `route`, as FastAPI's routes set it: the metrics label the request without matching again.
        return match, {**child, "route": self, QUERY_KEY: params}

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope[QUERY_KEY]
        request = Request(scope, receive)
        response = await classify_response(request, request.app.state.serving, **params)
        await response(scope, receive, send)


def install_fast_classify(app: FastAPI) -> None:
    """Put the raw route ahead of every other route (FastAPI's own docs routes included)."""
    app.router.routes.insert(0, FastClassifyRoute())
