"""Images through the model, stage by stage: admit (app/core/admission.py: priced from the header,
refused before any decode when the server is full) -> decode (thread pool, or the large-decode
lane) -> batch + ORT (batcher): `run_images`, for v1 single, v1 batch and V2 alike. `classify`
and `classify_batch` add the v1 result (top-k, scores, map links) and store it. The deadline
is checked before each stage. Each stage is timed; the timings go into the response body and, where
NINSERVE_SERVER_TIMING allows, a `Server-Timing` header. `resolve_resolution` is shared with V2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast, overload

import numpy as np
import orjson

from app.core.admission import Admission
from app.core.batcher import Alone, Batcher, BatchResult
from app.core.decode import DecodedImage
from app.core.engine import ModelInfo
from app.core.errors import InvalidParameter, NinServeError, Overloaded
from app.core.ids import new_id
from app.core.served import Served
from app.core.store import StoredPrediction
from app.serving.state import ServingState

T = TypeVar("T")
STAGES = ("decode", "queue", "compute", "encode", "total")
_SERVER_TIMING = ", ".join(f"{stage};dur=%.3f" for stage in STAGES)


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
        return _SERVER_TIMING % tuple(self.ms[stage] for stage in STAGES)


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


@dataclass(frozen=True, slots=True)
class Ran:
    """One image after decode and the batcher."""

    image: DecodedImage | None  # None for pixels sent as they are (V2 UINT8)
    result: BatchResult
    decode_ms: float


Images = Sequence[bytes | np.ndarray | NinServeError]


@overload
async def run_images(
    serving: ServingState,
    images: Images,
    size: int,
    *,
    deadline: float,
    preview_size: int,
    keep_bytes: int = ...,
    whole: Literal[True],
    model: Served | None = ...,
) -> list[Ran]: ...
@overload
async def run_images(
    serving: ServingState,
    images: Images,
    size: int,
    *,
    deadline: float,
    preview_size: int,
    keep_bytes: int = ...,
    whole: Literal[False] = ...,
    model: Served | None = ...,
) -> list[Ran | NinServeError]: ...
async def run_images(
    serving: ServingState,
    images: Images,
    size: int,
    *,
    deadline: float,
    preview_size: int,
    keep_bytes: int = 0,
    whole: bool = False,
    model: Served | None = None,
) -> list[Ran] | list[Ran | NinServeError]:
    """Admit -> decode -> deadline -> submit, in request order; raises domain errors (app/core/errors.py).

    Encoded images (bytes) are priced from their headers and the request admitted at once, before
    any decode; pixels (V2 UINT8) skip the decode. An error in `images` (a part that could not be
    read) passes through. `whole` (V2): any error fails the request (the other images withdrawn)
    and a queue without room for every image refuses it; otherwise (v1) each image succeeds or
    fails on its own, in place. A refused admission always fails the request. `model`: the
    version to run on, held by the caller (`with served:`); else the default model's.
    """
    batcher = (model or serving.model()).batcher
    admission = serving.admission
    limit = serving.settings.max_image_pixels
    costs: list[int | None | NinServeError] = []
    for image in images:
        if isinstance(image, NinServeError):
            if whole:
                raise image
            costs.append(image)
        elif isinstance(image, bytes):
            try:
                costs.append(admission.price(image, size, max_pixels=limit))
            except NinServeError as exc:
                if whole:
                    raise
                costs.append(exc)
        else:
            costs.append(None)
    live = [i for i, cost in enumerate(costs) if not isinstance(cost, NinServeError)]
    if not live:
        failed: list[Ran | NinServeError] = [cost for cost in costs if isinstance(cost, NinServeError)]
        return failed

    async def one(i: int) -> Ran:
        image, cost = images[i], costs[i]
        assert not isinstance(image, NinServeError) and not isinstance(cost, NinServeError)
        t = time.perf_counter()
        decoded = alone = None
        if isinstance(image, bytes):
            decoded, alone = await admission.decode_then(
                image,
                size,
                lambda pixels: lone(batcher, admission, pixels, deadline),
                deadline=deadline,
                max_pixels=limit,
                preview_size=preview_size,
                keep_bytes=keep_bytes,
                cost=cost,
            )
            image = decoded.pixels
            if alone is not None:
                ran = batcher.took_alone(alone)
                decode_ms = round((time.perf_counter() - t) * 1000.0 - ran.compute_ms, 3)
                return Ran(decoded, ran, decode_ms)
            admission.check_deadline(deadline, "queueing")
        decode_ms = round((time.perf_counter() - t) * 1000.0, 3)
        return Ran(decoded, await batcher.submit(image, deadline=deadline), decode_ms)

    with await admission.enter(len(live)):
        if len(images) == 1:  # the hot path: no tasks
            try:
                return [await one(0)]
            except NinServeError as exc:
                if whole:
                    raise
                return [exc]  # type: ignore[return-value]  # list[Ran | NinServeError], as overloaded
        if whole:
            if batcher.queued + len(live) > batcher.max_queue:
                raise Overloaded(
                    f"the inference queue is full ({batcher.queued} of {batcher.max_queue} queued, "
                    f"{len(live)} more images sent); retry shortly"
                )
            return await _all_or_none([one(i) for i in live])
        ran = dict(zip(live, await asyncio.gather(*(_settled(one(i)) for i in live)), strict=True))
    # The indexes not run hold their error.
    return [ran.get(i) or cast(NinServeError, cost) for i, cost in enumerate(costs)]


def lone(batcher: Batcher, admission: Admission, pixels: np.ndarray, deadline: float) -> Alone | None:
    """In the decode thread: run the image there when it is the only one in the server (nothing
    else admitted, the batcher idle). With others in flight it goes through the batcher: at JPEG
    c=8 running lone images in the decode threads whenever the batcher was idle cost 10 % more
    server CPU per request (bench.ab_hot, two runs), the decode threads then running ORT beside
    the decodes they are there for."""
    if admission.admitted > 1:
        return None
    return batcher.try_alone(pixels, deadline)


async def _settled(work: Awaitable[T]) -> T | NinServeError:
    """The outcome of one image's work, its domain error included."""
    try:
        return await work
    except NinServeError as exc:
        return exc


