"""Opt-in API keys: `Authorization: Bearer <key>` on every route but the open ones.

With NINSERVE_API_KEYS (or NINSERVE_API_KEYS_FILE) set, a request without a valid key gets 401
with `WWW-Authenticate: Bearer` (RFC 6750), as problem+json on v1 and `{"error": ...}` under
/v2, before its body is read. Open without a key: liveness and readiness (/healthz, /readyz,
/v2/health/*: probes carry no secrets), the web page `/` and its `/static/` assets (the page asks
for a key and sends it with its API calls), CORS preflights when CORS is on (browsers send them
without credentials; CORSMiddleware answers them without routing), and, per settings, /metrics
and the API docs. Everything else, OPTIONS included, is refused before routing: whether a path
exists, or which methods it takes, is not told to a client without a key.

Keys are compared with hmac.compare_digest against every configured key (no early exit, so the
time taken tells nothing about which key or how much of it matched) and are never logged.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.http.problems import note_error
from app.http.v2.errors import error_response_for

ALWAYS_OPEN = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/"})
OPEN_PREFIXES = ("/static/",)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
METRICS_PATHS = frozenset({"/metrics"})
CHALLENGE = 'Bearer realm="ninserve"'
MIN_KEY_LENGTH = 16  # a guessable key is no key: 16 random characters and up


def check_keys(keys: tuple[str, ...]) -> None:
    """ValueError for a key that is short or not a plain token; the message never shows a key."""
    for key in keys:
        if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
            raise ValueError(
                f"every API key must be at least {MIN_KEY_LENGTH} printable ASCII characters without "
                "spaces (e.g. `openssl rand -hex 32`); check NINSERVE_API_KEYS / NINSERVE_API_KEYS_FILE"
            )


def open_paths(settings: Settings) -> frozenset[str]:
    paths = set(ALWAYS_OPEN)
    if not settings.docs_require_key:
        paths |= DOCS_PATHS
    if not settings.metrics_require_key:
        paths |= METRICS_PATHS
    return frozenset(paths)


def bearer_token(authorization: bytes) -> bytes | None:
    """The token of `Bearer <token>` (scheme case-insensitive, RFC 9110), else None."""
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(token: bytes, keys: tuple[bytes, ...]) -> bool:
    matched = False
    for key in keys:  # every key, always: the loop's duration does not depend on which matched
        matched |= hmac.compare_digest(token, key)
    return matched


class ApiKeyMiddleware:
    """401 for requests to protected paths without a valid bearer key."""

    def __init__(
        self, app: ASGIApp, keys: tuple[str, ...], open_paths: frozenset[str], cors: bool = False
    ) -> None:
        check_keys(keys)
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.open_paths = open_paths
        self.cors = cors  # CORSMiddleware is installed outside this one and answers preflights

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_open(scope):
            await self.app(scope, receive, send)
            return
        authorization = next((v for n, v in scope["headers"] if n == b"authorization"), None)
        token = bearer_token(authorization) if authorization is not None else None
        if token is not None and key_matches(token, self.keys):
            await self.app(scope, receive, send)
            return
        if authorization is None:
            detail, challenge = "an API key is required: send `Authorization: Bearer <key>`", CHALLENGE
        else:
            detail, challenge = "the API key is not valid", CHALLENGE + ', error="invalid_token"'
        path = scope.get("path", "")
        note_error(scope, "unauthorized")
        headers = {"WWW-Authenticate": challenge}
        response = error_response_for(path, 401, detail, slug="unauthorized", headers=headers)
        await response(scope, receive, send)

    def _is_open(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path in self.open_paths or path.startswith(OPEN_PREFIXES):
            return True
        # A CORS preflight: browsers never attach credentials to it; CORSMiddleware answers it,
        # before routing, when it sees what Starlette calls a preflight (Origin and the method).
        # Without CORS, an OPTIONS request would reach the router: 405 for a real route, 404 else.
        if not self.cors or scope["method"] != "OPTIONS":
            return False
        headers = dict(scope["headers"])
        return b"origin" in headers and b"access-control-request-method" in headers
