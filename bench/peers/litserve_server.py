"""Peer: LitServe with its dynamic batching (max_batch_size / batch_timeout as ninserve's defaults).

LitServe runs the API in a separate inference worker process; `decode_request` runs there per
request, then `batch` -> `predict` -> `unbatch` -> `encode_response`.

    BENCH_PORT=8102 scratch/bench/venvs/litserve/bin/python bench/peers/litserve_server.py
    curl -F file=@cat.png http://127.0.0.1:8102/classify
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation at run
# time, and only the class `Request` (not the string) makes it parse the multipart form.
from typing import Any

import common
import litserve as ls
import numpy as np
from fastapi import Request


class NiNAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.session = common.make_session()
        self.classes = common.class_names(self.session)

    def decode_request(self, request: Request) -> np.ndarray:
        upload = request["file"]  # the parsed multipart form: a starlette UploadFile
        return common.preprocess(upload.file.read())

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs

    def predict(self, x: list[np.ndarray]) -> np.ndarray:
        return common.run_batch(self.session, x)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return common.result(output, self.classes)


if __name__ == "__main__":
    # At batch_timeout=0 LitServe's loop polls its queue with get_nowait and spins a whole core
    # while idle; 1 ms is the smallest window at which it blocks instead (in 1 ms waits).
    window_s = max(common.MAX_WAIT_MS, 1.0) / 1000
    api = NiNAPI(max_batch_size=common.MAX_BATCH, batch_timeout=window_s, api_path="/classify")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host=common.HOST, port=common.PORT, log_level="warning", generate_client_file=False)
