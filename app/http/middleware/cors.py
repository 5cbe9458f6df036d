"""CORS for browser clients on other origins: off unless NINSERVE_CORS_ORIGINS names some.

Starlette's CORSMiddleware answers preflights and adds the headers; this module only says what
the API needs: its methods, the request headers its clients send (the bearer key, V2's binary
framing, a compressed body) and the response headers they may read (Retry-After on 503s, V2's
binary framing). No cookies are used, so credentials stay off and "*" is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

ALLOW_METHODS = ("GET", "POST", "OPTIONS")
ALLOW_HEADERS = ("Authorization", "Content-Type", "Content-Encoding", "Inference-Header-Content-Length")
EXPOSE_HEADERS = (
    "Retry-After",
    "Inference-Header-Content-Length",
    "Server-Timing",
    "WWW-Authenticate",
    # what a map PNG's colours mean (app/http/routes/predictions.py), for pages that draw their own legend
    "X-Map-Normalize",
    "X-Map-Units",
    "X-Map-Range",
    "X-Class-Score",
)
PREFLIGHT_MAX_AGE_S = 600  # browsers cap it near here anyway (Chromium: 2 h, Firefox: 24 h)


def install_cors(app: FastAPI, origins: Sequence[str]) -> None:
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOW_METHODS),
        allow_headers=list(ALLOW_HEADERS),
        expose_headers=list(EXPOSE_HEADERS),
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_S,
    )
