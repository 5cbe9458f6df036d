"""A small Python client for ninserve's v1 API (httpx; the serving install has everything it needs).

    from app.client import Client

    with Client("http://127.0.0.1:8000") as client:
        result = client.classify("app/web/samples/cat.jpg", top_k=3)
        print(result["top"][0]["label"], result["top"][0]["score"])
        maps = client.maps(result)                       # numpy float32 [K, h, w]
        png = client.map_png(result, "cat", overlay=True)  # heatmap over the image, PNG bytes
        items = client.classify_batch(["a.jpg", "b.png"])   # one entry per file, in order
        client.classify("a.jpg", model="shapes", version="2")   # a repository model, one version
        [m["name"] for m in client.models()]                    # what the server has loaded

Results are the API's JSON as dicts (documented at /docs and in docs/api.md). A request the
server refuses raises ApiError with its RFC 9457 problem; an unreachable server raises
httpx.TransportError. `classify_batch` sends files in chunks the server accepts (it halves a
chunk the server answers with 413) and waits out 503 overloads as Retry-After says.
"""

from __future__ import annotations

import mimetypes
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
import numpy as np

DEFAULT_URL = "http://127.0.0.1:8000"
BATCH_FILES = 32  # the server's default NINSERVE_MAX_REQUEST_IMAGES; smaller limits are found from 413s
RETRIES_ON_503 = 3  # an overloaded server says when to come back; after this many tries, give up

# An image: a file path, its bytes, or (filename, bytes).
Image = str | os.PathLike[str] | bytes | tuple[str, bytes]
# A prediction: the result dict from classify / classify_batch, or its id.
Prediction = dict[str, Any] | str
# What GET .../maps returns and what a map PNG's colours mean (docs/api.md#map-pngs).
MapValues = Literal["logit", "weighted", "posterior"]
MapNormalize = Literal["weighted", "posterior", "global", "map"]


class ApiError(Exception):
    """The server answered with an error; `problem` is its RFC 9457 body (or {} if none)."""

    def __init__(self, status: int, problem: dict[str, Any], text: str = "") -> None:
        self.status, self.problem = status, problem
        self.detail = str(problem.get("detail") or text or "")
        title = problem.get("title", "")
        super().__init__(f"{status} {title}: {self.detail}" if title else f"{status}: {self.detail}")

    @property
    def slug(self) -> str:
        """The problem type's last part, e.g. `too-many-files` or `invalid-image`."""
        return str(self.problem.get("type", "")).rsplit(":", 1)[-1]

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls(response.status_code, {}, response.text[:200])
        return cls(response.status_code, body)


def image_part(image: Image) -> tuple[str, bytes, str]:
    """(filename, bytes, media type) for a multipart upload."""
    if isinstance(image, bytes):
        name, data = "image", image
    elif isinstance(image, tuple):
        name, data = image
    else:
        path = Path(image)
        name, data = path.name, path.read_bytes()
    return name, data, mimetypes.guess_type(name)[0] or "application/octet-stream"


def _id(prediction: Prediction) -> str:
    return prediction if isinstance(prediction, str) else str(prediction["id"])


def classify_path(model: str | None, version: str | None, *, batch: bool = False) -> str:
    """The v1 route for a model and version: the server's default model without one."""
    if model is None:
        if version is not None:
            raise ValueError("a version needs a model: pass model= too")
        base = "/v1/classify"
    else:
        base = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            base += f"/versions/{quote(str(version), safe='')}"
        base += "/classify"
    return base + "/batch" if batch else base


