"""Peer: NVIDIA PyTriton (Triton Inference Server, bundled) with Triton's dynamic batcher.

Triton speaks the KServe v2 protocol, not multipart: a request is a JSON header followed by the
raw image bytes as one BYTES tensor (Triton's binary-data extension), sent as

    POST /v2/models/nin/infer
    Inference-Header-Content-Length: <length of the JSON header>
    {"inputs":[{"name":"image","shape":[1,1],"datatype":"BYTES","parameters":{"binary_data_size":N+4}}]}
    <uint32 little-endian N><N image bytes>

bench/loadgen.py builds exactly that body. Decoding happens here, in the batched Python
function, so the server does the same work as the others. The answer is Triton's JSON:
`scores` [1, 10] float32 and `top` [1, 5] int32 (class indices, best first).

    BENCH_PORT=8107 scratch/bench/venvs/pytriton/bin/python bench/peers/pytriton_server.py
"""

from __future__ import annotations

import os
import sysconfig

import common
import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

session = common.make_session()


@batch
def infer(image: np.ndarray) -> dict[str, np.ndarray]:
    """image: object [N, 1] of bytes -> scores float32 [N, K], top int32 [N, 5]."""
    scores = common.run_batch(session, [common.preprocess(row[0]) for row in image])
    top = np.argsort(scores, axis=1)[:, ::-1][:, : common.TOP_K].astype(np.int32)
    return {"scores": scores, "top": top}


def main() -> None:
    # Triton's Python-backend stub links libpython3.X.so by soname; make it load this
    # interpreter's (a system libpython of another patch release breaks the stdlib it imports).
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))
    # gRPC and metrics stay on loopback too; ports next to the HTTP one.
    config = TritonConfig(
        http_address=common.HOST,
        http_port=common.PORT,
        grpc_address=common.HOST,
        grpc_port=common.PORT + 1,
        metrics_address=common.HOST,
        metrics_port=common.PORT + 2,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="nin",
            infer_func=infer,
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[
                Tensor(name="scores", dtype=np.float32, shape=(-1,)),
                Tensor(name="top", dtype=np.int32, shape=(common.TOP_K,)),
            ],
            config=ModelConfig(
                max_batch_size=common.MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(common.MAX_WAIT_MS * 1000)),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
