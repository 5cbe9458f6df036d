"""Domain errors (app/core/errors.py) -> gRPC status codes, as Triton answers them; the one place
the gRPC frontend translates, as app/http/problems.py is for HTTP.

    INVALID_ARGUMENT    a malformed tensor, parameter or image: the client's mistake (HTTP 400/415/422)
    NOT_FOUND           an unknown model or version (404)
    RESOURCE_EXHAUSTED  too large for the limits (413), or refused for memory or a full queue (503)
    UNAVAILABLE         not ready, or the result store is down (503)
    DEADLINE_EXCEEDED   the request's deadline passed before its work ran
    FAILED_PRECONDITION a repository load whose version failed (the model files' fault, not the call's)
    INTERNAL            only our own failures

Refusals a retry can cure carry `retry-after` (seconds, as HTTP's header) and gRPC's own
`grpc-retry-pushback-ms`, which a client's retry policy honours, in the trailing metadata.
"""

from __future__ import annotations

import grpc

from app.core.echo import clipped
from app.core.errors import (
    DeadlineExceeded,
    ImageTooLarge,
    ModelLoadFailed,
    ModelNotFound,
    NinServeError,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    StoreUnavailable,
    TooManyFiles,
)

MAX_MESSAGE = 512  # characters of a status message, as HTTP's V2 error bodies
Metadata = tuple[tuple[str, str], ...]


def status_for(exc: NinServeError) -> grpc.StatusCode:
    if isinstance(exc, ModelNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, DeadlineExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, Overloaded | PayloadTooLarge | ImageTooLarge | TooManyFiles):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, NotReady | StoreUnavailable):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, ModelLoadFailed):
        return grpc.StatusCode.FAILED_PRECONDITION
    if exc.status >= 500:
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode.INVALID_ARGUMENT  # every other client error, as Triton's 400s


def retry_metadata(retry_after: int | None) -> Metadata:
    if retry_after is None:
        return ()
    return (("retry-after", str(retry_after)), ("grpc-retry-pushback-ms", str(retry_after * 1000)))


def message(text: str) -> str:
    """A status message: short, and ASCII-safe for the grpc-message trailer."""
    return clipped(text, MAX_MESSAGE)
