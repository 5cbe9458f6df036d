"""Peer: the plainest server one would write — one FastAPI handler around an ONNX Runtime session.

No batching: each request runs its own batch-1 session call in Starlette's thread pool (a sync
`def` handler), decoding included. This is the baseline a hand-written service starts from.

    BENCH_PORT=8101 scratch/bench/venvs/fastapi/bin/python bench/peers/fastapi_ort.py
    curl -F file=@cat.png http://127.0.0.1:8101/classify
"""

from __future__ import annotations

from typing import Any

import common
import uvicorn
from fastapi import FastAPI, UploadFile

session = common.make_session()
classes = common.class_names(session)
app = FastAPI()


@app.post("/classify")
def classify(file: UploadFile) -> dict[str, Any]:
    pixels = common.preprocess(file.file.read())
    return common.result(common.run_batch(session, [pixels])[0], classes)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host=common.HOST, port=common.PORT, log_level="warning")
