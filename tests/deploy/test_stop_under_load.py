"""scripts/stop_under_load.py: why the pods' preStop sleep matters. Two `ninserve serve` replicas
under load, one stopped the way Kubernetes does (endpoint removal after a propagation delay, in
parallel with preStop then SIGTERM): without the sleep, clients that still pick the stopping
replica are refused; with a sleep longer than the propagation, none is lost. The same run against
the container image is recorded in deploy/README.md (too slow for every test run)."""

from __future__ import annotations

import pytest

from tests.app.helpers import build_tiny_model
from tests.deploy.conftest import load_script

stop = load_script("scripts/stop_under_load.py")
PROPAGATION_S = 0.5


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[float, dict]:
    model = build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")
    env = {"NINSERVE_MODEL_PATH": str(model)}
    runs = stop.run(None, [0.0, PROPAGATION_S + 1.0], PROPAGATION_S, 4, None, env)
    return {r["prestop_s"]: r for r in runs}


def test_without_prestop_clients_are_refused(results: dict[float, dict]) -> None:
    run = results[0.0]
    assert run["refused"] > 0, run  # the listener closed while the endpoint was still in use
    assert run["answered_200"] > 0


def test_a_prestop_longer_than_the_propagation_loses_nothing(results: dict[float, dict]) -> None:
    run = results[PROPAGATION_S + 1.0]
    assert run["lost"] == 0, run
    assert run["answered_200"] > results[0.0]["refused"]  # the load ran all along
    assert run["sigterm_after_s"] >= PROPAGATION_S + 1.0


def test_a_replica_that_cannot_start_ends_the_run(tmp_path) -> None:
    """Not two minutes of waiting for readiness: the exit is seen, and the other replica stopped."""
    env = {"NINSERVE_MODEL_PATH": str(tmp_path / "missing.onnx")}
    with pytest.raises(SystemExit, match="exited before it became ready"):
        stop.run(None, [0.0], PROPAGATION_S, 1, None, env)
