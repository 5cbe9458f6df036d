"""Peer: BentoML 1.4 with adaptive batching on the classify API itself.

A batchable API receives a list of inputs; the dispatcher merges concurrent requests' lists, so
each HTTP request sends one multipart `file` and gets a one-element JSON list back. The image
reaches the API as a Pillow image that BentoML opened from the upload; the rest of the
preprocessing is bench/peers/common.py's.

    cd bench/peers && BENCH_PORT=8103 ../../scratch/bench/venvs/bentoml/bin/bentoml serve \
        bentoml_service:NiN --host 127.0.0.1 --port 8103
    curl -F file=@cat.png http://127.0.0.1:8103/classify
"""

from __future__ import annotations

from typing import Any

import bentoml
import common
from PIL.Image import Image


# One worker process like every other server; no per-request access log (ninserve logs none).
@bentoml.service(workers=1, traffic={"timeout": 60}, logging={"access": {"enabled": False}})
class NiN:
    def __init__(self) -> None:
        self.session = common.make_session()
        self.classes = common.class_names(self.session)

    # max_latency_ms is the dispatcher's deadline: past it requests fail (503), so it is set
    # far above any latency this benchmark sees; the batch window adapts on its own.
    @bentoml.api(batchable=True, max_batch_size=common.MAX_BATCH, max_latency_ms=60_000)
    def classify(self, file: list[Image]) -> list[dict[str, Any]]:
        pixels = [common.preprocess_image(img) for img in file]
        scores = common.run_batch(self.session, pixels)
        return [common.result(row, self.classes) for row in scores]