class Client:
    """A connection to one ninserve server; use it as a context manager or call close().

    `model` and `version` pick what classify and classify_batch use (default: the server's
    default model, its latest version); each call can name its own."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        model: str | None = None,
        version: str | None = None,
        timeout: float = 60.0,
        batch_files: int = BATCH_FILES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.model, self.version = model, version
        self.batch_files = batch_files  # lowered for good when the server says 413 too-many-files
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- requests -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(RETRIES_ON_503 + 1):
            response = self._http.request(method, path, **kwargs)
            retry_after = response.headers.get("retry-after", "")
            if response.status_code != 503 or not retry_after.isdigit() or attempt == RETRIES_ON_503:
                break
            time.sleep(min(float(retry_after), 10.0))
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    def health(self) -> dict[str, Any]:
        """GET /healthz: liveness, and the model, version and execution provider once loaded."""
        return self._request("GET", "/healthz").json()

    def models(self) -> list[dict[str, Any]]:
        """GET /v1/models: name, version, classes, validation accuracy, execution provider..."""
        return self._request("GET", "/v1/models").json()["models"]

    def classify(
        self,
        image: Image,
        *,
        top_k: int = 5,
        maps: str = "none",
        resolution: int | None = None,
        model: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/classify (or /v1/models/{model}[/versions/{version}]/classify): top-k, all
        scores, image size, timings and links to the maps.

        `maps="inline"` adds the raw map values; `resolution` runs the network at that square
        size (a multiple of 4, at least the native 32) for finer maps."""
        params = _params(top_k, maps, resolution)
        path = self._path(model, version)
        return self._request("POST", path, params=params, files={"file": image_part(image)}).json()

    def _path(self, model: str | None, version: str | None, *, batch: bool = False) -> str:
        if model is None:
            model, version = self.model, version if version is not None else self.version
        return classify_path(model, version, batch=batch)

    def classify_batch(
        self,
        images: Sequence[Image],
        *,
        top_k: int = 5,
        maps: str = "none",
        resolution: int | None = None,
        progress: Callable[[int], None] | None = None,
        model: str | None = None,
        version: str | None = None,
    ) -> list[dict[str, Any]]:
        """POST /v1/classify/batch in chunks; one entry per image, in order: `index`, `filename`,
        `status` and either `result` (as from classify) or `error` (an RFC 9457 problem).

        Files that cannot be read locally get an entry with status 0 and the reason. `progress`
        is called with the number of images finished after each chunk."""
        params = _params(top_k, maps, resolution)
        path = self._path(model, version, batch=True)
        entries: list[dict[str, Any]] = []
        start = 0
        while start < len(images):
            chunk = images[start : start + self.batch_files]
            try:
                answered = self._batch(chunk, params, path)
            except ApiError as exc:
                # Too many files or too many bytes for one request: halve and try again.
                if exc.status == 413 and len(chunk) > 1:
                    self.batch_files = max(1, len(chunk) // 2)
                    continue
                if exc.status == 413:  # one file too large for a request: its own error
                    answered = [_local_error(0, _name(chunk[0]), exc.status, exc.problem)]
                else:
                    raise
            for entry in answered:
                entry["index"] += start
            entries.extend(answered)
            start += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return entries

    def _batch(self, chunk: Sequence[Image], params: dict[str, Any], path: str) -> list[dict[str, Any]]:
        parts: list[tuple[str, tuple[str, bytes, str]]] = []
        unreadable: dict[int, dict[str, Any]] = {}
        for i, image in enumerate(chunk):
            try:
                parts.append(("files", image_part(image)))
            except OSError as exc:
                unreadable[i] = _local_error(i, _name(image), 0, {"detail": exc.strerror or str(exc)})
        answered: Iterator[dict[str, Any]] = iter([])
        if parts:
            response = self._request("POST", path, params=params, files=parts)
            answered = iter(response.json()["results"])
        entries = []
        for i in range(len(chunk)):
            if i in unreadable:
                entries.append(unreadable[i])
            else:
                entry = next(answered)
                entries.append(entry | {"index": i})
        return entries

    def prediction(self, prediction: Prediction) -> dict[str, Any]:
        """GET /v1/predictions/{id}: a stored result (kept for NINSERVE_STORE_TTL_S)."""
        return self._request("GET", f"/v1/predictions/{_id(prediction)}").json()

    def maps(self, prediction: Prediction, *, values: MapValues = "logit") -> np.ndarray:
        """The confidence maps, float32 [K, h, w]: where in the image each class is seen; the model's
        logits, or `values="weighted"`/`"posterior"` for the probabilities the PNGs colour."""
        params = {"values": values}
        body = self._request("GET", f"/v1/predictions/{_id(prediction)}/maps", params=params).json()
        return np.asarray(body["values"], dtype=np.float32).reshape(body["shape"])

    def map_png(
        self,
        prediction: Prediction,
        label: str | int,
        *,
        overlay: bool = False,
        size: int = 256,
        colormap: str = "jet",
        normalize: MapNormalize = "weighted",
    ) -> bytes:
        """One class's map (a name or an index) as a heatmap PNG, optionally over the image;
        `normalize` says what a colour means (docs/api.md#map-pngs)."""
        params = {"overlay": str(overlay).lower(), "size": size, "colormap": colormap, "normalize": normalize}
        path = f"/v1/predictions/{_id(prediction)}/maps/{label}.png"
        return self._request("GET", path, params=params).content

    def grid_png(
        self,
        prediction: Prediction,
        *,
        overlay: bool = False,
        size: int = 128,
        normalize: MapNormalize = "weighted",
    ) -> bytes:
        """Every class's map in one labelled grid PNG."""
        params = {"overlay": str(overlay).lower(), "size": size, "normalize": normalize}
        return self._request("GET", f"/v1/predictions/{_id(prediction)}/maps.png", params=params).content


def _params(top_k: int, maps: str, resolution: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"top_k": top_k, "maps": maps}
    if resolution is not None:
        params["resolution"] = resolution
    return params


def _name(image: Image) -> str:
    if isinstance(image, bytes):
        return "image"
    if isinstance(image, tuple):
        return image[0]
    return Path(image).name


def _local_error(index: int, filename: str, status: int, problem: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "filename": filename, "status": status, "error": problem}
