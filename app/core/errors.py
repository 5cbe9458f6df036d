"""Domain errors: what a client can cause or observe, free of any web framework.

Core modules (decode, batcher, store, pipeline) and the training code raise these. Each class
names the HTTP status and problem slug it stands for, as plain data; the one translation into a
response lives in app/http/problems.py.
"""

from __future__ import annotations

from typing import Any


class NinServeError(Exception):
    """Base of every error a client can cause or observe; `detail` is safe to show to them."""

    status: int = 500
    slug: str = "internal-error"
    retry_after: int | None = None  # seconds, for the 503s

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidImage(NinServeError):  # bytes that are not a decodable image
    status, slug = 400, "invalid-image"


class EmptyImage(InvalidImage):
    slug = "empty-image"


class InvalidUpload(NinServeError):  # a malformed multipart body
    status, slug = 400, "invalid-upload"


class PayloadTooLarge(NinServeError):  # request body over max_body_bytes
    status, slug = 413, "payload-too-large"


class ImageTooLarge(NinServeError):  # width*height over max_image_pixels: a decompression bomb guard
    status, slug = 413, "image-too-large"


class ImageTooComplex(ImageTooLarge):  # a JPEG with more scans than any encoder writes: a CPU bomb
    slug = "image-too-complex"


class MetadataTooLarge(ImageTooLarge):  # a PNG text or ICC chunk that inflates past Pillow's limits
    slug = "metadata-too-large"


class TooManyFiles(NinServeError):
    status, slug = 413, "too-many-files"


class UnsupportedMediaType(NinServeError):  # Content-Type or sniffed image format we do not take
    status, slug = 415, "unsupported-media-type"


class InvalidParameter(NinServeError):
    status, slug = 422, "invalid-parameter"


class InvalidTensor(NinServeError):  # a V2 inference request whose JSON or tensors are malformed
    status, slug = 400, "invalid-tensor"


class ModelNotFound(NinServeError):  # a model name or version this server does not serve
    status, slug = 404, "model-not-found"


class ModelLoadFailed(NinServeError):  # a repository load request with a version that failed to load
    status, slug = 400, "load-failed"


class PredictionNotFound(NinServeError):  # unknown or expired id
    status, slug = 404, "prediction-not-found"


class LabelNotFound(NinServeError):
    status, slug = 404, "label-not-found"


class Overloaded(NinServeError):  # the batch queue is full
    status, slug, retry_after = 503, "overloaded", 1


class DeadlineExceeded(NinServeError):  # waited in the queue past request_timeout_s
    status, slug, retry_after = 503, "deadline-exceeded", 1


class NotReady(NinServeError):  # model still loading / warming up, or failed to load
    status, slug = 503, "not-ready"
    retry_after: int | None = 2


class ModelUnloaded(NotReady):  # unloaded over the repository API: nothing brings it back by itself
    slug, retry_after = "unloaded", None


class StoreUnavailable(NinServeError):  # the shared result store (Redis) cannot be reached
    status, slug, retry_after = 503, "store-unavailable", 1


class InferenceFailed(NinServeError):  # ONNX Runtime raised on a validated input: our fault
    status, slug = 500, "inference-failed"