async def _all_or_none(work: list[Awaitable[Ran]]) -> list[Ran]:
    """All at once, so they share ONNX Runtime batches; if one fails the rest are withdrawn."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # retrieve every outcome: no stray warnings
        raise


async def classify(
    serving: ServingState,
    data: bytes,
    *,
    top_k: int = 5,
    inline_maps: bool = False,
    resolution: int | None = None,
    deadline: float | None = None,
    model: Served | None = None,
) -> Classified:
    """Image bytes -> stored result and response body; raises domain errors (app/core/errors.py)."""
    timings = Timings()
    if deadline is None:
        deadline = time.monotonic() + serving.settings.request_timeout_s
    served = model or serving.model()
    info = served.info
    settings = serving.settings
    size = resolve_resolution(resolution, info.native_size, settings.max_resolution)
    (ran,) = await run_images(
        serving,
        (data,),
        size,
        deadline=deadline,
        preview_size=settings.preview_size,
        keep_bytes=settings.preview_keep_bytes,
        model=served,
    )
    if isinstance(ran, NinServeError):
        raise ran
    return await _classified(serving, info, ran, size, timings, top_k=top_k, inline_maps=inline_maps)


async def classify_batch(
    serving: ServingState,
    images: Sequence[bytes | NinServeError],
    *,
    top_k: int = 5,
    inline_maps: bool = False,
    resolution: int | None = None,
    deadline: float,
    model: Served | None = None,
) -> list[Classified | NinServeError]:
    """Several images, each classified or failed on its own (a refused admission fails them all),
    submitted at once so they share ONNX Runtime batches."""
    started = time.perf_counter()
    served = model or serving.model()
    info = served.info
    settings = serving.settings
    try:
        size = resolve_resolution(resolution, info.native_size, settings.max_resolution)
    except NinServeError as exc:
        return [image if isinstance(image, NinServeError) else exc for image in images]
    ran = await run_images(
        serving,
        images,
        size,
        deadline=deadline,
        preview_size=settings.preview_size,
        keep_bytes=settings.preview_keep_bytes,
        model=served,
    )

    async def one(item: Ran) -> Classified:
        timings = Timings(start=started)
        return await _classified(serving, info, item, size, timings, top_k=top_k, inline_maps=inline_maps)

    work = [item if isinstance(item, NinServeError) else _settled(one(item)) for item in ran]
    done = iter(await asyncio.gather(*(w for w in work if not isinstance(w, NinServeError))))
    return [w if isinstance(w, NinServeError) else next(done) for w in work]


async def _classified(
    serving: ServingState,
    info: ModelInfo,
    ran: Ran,
    size: int,
    timings: Timings,
    *,
    top_k: int,
    inline_maps: bool,
) -> Classified:
    """A run image -> the v1 result body, stored."""
    result, decoded = ran.result, ran.image
    assert decoded is not None  # v1 sends encoded images
    timings.ms["decode"] = ran.decode_ms
    timings.ms["queue"] = round(result.queue_ms, 3)
    timings.ms["compute"] = round(result.compute_ms, 3)
    t = time.perf_counter()

    prediction_id = new_id()
    scores = result.scores
    score_list = scores.tolist()
    # Highest first, ties in class order (a stable sort): what np.argsort did, without its overhead.
    order = sorted(range(len(score_list)), key=score_list.__getitem__, reverse=True)[:top_k]
    base = f"/v1/predictions/{prediction_id}"
    payload: dict[str, Any] = {
        "id": prediction_id,
        "model": {"name": info.name, "version": info.version},
        "top": [{"label": info.classes[i], "index": i, "score": score_list[i]} for i in order],
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
    await serving.store.put(record)
    if not inline_maps:
        return Classified(record, payload, stored_body, timings)
    payload["maps"]["values"] = result.maps
    return Classified(record, payload, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), timings)
