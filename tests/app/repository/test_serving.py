"""A live server over a model repository: several models and versions at once, 404s naming what is
served, the repository API with and without keys, failed loads that leave the old version serving,
memory refusals, polling, a hot swap under load, and the KServe SDK's requests."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from app.config import Settings
from tests.app.helpers import CLASSES, build_tiny_model, live_server, pattern, png

KEY = "k" * 24
CARS = ["sedan", "truck", "van"]


def put_version(root: Path, model: str, version: int, *, seed: int, classes: list[str] = CLASSES) -> Path:
    folder = root / model / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    return build_tiny_model(folder / "model.onnx", version=f"{model}-{version}", classes=classes, seed=seed)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """`pets` versions 1 and 2 (both served: policy all), `cars` version 1 with its own labels."""
    root = tmp_path / "models"
    put_version(root, "pets", 1, seed=1)
    put_version(root, "pets", 2, seed=2)
    (root / "pets" / "config.json").write_text(json.dumps({"version_policy": {"all": {}}}))
    put_version(root, "cars", 1, seed=3, classes=CARS)
    return root


@pytest.fixture
def serve(make_settings: Callable[..., Settings]) -> Callable[..., Iterator[str]]:
    def start(root: Path, **overrides: object):
        return live_server(make_settings(model_path=None, model_repository=root, **overrides))

    return start


def classify(client: httpx.Client, path: str, seed: int = 0) -> httpx.Response:
    return client.post(path, files={"file": ("x.png", png(seed))})


def test_two_models_and_two_versions_are_served_at_once(repository: Path, serve) -> None:
    with serve(repository) as url, httpx.Client(base_url=url, timeout=30) as client:
        listed = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["version"], m["default"], m["latest"]) for m in listed] == [
            ("cars", "1", True, True),  # the first model by name is the default
            ("pets", "2", False, True),  # each model's latest version first
            ("pets", "1", False, False),
        ]
        assert listed[0]["classes"] == CARS and listed[0]["precision"] == "fp32"
        default = classify(client, "/v1/classify").json()
        assert default["model"] == {"name": "cars", "version": "1"} and set(default["scores"]) == set(CARS)
        one = classify(client, "/v1/models/pets/versions/1/classify").json()
        two = classify(client, "/v1/models/pets/classify").json()  # the highest loaded version
        assert one["model"]["version"] == "1" and two["model"]["version"] == "2"
        assert one["scores"] != two["scores"]  # different weights, different answers
        # The stored prediction keeps its model's labels: the maps render with them.
        stored = client.get(f"/v1/predictions/{default['id']}").json()
        assert stored["model"] == {"name": "cars", "version": "1"}
        assert client.get(f"/v1/predictions/{default['id']}/maps/van.png").status_code == 200
        assert client.get(f"/v1/predictions/{one['id']}/maps/van.png").status_code == 404
        batch = client.post(
            "/v1/models/pets/versions/2/classify/batch", files=[("files", ("a.png", png(1)))]
        ).json()
        assert batch["results"][0]["result"]["model"] == {"name": "pets", "version": "2"}
        for name, versions in (("pets", ["1", "2"]), ("cars", ["1"])):
            meta = client.get(f"/v2/models/{name}").json()
            assert meta["versions"] == versions
            assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
        pixels = pattern(5)[None]
        body = {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "UINT8",
                    "shape": list(pixels.shape),
                    "data": pixels.ravel().tolist(),
                }
            ],
            "outputs": [{"name": "scores"}],
        }
        v1 = client.post("/v2/models/pets/versions/1/infer", json=body).json()
        assert (v1["model_name"], v1["model_version"]) == ("pets", "1")
        metrics = client.get("/metrics").text
        labels = 'endpoint="/v1/models/{model_name}/classify",model="pets",protocol="http",version="2"'
        assert f"nv_inference_request_success_total{{{labels}}} 1.0" in metrics
        assert 'nv_inference_count_total{model="pets",version="1"}' in metrics


def test_unknown_models_and_versions_are_404s_naming_what_is_served(repository: Path, serve) -> None:
    with serve(repository) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = classify(client, "/v1/models/dogs/classify")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert "unknown model 'dogs'" in problem["detail"] and "pets (1, 2)" in problem["detail"]
        assert problem["served"] == {"cars": ["1"], "pets": ["1", "2"]}
        missing = classify(client, "/v1/models/pets/versions/7/classify").json()
        assert "has no version '7' loaded; it serves 1, 2" in missing["detail"]
        v2 = client.post("/v2/models/pets/versions/7/infer", content=b"{}")
        assert v2.status_code == 404 and "it serves 1, 2" in v2.json()["error"]
        assert client.get("/v2/models/dogs/ready").status_code == 404


def test_index_load_and_unload_over_the_api(repository: Path, serve) -> None:
    with serve(repository) as url, httpx.Client(base_url=url, timeout=30) as client:
        index = client.post("/v2/repository/index").json()
        assert [(e["name"], e["version"], e["state"]) for e in index] == [
            ("cars", "1", "READY"),
            ("pets", "1", "READY"),
            ("pets", "2", "READY"),
        ]
        assert client.post("/v2/repository/models/pets/unload").status_code == 200
        assert classify(client, "/v1/models/pets/classify").status_code == 404
        assert client.get("/v2/models/pets/ready").status_code == 404
        states = {(e["name"], e["version"]): e for e in client.post("/v2/repository/index").json()}
        assert (
            states[("pets", "2")]["state"] == "UNAVAILABLE" and states[("pets", "2")]["reason"] == "unloaded"
        )
        ready = client.post("/v2/repository/index", json={"ready": True}).json()
        assert [e["name"] for e in ready] == ["cars"]
        assert client.post("/v2/repository/models/pets/load").status_code == 200
        assert classify(client, "/v1/models/pets/versions/1/classify").status_code == 200
        missing = client.post("/v2/repository/models/dogs/load")
        assert missing.status_code == 404 and "no model 'dogs' in the repository" in missing.json()["error"]
        assert client.post("/v2/repository/models/dogs/unload").status_code == 404
        assert client.post("/v2/repository/models/..%2Fetc/load").status_code == 404


def test_the_repository_api_needs_a_key_when_keys_are_set(repository: Path, serve) -> None:
    with serve(repository, api_keys=KEY) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/v2/repository/index", "/v2/repository/models/pets/unload"):
            refused = client.post(path)
            assert refused.status_code == 401 and "error" in refused.json()
        auth = {"Authorization": f"Bearer {KEY}"}
        assert client.post("/v2/repository/models/pets/unload", headers=auth).status_code == 200
        assert client.post("/v2/repository/models/pets/load", headers=auth).status_code == 200
        assert client.get("/v2/models/pets/ready", headers=auth).status_code == 200


def test_a_broken_version_leaves_the_old_one_serving_with_the_reason_in_the_index(
    tmp_path: Path, serve
) -> None:
    root = tmp_path / "models"
    put_version(root, "pets", 1, seed=1)
    with serve(root) as url, httpx.Client(base_url=url, timeout=30) as client:
        broken = root / "pets" / "2"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"not an onnx file")
        refused = client.post("/v2/repository/models/pets/load")
        assert refused.status_code == 400
        assert "version 2: model.onnx is not a valid ONNX model" in refused.json()["error"]
        assert "serving 1" in refused.json()["error"]
        assert classify(client, "/v1/models/pets/classify").json()["model"]["version"] == "1"
        # A model with other classes than its config.json's labels breaks the contract.
        shutil.rmtree(broken)
        put_version(root, "pets", 3, seed=3, classes=CARS)
        (root / "pets" / "config.json").write_text(json.dumps({"labels": CLASSES}))
        assert client.post("/v2/repository/models/pets/load").status_code == 400
        assert classify(client, "/v1/models/pets/classify").json()["model"]["version"] == "1"
        states = {(e["name"], e.get("version")): e for e in client.post("/v2/repository/index").json()}
        assert states[("pets", "1")]["state"] == "READY"
        assert states[("pets", "3")]["state"] == "UNAVAILABLE"
        assert "config.json has 10 labels but the artifact has 3 classes" in states[("pets", "3")]["reason"]


def test_a_version_replaced_in_place_keeps_its_metrics(tmp_path: Path, serve) -> None:
    root = tmp_path / "models"
    put_version(root, "pets", 1, seed=1)
    with serve(root) as url, httpx.Client(base_url=url, timeout=30) as client:
        before = classify(client, "/v1/models/pets/classify").json()["scores"]
        put_version(root, "pets", 1, seed=2)  # new files under the same version number
        assert client.post("/v2/repository/models/pets/load").status_code == 200
        assert classify(client, "/v1/models/pets/classify").json()["scores"] != before
        # Retiring the old files must not drop the series the new ones count in.
        assert 'nv_inference_count_total{model="pets",version="1"} 2.0' in client.get("/metrics").text


def test_a_load_the_model_memory_cannot_hold_is_refused_and_unloading_returns_it(
    repository: Path, serve
) -> None:
    # With an arena per session each tiny version is charged ~8 MB: 20 MB holds two of the three.
    with (
        serve(repository, model_memory_mb=20, ort_arena="shrink") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        states = {(e["name"], e["version"]): e for e in client.post("/v2/repository/index").json()}
        assert states[("cars", "1")]["state"] == "READY" and states[("pets", "1")]["state"] == "READY"
        assert states[("pets", "2")]["state"] == "UNAVAILABLE"
        assert "memory: this version needs ~8 MB" in states[("pets", "2")]["reason"]
        assert "NINSERVE_MODEL_MEMORY_MB" in states[("pets", "2")]["reason"]
        assert 'ninserve_model_memory_bytes{kind="used"} 1.6' in client.get("/metrics").text
        assert client.post("/v2/repository/models/cars/unload").status_code == 200
        assert client.post("/v2/repository/models/pets/load").status_code == 200
        assert client.get("/v2/models/pets").json()["versions"] == ["1", "2"]


def test_polling_loads_new_versions_and_unloads_removed_models(repository: Path, serve) -> None:
    with serve(repository, repository_poll_s=0.1) as url, httpx.Client(base_url=url, timeout=30) as client:
        put_version(repository, "pets", 3, seed=4)
        shutil.rmtree(repository / "cars")  # the default model: /readyz turns 503 once it goes
        deadline = time.monotonic() + 20
        while client.get("/v2/models/pets").json()["versions"] != ["1", "2", "3"] or (
            client.get("/v2/models/cars/ready").status_code == 200
        ):
            assert time.monotonic() < deadline, client.post("/v2/repository/index").json()
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 503
        assert "model 'cars' is not loaded" in client.get("/readyz").json()["detail"]


def test_polling_does_not_undo_an_unload_but_loads_the_model_again_when_it_comes_back(
    repository: Path, serve, tmp_path: Path
) -> None:
    with serve(repository, repository_poll_s=0.05) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v2/repository/models/pets/unload").status_code == 200
        time.sleep(0.5)  # ten passes over unchanged files
        assert client.get("/v2/models/pets/ready").status_code == 404
        assert client.post("/v2/repository/models/pets/load").status_code == 200
        # A folder moved out and back (same files, same mtimes) serves again.
        shutil.move(repository / "pets", tmp_path / "pets-away")
        deadline = time.monotonic() + 20
        while client.get("/v2/models/pets/ready").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        shutil.move(tmp_path / "pets-away", repository / "pets")
        while client.get("/v2/models/pets/ready").status_code != 200:
            assert time.monotonic() < deadline, client.post("/v2/repository/index").json()
            time.sleep(0.05)


def test_polling_keeps_a_model_serving_while_its_config_json_is_broken(repository: Path, serve) -> None:
    with serve(repository, repository_poll_s=0.05) as url, httpx.Client(base_url=url, timeout=30) as client:
        (repository / "pets" / "config.json").write_text('{"version_policy": {"all": {}}')  # mid-edit
        deadline = time.monotonic() + 20
        while not any("not JSON" in e.get("reason", "") for e in client.post("/v2/repository/index").json()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        assert client.get("/v2/models/pets").json()["versions"] == ["1", "2"]


def test_a_hot_swap_under_load_drops_nothing_and_every_answer_is_one_whole_version(
    tmp_path: Path, serve
) -> None:
    """16 clients classify without pause while version 2 replaces version 1 (latest 1)."""
    root = tmp_path / "models"
    put_version(root, "pets", 1, seed=1)
    image = png(7)
    with serve(root, max_queue=256) as url, httpx.Client(base_url=url, timeout=30) as client:
        reference = {"1": classify(client, "/v1/models/pets/classify", 7).json()["scores"]}
        answers: list[tuple[float, int, str | None, dict[str, float] | None]] = []
        errors: list[str] = []
        swapped = 0.0

        async def hammer(stop: float) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as session:
                while time.monotonic() < stop:
                    sent = time.monotonic()
                    try:
                        r = await session.post("/v1/models/pets/classify", files={"file": ("x.png", image)})
                    except httpx.HTTPError as exc:  # a reset or refused connection
                        errors.append(repr(exc))
                        continue
                    body = r.json() if r.status_code == 200 else None
                    version = body["model"]["version"] if body else None
                    answers.append((sent, r.status_code, version, body["scores"] if body else None))

        async def swap() -> None:
            nonlocal swapped
            await asyncio.sleep(1.0)
            put_version(root, "pets", 2, seed=2)
            async with httpx.AsyncClient(base_url=url, timeout=30) as session:
                assert (await session.post("/v2/repository/models/pets/load")).status_code == 200
            swapped = time.monotonic()

        async def run() -> None:
            stop = time.monotonic() + 3.0
            await asyncio.gather(*(hammer(stop) for _ in range(16)), swap())

        asyncio.run(run())
        reference["2"] = classify(client, "/v1/models/pets/classify", 7).json()["scores"]
        assert reference["2"] != reference["1"]
        assert not errors
        assert {status for _, status, _, _ in answers} == {200}, [a[:3] for a in answers if a[1] != 200][:5]
        versions = {version for _, _, version, _ in answers}
        assert versions == {"1", "2"}
        for _, _, version, scores in answers:
            assert scores == reference[version]  # every answer from one whole version
        assert all(version == "2" for sent, _, version, _ in answers if sent > swapped)
        assert client.get("/v2/models/pets").json()["versions"] == ["2"]
        assert len(answers) > 100


def test_the_kserve_sdks_requests_reach_a_model_named_by_the_service(
    make_settings: Callable[..., Settings], tiny_model: Path
) -> None:
    """kserve.InferenceRESTClient (protocol v2) as it sends them (python/kserve/kserve/
    inference_client.py): GET v2/health/ready, GET v2/models/{name}/ready, and POST
    v2/models/{name}/infer with orjson bytes and no Content-Type, or binary with
    Inference-Header-Content-Length; the model is named by NINSERVE_MODEL_NAME, as KServe's
    ServingRuntime passes the InferenceService's name."""
    settings = make_settings(model_name="ninserve")
    images = np.stack([pattern(1), pattern(2)])
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/v2/health/ready").json().get("ready") is True
        assert client.get("/v2/models/ninserve/ready").is_success
        request = {
            "id": "kserve-1",
            "inputs": [
                {
                    "name": "image",
                    "shape": [2, 32, 32, 3],
                    "datatype": "UINT8",
                    "data": images.ravel().tolist(),
                }
            ],
        }
        answer = client.post("/v2/models/ninserve/infer", content=orjson.dumps(request))
        assert answer.status_code == 200
        body = answer.json()
        assert (body["model_name"], body["id"]) == ("ninserve", "kserve-1")
        scores = next(o for o in body["outputs"] if o["name"] == "scores")
        assert scores["shape"] == [2, 10] and scores["datatype"] == "FP32"
        # Binary: the JSON header, then the raw tensor bytes (InferRequest.to_rest with binary data).
        header = orjson.dumps(
            {
                "id": "kserve-2",
                "inputs": [
                    {
                        "name": "image",
                        "shape": [2, 32, 32, 3],
                        "datatype": "UINT8",
                        "parameters": {"binary_data_size": images.nbytes},
                    }
                ],
                "outputs": [{"name": "scores", "parameters": {"binary_data": False}}],
            }
        )
        binary = client.post(
            "/v2/models/ninserve/infer",
            content=header + images.tobytes(),
            headers={
                "inference-header-content-length": str(len(header)),
                "content-type": "application/octet-stream",
            },
        )
        assert binary.status_code == 200
        same = next(o for o in binary.json()["outputs"] if o["name"] == "scores")["data"]
        assert np.allclose(same, scores["data"])
        wrong = client.post("/v2/models/tiny/infer", content=orjson.dumps(request))
        assert wrong.status_code == 404 and "this server serves ninserve" in wrong.json()["error"]


