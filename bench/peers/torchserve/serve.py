"""Archive the handler and start TorchServe in the foreground, configured from BENCH_*.

    BENCH_PORT=8104 BENCH_MODEL=$PWD/model/artifacts/nin-cifar10.onnx \
        scratch/bench/venvs/torchserve/bin/python bench/peers/torchserve/serve.py

Ports: inference BENCH_PORT, management +1, metrics +2, gRPC +3/+4, all on 127.0.0.1. One
worker process with TorchServe's batching (batchSize / maxBatchDelay as ninserve's defaults),
token auth off (it guards the management API; the benchmark only infers), no model snapshots.
The archive (`.mar`, handler + common.py; the ONNX file stays where it is) and the config go to
BENCH_SCRATCH/torchserve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PORT = int(os.environ.get("BENCH_PORT", "8104"))
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "32"))
MAX_WAIT_MS = float(os.environ.get("BENCH_MAX_WAIT_MS", "0"))
WORK = Path(os.environ.get("BENCH_SCRATCH", ROOT / "scratch" / "bench")) / "torchserve"
BIN = Path(sys.executable).parent


def archive(store: Path) -> None:
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(BIN / "torch-model-archiver"),
            "--model-name=nin",
            "--version=1.0",
            f"--handler={HERE / 'handler.py'}",
            f"--extra-files={HERE.parent / 'common.py'}",
            f"--export-path={store}",
            "--force",
        ],
        check=True,
    )


def write_config(store: Path) -> Path:
    models = {
        "nin": {
            "1.0": {
                "defaultVersion": True,
                "marName": "nin.mar",
                "minWorkers": 1,
                "maxWorkers": 1,
                "batchSize": MAX_BATCH,
                "maxBatchDelay": max(1, round(MAX_WAIT_MS)),  # integer milliseconds
                "responseTimeout": 60,
            }
        }
    }
    lines = {
        "inference_address": f"http://127.0.0.1:{PORT}",
        "management_address": f"http://127.0.0.1:{PORT + 1}",
        "metrics_address": f"http://127.0.0.1:{PORT + 2}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "grpc_inference_port": str(PORT + 3),
        "grpc_management_port": str(PORT + 4),
        "disable_token_authorization": "true",
        "enable_model_api": "false",
        "disable_system_metrics": "true",
        "install_py_dep_per_model": "false",
        "job_queue_size": "1024",
        "default_workers_per_model": "1",
        "model_store": str(store),
        "load_models": "nin.mar",
        "models": json.dumps(models),
    }
    path = WORK / "config.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return path


def main() -> int:
    store = WORK / "model-store"
    archive(store)
    config = write_config(store)
    os.chdir(WORK)  # TorchServe writes logs/ into the working directory
    cmd = [str(BIN / "torchserve"), "--start", "--foreground", "--ncs", "--disable-token-auth"]
    cmd += ["--ts-config", str(config), "--model-store", str(store)]
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
