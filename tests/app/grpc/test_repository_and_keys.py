"""gRPC over a model repository: version routing, Triton's repository calls (index, load, unload)
from tritonclient, API keys in the `authorization` metadata, and KServe's InferenceGRPCClient's
requests replayed as it builds them (typed contents, model named by the service)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from app.config import Settings
from app.http.main import create_app
from tests.app.grpc.conftest import KEY
from tests.app.helpers import CLASSES, build_tiny_model, live_server, pattern, png


def put_version(root: Path, model: str, version: int, *, seed: int) -> None:
    folder = root / model / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_model(folder / "model.onnx", version=f"{model}-{version}", classes=CLASSES, seed=seed)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    put_version(root, "pets", 1, seed=1)
    put_version(root, "pets", 2, seed=2)
    (root / "pets" / "config.json").write_text(json.dumps({"version_policy": {"all": {}}}))
    put_version(root, "cars", 1, seed=3)
    return root


@pytest.fixture
def serve(make_settings: Callable[..., Settings]) -> Callable[..., Iterator[tuple[str, str]]]:
    from contextlib import contextmanager

    @contextmanager
    def start(**overrides: object) -> Iterator[tuple[str, str]]:
        app = create_app(make_settings(grpc_port=0, **overrides))
        with live_server(app) as url:
            yield url, f"127.0.0.1:{app.state.grpc.port}"

    return start


def infer(tc: triton.InferenceServerClient, model: str, version: str = "", **kwargs) -> triton.InferResult:
    tensor = triton.InferInput("image", [1, 32, 32, 3], "UINT8")
    tensor.set_data_from_numpy(pattern(4)[None])
    return tc.infer(model, [tensor], model_version=version, **kwargs)


def test_versions_route_and_the_repository_calls_load_and_unload(repository: Path, serve) -> None:
    with serve(model_path=None, model_repository=repository) as (url, target):
        tc = triton.InferenceServerClient(target)
        assert tc.get_model_metadata("pets", as_json=True)["versions"] == ["1", "2"]
        assert infer(tc, "pets").get_response().model_version == "2"  # the highest by default
        one, two = (infer(tc, "pets", v).as_numpy("scores") for v in ("1", "2"))
        assert not np.allclose(one, two)  # two versions, two sets of weights
        index = tc.get_model_repository_index(as_json=True)["models"]
        assert {(m["name"], m["version"], m["state"]) for m in index} == {
            ("cars", "1", "READY"),
            ("pets", "1", "READY"),
            ("pets", "2", "READY"),
        }
        tc.unload_model("pets")
        with pytest.raises(InferenceServerException) as caught:
            infer(tc, "pets")
        assert caught.value.status() == "StatusCode.NOT_FOUND"
        assert httpx.get(f"{url}/v2/models/pets").status_code == 404  # one registry for both protocols
        tc.unload_model("cars")  # the default model (first by name): not ready, as HTTP's 503
        with pytest.raises(InferenceServerException) as caught:
            infer(tc, "cars")
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        assert httpx.get(f"{url}/v2/models/cars").status_code == 503
        put_version(repository, "cars", 2, seed=5)
        tc.load_model("cars")
        assert infer(tc, "cars").get_response().model_version == "2"
        assert tc.is_model_ready("cars", "2")
        ready = tc.get_model_repository_index(as_json=True)["models"]
        assert ("cars", "2") in {(m["name"], m["version"]) for m in ready}
        with pytest.raises(InferenceServerException) as caught:
            tc.load_model("nothing-here")
        assert caught.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException) as caught:
            tc.load_model("cars", config='{"max_batch_size": 4}')
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "not taken" in caught.value.message()
        tc.close()


def test_a_failed_load_is_failed_precondition_and_the_old_version_serves(repository: Path, serve) -> None:
    with serve(model_path=None, model_repository=repository) as (_, target):
        tc = triton.InferenceServerClient(target)
        broken = repository / "cars" / "2"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"not onnx")
        with pytest.raises(InferenceServerException) as caught:
            tc.load_model("cars")
        assert caught.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert "serving 1" in caught.value.message()
        assert infer(tc, "cars").get_response().model_version == "1"
        shutil.rmtree(broken)
        tc.close()


def test_api_keys_in_the_authorization_metadata(serve) -> None:
    with serve(api_keys=KEY) as (_, target):
        tc = triton.InferenceServerClient(target)
        assert tc.is_server_live() and tc.is_server_ready()  # probes stay open, as over HTTP
        for headers, says in (
            (None, "an API key is required"),
            ({"authorization": "Bearer " + "x" * 24}, "not valid"),
        ):
            with pytest.raises(InferenceServerException) as caught:
                infer(tc, "tiny", headers=headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            assert says in caught.value.message()
            with pytest.raises(InferenceServerException) as caught:
                tc.get_model_repository_index(headers=headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        answer = infer(tc, "tiny", headers={"authorization": f"Bearer {KEY}"})
        assert answer.as_numpy("scores").shape == (1, 10)
        assert tc.get_model_metadata("tiny", headers={"authorization": f"bearer {KEY}"}).name == "tiny"
        tc.close()


def test_kserve_grpc_clients_requests(serve) -> None:
    """kserve.InferenceGRPCClient as it builds them (python/kserve/kserve/inference_client.py and
    protocol/infer_type.py `InferRequest.to_grpc`): data given as lists goes in typed `contents`
    (UINT8 in uint_contents, BYTES in bytes_contents), the model is named by the service
    (NINSERVE_MODEL_NAME, as KServe's runtime passes it), headers travel as metadata."""
    with serve(model_name="ninserve") as (url, target), grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(service_pb2.ServerReadyRequest()).ready
        assert stub.ModelReady(service_pb2.ModelReadyRequest(name="ninserve")).ready
        images = np.stack([pattern(1), pattern(2)])
        request = service_pb2.ModelInferRequest(model_name="ninserve", id="kserve-1")
        tensor = request.inputs.add(name="image", datatype="UINT8", shape=[2, 32, 32, 3])
        tensor.contents.uint_contents.extend(images.ravel().tolist())
        response = stub.ModelInfer(request, metadata=(("x-request-id", "abc"),), timeout=30)
        assert (response.model_name, response.id) == ("ninserve", "kserve-1")
        names = [o.name for o in response.outputs]
        scores = np.frombuffer(response.raw_output_contents[names.index("scores")], "<f4").reshape(2, 10)
        over_http = httpx.post(
            f"{url}/v2/models/ninserve/infer",
            json={
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "UINT8",
                        "shape": [2, 32, 32, 3],
                        "data": images.ravel().tolist(),
                    }
                ]
            },
        ).json()
        np.testing.assert_allclose(scores.ravel(), over_http["outputs"][0]["data"], rtol=1e-6)
        files = service_pb2.ModelInferRequest(model_name="ninserve")
        files.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(png(7))
        files.outputs.add(name="scores").parameters["classification"].int64_param = 2
        top = stub.ModelInfer(files, timeout=30)
        assert top.outputs[0].datatype == "BYTES" and list(top.outputs[0].shape) == [1, 2]


def test_the_servers_deadline_is_deadline_exceeded_with_a_retry_hint(serve) -> None:
    """request_timeout_s passed before the work ran: DEADLINE_EXCEEDED, and the trailing metadata
    says when to retry (`retry-after`, `grpc-retry-pushback-ms`), as HTTP's 503 + Retry-After."""
    with serve(request_timeout_s=0.000001) as (_, target), grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="tiny")
        request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(png(1))
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "deadline passed" in caught.value.details()
        trailers = dict(caught.value.trailing_metadata())
        assert trailers["retry-after"] == "1" and trailers["grpc-retry-pushback-ms"] == "1000"
