"""TorchServe handler: TorchServe's batcher hands `handle` up to batch_size requests at once.

A multipart upload arrives as `row["file"]` (one key per form field); a raw body as
`row["body"]` or `row["data"]`. The model path comes from BENCH_MODEL (bench/run.py sets it).
"""

from __future__ import annotations

from typing import Any

import common


class NiNHandler:
    def __init__(self) -> None:
        self.session = None
        self.classes: list[str] = []

    def initialize(self, context: Any) -> None:
        self.session = common.make_session()
        self.classes = common.class_names(self.session)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        payloads = [row.get("file") or row.get("body") or row.get("data") for row in data]
        pixels = [common.preprocess(bytes(p)) for p in payloads]
        scores = common.run_batch(self.session, pixels)
        return [common.result(row, self.classes) for row in scores]


_service = NiNHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[dict[str, Any]] | None:
    if _service.session is None:
        _service.initialize(context)
    if data is None:  # the load-time call
        return None
    return _service.handle(data, context)
