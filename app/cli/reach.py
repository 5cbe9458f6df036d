"""Reaching a server from the command line: one check before any image is sent, so a wrong URL,
a plain-HTTP server asked for TLS, or an unknown model is named as such instead of surfacing as
"404 Not Found: Not Found" per file.

    models = preflight(client, url, model="shapes", version="2")   # raises Unreachable
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.client.v1 import ApiError, Client


class Unreachable(Exception):
    """The server cannot be used as given; the message says why and what to do."""


def parse_model(spec: str | None) -> tuple[str | None, str | None]:
    """NAME[:VERSION] -> (name, version)."""
    if not spec:
        return None, None
    name, _, version = spec.partition(":")
    if not name:
        raise ValueError(f"--model {spec!r}: give a name, NAME or NAME:VERSION")
    return name, version or None


def transport_message(url: str, exc: httpx.TransportError) -> str:
    """Why a request to `url` did not get an answer, in the user's terms."""
    if url.lower().startswith("https://") and _tls_failed(exc):
        plain = "http://" + url[len("https://") :]
        return (
            f"{url} does not answer TLS: ninserve serves plain HTTP (TLS ends at a proxy in front "
            f"of it); use {plain}"
        )
    return f"cannot reach {url} ({exc}); start a server with `make serve` or `ninserve serve`"


def _tls_failed(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def not_found_message(url: str) -> str:
    """A 404 for GET /v1/models: `url` is not a ninserve server's base URL."""
    path = urlsplit(url).path.rstrip("/")
    if path.endswith(("/v1", "/v2")):
        base = url.rstrip("/")[: -len(path.rsplit("/", 1)[-1]) - 1]
        return f"{url} is an API path; give the server's base URL: --url {base}"
    return (
        f"{url} answered 404 for /v1/models: is it a ninserve server's base URL (e.g. http://127.0.0.1:8000)?"
    )


def preflight(
    client: Client, url: str, model: str | None = None, version: str | None = None
) -> list[dict[str, Any]]:
    """GET /v1/models: the loaded models, or Unreachable with the reason (wrong URL, TLS asked of
    a plain-HTTP server, no such model or version)."""
    try:
        models = client.models()
    except httpx.TransportError as exc:
        raise Unreachable(transport_message(url, exc)) from None
    except ApiError as exc:
        if exc.status == 404:
            raise Unreachable(not_found_message(url)) from None
        raise
    if model is not None:
        versions = sorted({m["version"] for m in models if m["name"] == model})
        if not versions:
            names = ", ".join(sorted({m["name"] for m in models})) or "none"
            raise Unreachable(
                f"the server has no model {model!r} loaded (loaded: {names}; see `ninserve models`)"
            )
        if version is not None and version not in versions:
            raise Unreachable(
                f"model {model!r} has no version {version!r} loaded (loaded: {', '.join(versions)})"
            )
    return models


def models_table(models: list[dict[str, Any]]) -> str:
    """One line per loaded version: name, version, precision, classes, val top-1, default."""
    rows = [("MODEL", "VERSION", "PRECISION", "CLASSES", "VAL TOP-1", "")]
    for m in sorted(models, key=lambda m: (m["name"], m["version"])):
        classes = m.get("classes") or []
        shown = ", ".join(classes[:3]) + (f", … ({len(classes)})" if len(classes) > 3 else "")
        top1 = f"{m['val_top1']:.4f}" if isinstance(m.get("val_top1"), int | float) else "-"
        marks = [w for w, on in (("default", m.get("default")), ("latest", m.get("latest"))) if on]
        rows.append((m["name"], m["version"], m.get("precision", "?"), shown, top1, " ".join(marks)))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
