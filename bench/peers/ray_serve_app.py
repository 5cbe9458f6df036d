"""Peer: Ray Serve with @serve.batch (max_batch_size / wait as ninserve's defaults), FastAPI ingress.

One replica decodes each upload in its handler, then awaits a batched method that runs ONNX
Runtime once per batch. Requests travel client -> Ray's HTTP proxy actor -> the replica actor.

Ray binds its own services (GCS, raylet, object manager, dashboard agent) on every interface
whatever the proxy's host, so run this only inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up && BENCH_PORT=8110 \
        scratch/bench/venvs/ray/bin/python bench/peers/ray_serve_app.py'

bench/run.py does exactly that (it runs every server in such a namespace).
"""

# No `from __future__ import annotations`: Ray's ingress rebuilds the FastAPI routes outside
# this module, where the string annotation `UploadFile` no longer resolves (it became a query).
import os
import signal
import threading
from typing import Any

import common
import numpy as np
import ray
from fastapi import FastAPI, UploadFile
from ray import serve

app = FastAPI()


# max_ongoing_requests bounds what reaches the replica (default 5): raise it past the
# benchmark's 64 connections, or batches could never fill.
@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class NiN:
    def __init__(self) -> None:
        self.session = common.make_session()
        self.classes = common.class_names(self.session)

    @app.post("/classify")
    async def classify(self, file: UploadFile) -> dict[str, Any]:
        pixels = common.preprocess(await file.read())
        return common.result(await self.batched(pixels), self.classes)

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @serve.batch(max_batch_size=common.MAX_BATCH, batch_wait_timeout_s=common.MAX_WAIT_MS / 1000)
    async def batched(self, pixels: list[np.ndarray]) -> list[np.ndarray]:
        return list(common.run_batch(self.session, pixels))


def main() -> None:
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}},
        logging_level="warning",
    )
    quiet = {"log_level": "WARNING", "enable_access_log": False}  # ninserve logs no access lines
    serve.start(http_options={"host": common.HOST, "port": common.PORT}, logging_config=quiet)
    serve.run(NiN.bind(), route_prefix="/", logging_config=quiet)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
