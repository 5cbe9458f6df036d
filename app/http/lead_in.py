"""The lead-in every HTTP inference route shares (v1 single and batch, V2 infer): the model
version looked up before the body is read (an unknown model is a 404 and a loading one a 503
without reading an upload it could not use), the deadline from arrival (a slow upload uses up
the request's time), the body read, and the version looked up again: one swapped in while the
body arrived is the one to hold.

    lead = await lead_in(request, serving, (name, version), read)
    with lead.served.use():          # no await in between: the version cannot be retired first
        ... run it (app/serving/pipeline.py)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from starlette.requests import Request

from app.core.served import Served
from app.http.problems import note_model
from app.serving.state import ServingState

T = TypeVar("T")
ModelRef = tuple[str | None, str | None]  # (name, version); None: the default model, its latest
DEFAULT_MODEL: ModelRef = (None, None)


@dataclass(frozen=True, slots=True)
class Lead(Generic[T]):
    served: Served  # found, not yet held: `with lead.served.use():` before the next await
    deadline: float  # time.monotonic() by which the answer is due
    body: T  # what `read` returned


async def lead_in(
    request: Request, serving: ServingState, model: ModelRef, read: Callable[[float], Awaitable[T]]
) -> Lead[T]:
    """Look up -> deadline -> read the body (`read(deadline)`) -> look up again, noted for the
    per-model metrics; raises the lookup's 404 / 503 and whatever `read` raises."""
    serving.model(*model)
    deadline = time.monotonic() + serving.settings.request_timeout_s
    body = await read(deadline)
    served = serving.model(*model)
    note_model(request.scope, served.name, served.version)
    return Lead(served, deadline, body)
