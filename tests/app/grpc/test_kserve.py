"""KServe's own gRPC client (kserve.InferenceGRPCClient) against the gRPC frontend: health, model
readiness, typed and raw tensors, encoded images, an API key in its headers.

The client runs in a child interpreter: KServe and tritonclient each register the protocol's
`inference.*` messages in protobuf's default pool, and one process cannot hold both (the server's
own messages live in a pool of their own, app/grpc/proto/generate.sh)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.config import Settings
from app.http.main import create_app
from tests.app.grpc.conftest import KEY
from tests.app.helpers import live_server, pattern, png

if importlib.util.find_spec("kserve") is None:  # found, not imported: see above
    pytest.skip("kserve is not installed (the dev extra has it)", allow_module_level=True)
ROOT = Path(__file__).resolve().parents[3]

CLIENT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest

target, key, image_path = sys.argv[1:4]
pixels = np.load(sys.argv[4])
headers = [("authorization", f"Bearer {key}")]

async def main():
    client = InferenceGRPCClient(target, timeout=30, retries=0)
    out = {"live": await client.is_server_live(), "ready": await client.is_server_ready()}
    out["model_ready"] = await client.is_model_ready("nin", headers=headers)
    typed = InferInput("image", list(pixels.shape), "UINT8", pixels.ravel().tolist())  # typed contents
    raw = InferInput("image", list(pixels.shape), "UINT8")
    raw.set_data_from_numpy(pixels, binary_data=True)  # raw_input_contents
    for name, tensor in (("typed", typed), ("raw", raw)):
        answer = await client.infer(InferRequest("nin", [tensor], request_id=name), headers=headers)
        scores = next(o for o in answer.outputs if o.name == "scores")
        out[name] = {"id": answer.id, "model": answer.model_name, "scores": scores.as_numpy().tolist()}
    image = InferInput("image", [1], "BYTES", [open(image_path, "rb").read()])
    answer = await client.infer(InferRequest("nin", [image]), headers=headers)
    out["bytes"] = next(o for o in answer.outputs if o.name == "scores").as_numpy().tolist()
    try:
        await client.infer(InferRequest("nin", [typed]))
    except Exception as exc:  # the client's own error type, with the status in its text
        out["no_key"] = str(exc)
    await client.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_kserve_inference_grpc_client(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    app = create_app(make_settings(grpc_port=0, model_name="nin", api_keys=KEY))
    pixels = np.stack([pattern(1), pattern(2)])
    np.save(tmp_path / "pixels.npy", pixels)
    (tmp_path / "x.png").write_bytes(png(3))
    with live_server(app) as url:
        target = f"127.0.0.1:{app.state.grpc.port}"
        command = [
            sys.executable,
            "-c",
            CLIENT,
            target,
            KEY,
            str(tmp_path / "x.png"),
            str(tmp_path / "pixels.npy"),
        ]
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        over_http = httpx.post(
            f"{url}/v2/models/nin/infer",
            headers={"authorization": f"Bearer {KEY}"},
            json={
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "UINT8",
                        "shape": [2, 32, 32, 3],
                        "data": pixels.ravel().tolist(),
                    }
                ],
                "outputs": [{"name": "scores"}],
            },
        ).json()
    assert out["live"] and out["ready"] and out["model_ready"]
    expected = np.asarray(over_http["outputs"][0]["data"], np.float32).reshape(2, 10)
    for name in ("typed", "raw"):
        assert (out[name]["id"], out[name]["model"]) == (name, "nin")
        np.testing.assert_allclose(out[name]["scores"], expected, rtol=1e-6)
    assert np.asarray(out["bytes"]).shape == (1, 10)
    assert "UNAUTHENTICATED" in out["no_key"] or "API key" in out["no_key"]