def test_loads_unloads_and_requests_racing_end_in_a_clear_state(repository: Path, serve) -> None:
    """Loads and unloads of one model sent at once take turns; requests meanwhile get an answer
    from a whole version, a 404 (unloaded), a 503 (reloading) or nothing else; the end state is whole."""
    with serve(repository) as url, httpx.Client(base_url=url, timeout=30) as client:

        async def race() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as session:
                calls = [
                    session.post(f"/v2/repository/models/pets/{op}")
                    for op in ("unload", "load", "unload", "load")
                ]
                calls += [
                    session.post("/v1/models/pets/classify", files={"file": ("x.png", png(1))})
                    for _ in range(12)
                ]
                return list(await asyncio.gather(*calls))

        answers = asyncio.run(race())
        assert [r.status_code for r in answers[:4]] == [200, 200, 200, 200]
        for answer in answers[4:]:  # 503 only while a load after an unload warms up
            assert answer.status_code in (200, 404) or "model pets is loading" in answer.text
        # Whichever call ran last (they arrive on four connections), the model is wholly loaded
        # or wholly unloaded, and the index agrees with what answers.
        states = {(e["name"], e["version"]): e["state"] for e in client.post("/v2/repository/index").json()}
        pets = {states[("pets", "1")], states[("pets", "2")]}
        if client.get("/v2/models/pets/ready").status_code == 200:
            assert client.get("/v2/models/pets").json()["versions"] == ["1", "2"] and pets == {"READY"}
        else:
            assert pets == {"UNAVAILABLE"}
        assert states[("cars", "1")] == "READY"


def test_tritonclients_repository_calls_work(repository: Path, serve) -> None:
    triton = pytest.importorskip("tritonclient.http")
    with serve(repository) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        index = client.get_model_repository_index()
        assert {(m["name"], m["version"], m["state"]) for m in index} >= {("pets", "2", "READY")}
        client.unload_model("pets")
        assert not client.is_model_ready("pets")
        client.load_model("pets")
        assert client.is_model_ready("pets") and client.is_model_ready("pets", "1")
        with pytest.raises(triton.InferenceServerException, match="no model 'dogs' in the repository"):
            client.load_model("dogs")


def test_the_repository_code_loads_without_the_web_framework() -> None:
    code = (
        "import sys, app.repository.registry\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'starlette', 'uvicorn'})\n"
        "assert not web, web"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
