"""One classification, stage by stage: admit (app/admission.py: priced from the header, refused
before any decode when the server is full) -> decode (thread pool, or the large-decode lane) ->
batch + ORT (batcher) -> result (top-k, scores, map links) -> store. The deadline is checked
before each stage. Each stage is timed; the timings go into the response body and, where
NINSERVE_SERVER_TIMING allows, a `Server-Timing` header. `resolve_resolution` is shared with V2.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.errors import InvalidParameter
from app.runtime import Runtime
from app.store import StoredPrediction

STAGES = ("decode", "queue", "compute", "encode", "total")


@dataclass(slots=True)
class Timings:
    start: float = field(default_factory=time.perf_counter)
    ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.ms[stage] = round((now - since) * 1000.0, 3)
        return now

    def finish(self) -> None:
        self.ms["total"] = round((time.perf_counter() - self.start) * 1000.0, 3)

    def header(self) -> str:
        """`Server-Timing: decode;dur=1.2, queue;dur=0.4, ...` for browser dev tools and proxies."""
        return ", ".join(f"{stage};dur={self.ms[stage]:.3f}" for stage in STAGES)


@dataclass(frozen=True, slots=True)
class Classified:
    record: StoredPrediction
    payload: dict[str, Any]  # the response body as built (maps.values present when inline)
    body: bytes  # payload as JSON
    timings: Timings


def resolve_resolution(requested: int | None, native: int, maximum: int) -> int:
    if requested is None:
        return native
    if requested % 4 or not native <= requested <= maximum:
        raise InvalidParameter(
            f"resolution must be a multiple of 4 between {native} and {maximum}, got {requested}"
        )
    return requested


async def classify(
    rt: Runtime,
    data: bytes,
    *,
    top_k: int = 5,
    inline_maps: bool = False,
    resolution: int | None = None,
    deadline: float | None = None,
    admitted: bool = False,
    cost: int | None = None,
) -> Classified:
    """Image bytes -> stored result and response body; raises domain errors (app/errors.py).

    `admitted`: the caller holds an admission ticket for this image (a batch admits all of its
    images at once); `cost`: its decode price, when the caller already read the header.
    """
    timings = Timings()
    if deadline is None:
        deadline = time.monotonic() + rt.settings.request_timeout_s
    engine, batcher = rt.ready()
    info = engine.info
    size = resolve_resolution(resolution, info.native_size, rt.settings.max_resolution)
    admission = rt.admission

    with nullcontext() if admitted else await admission.enter(1):
        t = time.perf_counter()
        decoded = await admission.decode(
            data,
            size,
            deadline=deadline,
            max_pixels=rt.settings.max_image_pixels,
            preview_size=rt.settings.preview_size,
            keep_bytes=rt.settings.preview_keep_bytes,
            cost=cost,
        )
        t = timings.lap("decode", t)
        admission.check_deadline(deadline, "queueing")
        result = await batcher.submit(decoded.pixels, deadline=deadline)
    timings.ms["queue"] = round(result.queue_ms, 3)
    timings.ms["compute"] = round(result.compute_ms, 3)
    t = time.perf_counter()

    prediction_id = os.urandom(16).hex()  # 128 random bits: the id is a capability
    scores = result.scores
    k = min(top_k, len(info.classes))
    order = np.argsort(-scores, kind="stable")[:k]
    score_list = scores.tolist()
    base = f"/v1/predictions/{prediction_id}"
    payload: dict[str, Any] = {
        "id": prediction_id,
        "model": {"name": info.name, "version": info.version},
        "top": [{"label": info.classes[i], "index": int(i), "score": score_list[i]} for i in order.tolist()],
        "scores": dict(zip(info.classes, score_list, strict=True)),
        "image": {"width": decoded.width, "height": decoded.height},
        "resolution": size,
        "batch_size": result.batch_size,
        "timing_ms": timings.ms,
        "maps": {
            "shape": list(result.maps.shape),
            "url": f"{base}/maps",
            "png_url_template": f"{base}/maps/{{label}}.png",
            "grid_url": f"{base}/maps.png",
        },
    }
    timings.lap("encode", t)
    timings.finish()
    stored_body = orjson.dumps(payload)
    record = StoredPrediction(
        id=prediction_id,
        result=stored_body,
        labels=info.classes,
        scores=scores,
        maps=result.maps,
        preview=decoded.preview,
        created=time.time(),
    )
    await rt.store.put(record)
    if not inline_maps:
        return Classified(record, payload, stored_body, timings)
    payload["maps"]["values"] = result.maps
    return Classified(record, payload, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), timings)
