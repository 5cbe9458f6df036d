"""docker-compose.yml: valid against the Compose specification and docker-compose itself, CPU
API by default, a `gpu` profile with an NVIDIA reservation, Redis as the shared result store."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest

from tests.deploy.conftest import ROOT, load_yaml_documents, run, tool

COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    (doc,) = load_yaml_documents(COMPOSE)
    return doc["services"]


def test_valid_against_the_compose_spec_schema() -> None:
    checker = tool("check-jsonschema", "pip install check-jsonschema, the dev extra")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_docker_compose_config(profile: str | None) -> None:
    compose = tool("docker-compose", "apt-get install docker-compose, scripts/ci-deps.sh")
    args = [compose, "--file", str(COMPOSE)] + (["--profile", profile] if profile else [])
    result = run(*args, "config", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(run(*args, "config", "--services").stdout.split()) == {"api", "api-gpu", "redis"}


def test_cpu_by_default_gpu_behind_its_profile(services: dict[str, Any]) -> None:
    assert services["api"]["build"]["target"] == "cpu" and "profiles" not in services["api"]
    gpu = services["api-gpu"]
    assert gpu["build"]["target"] == "gpu" and gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["environment"]["NINSERVE_DEVICE"] == "cuda"


def test_replicas_share_redis_and_report_health(services: dict[str, Any]) -> None:
    assert "healthcheck" in services["redis"]
    for name in ("api", "api-gpu"):
        service = services[name]
        assert service["environment"]["NINSERVE_RESULT_STORE"].endswith("redis://redis:6379/0}")
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["healthcheck"]["test"] == ["CMD", "python3", "/opt/ninserve/healthcheck.py"]
        assert service["read_only"] is True


def host_ports(published: str | int) -> set[int]:
    low, _, high = str(published).partition("-")
    return set(range(int(low), int(high or low) + 1))


def published(env: dict[str, str] | None = None) -> dict[str, set[int]]:
    """{service: host ports} as docker-compose resolves the file (with the gpu profile)."""
    compose = tool("docker-compose", "apt-get install docker-compose, scripts/ci-deps.sh")
    yaml = pytest.importorskip("yaml")
    result = subprocess.run(
        [compose, "--file", str(COMPOSE), "--profile", "gpu", "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ | (env or {}),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    return {
        name: set().union(*(host_ports(p["published"]) for p in services[name]["ports"]))
        for name in ("api", "api-gpu")
    }


def test_one_host_port_per_container_port_by_default_so_podman_compose_starts(
    services: dict[str, Any],
) -> None:
    """podman-compose refuses `8000-8009:8000` ("port ranges have different lengths")."""
    for name in ("api", "api-gpu"):
        for mapping in services[name]["ports"]:
            host, container = re.fullmatch(r"\$\{\w+:-(\d+)\}:(\d+)", mapping).groups()
            assert "-" not in host and container in ("8000", "8001"), mapping  # HTTP, gRPC
    ports = published()
    assert ports == {"api": {8000, 8020}, "api-gpu": {8010, 8030}}


def test_scaled_cpu_replicas_and_the_gpu_service_never_share_a_host_port() -> None:
    """`NINSERVE_HOST_PORTS=8000-8002 docker compose --profile gpu up --scale api=3`, as documented."""
    ports = published({"NINSERVE_HOST_PORTS": "8000-8002", "NINSERVE_GRPC_HOST_PORTS": "8020-8022"})
    assert len(ports["api"]) == 6 and ports["api-gpu"]
    assert not ports["api"] & ports["api-gpu"]


def test_podman_compose_publishes_one_port_per_container_port() -> None:
    """podman-compose --dry-run up: the `podman run` it would issue. podman refuses a host range
    on one container port ("port ranges have different lengths"), which broke `podman-compose up`."""
    podman_compose = tool("podman-compose", "apt-get install podman-compose")
    result = run(podman_compose, "--dry-run", "--file", str(COMPOSE), "up", "-d", "api", "redis")
    assert result.returncode == 0, result.stdout + result.stderr
    (api,) = [line for line in result.stdout.splitlines() if "com.docker.compose.service=api " in line]
    assert re.findall(r" -p (\S+)(?= )", api) == ["8000:8000", "8020:8001"]
