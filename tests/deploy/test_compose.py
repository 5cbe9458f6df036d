"""docker-compose.yml: valid against the Compose specification and docker-compose itself, CPU
API by default, a `gpu` profile with an NVIDIA reservation, Redis as the shared result store."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
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


def podman_compose() -> tuple[str, tuple[int, ...]]:
    """The podman-compose CI installs (requirements/ci.txt: the current release) and its version."""
    path = tool("podman-compose", "pip install -r requirements/ci.txt, scripts/ci-deps.sh")
    found = re.search(r"podman-compose version:? (\d+)\.(\d+)", run(path, "--version").stdout)
    assert found, "podman-compose --version printed no version"
    return path, tuple(map(int, found.groups()))


def test_podman_compose_publishes_one_port_per_container_port() -> None:
    """podman-compose --dry-run up: the `podman create` (1.1 and later, logged with --verbose) or
    `podman run` (1.0) it would issue. podman refuses a host range on one container port ("port
    ranges have different lengths"), which broke `podman-compose up`."""
    path, version = podman_compose()
    verbose = ["--verbose"] if version >= (1, 1) else []
    project = f"ninserve-dry-{os.getpid()}"
    args = ("--project-name", project, "--dry-run", "--file", str(COMPOSE), "up", "-d", "api", "redis")
    try:
        result = run(path, *verbose, *args)
    finally:  # a dry run still creates the project's network
        run(tool("podman", "apt-get install podman"), "network", "rm", "--force", f"{project}_default")
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [
        line for line in (result.stdout + result.stderr).splitlines()
        if re.search(r"podman (create|run) ", line) and "com.docker.compose.service=api " in line
    ]  # fmt: skip
    (api,) = commands
    assert re.findall(r" -p (\S+)(?= )", api) == ["8000:8000", "8020:8001"]
    assert "alias=redis" not in api and re.search(r"--net(work)?[= ]\S*default", api)


PROBE_IMAGE = "localhost/ninserve-compose-probe:busybox"
PROBE_COMPOSE = """\
services:
  redis:
    image: {image}
    command: ["/bin/busybox", "httpd", "-f", "-p", "6379", "-h", "/www"]
    ulimits: {{nofile: 4096, nproc: 4096}}
  api:
    image: {image}
    depends_on: [redis]
    ulimits: {{nofile: 4096, nproc: 4096}}
    command:
      - /bin/busybox
      - sh
      - -c
      - for i in $$(/bin/busybox seq 50); do /bin/busybox wget -q -O - http://redis:6379/ping && exit 0;
        /bin/busybox sleep 0.2; done; exit 1
"""


@pytest.fixture(scope="module")
def probe_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A two-file image (busybox and a page to fetch), imported without a registry."""
    podman, busybox = (tool(n, "scripts/ci-deps.sh: podman, busybox-static") for n in ("podman", "busybox"))
    if os.geteuid() != 0:
        pytest.skip("rootful podman: run as root (scripts/ci-deps.sh installs no rootless helpers)")
    if run(podman, "image", "exists", PROBE_IMAGE).returncode == 0:
        return PROBE_IMAGE
    root = tmp_path_factory.mktemp("probe-root")
    (root / "bin").mkdir()
    (root / "www").mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    (root / "www" / "ping").write_text("PONG\n")
    tarball = root.parent / "probe.tar"
    with tarfile.open(tarball, "w") as tar:
        for path in ("bin", "bin/busybox", "www", "www/ping"):
            tar.add(root / path, arcname=path, recursive=False)
    result = run(podman, "import", "--quiet", str(tarball), PROBE_IMAGE)
    assert result.returncode == 0, result.stderr
    return PROBE_IMAGE


def test_podman_compose_services_reach_each_other_by_name(probe_image: str, tmp_path: Path) -> None:
    """What failed as ci-deps.sh installed podman: on the compose network `redis` did not resolve
    ("Name or service not known") without the DNS plugin. The api service fetches from the redis
    service by its name, as the real ones do (redis://redis:6379/0)."""
    path, _ = podman_compose()
    podman = tool("podman", "apt-get install podman, scripts/ci-deps.sh")
    project = f"ninserve-probe-{os.getpid()}"
    compose = tmp_path / "compose.yml"
    compose.write_text(PROBE_COMPOSE.format(image=probe_image))
    base = [path, "--project-name", project, "--file", str(compose)]
    try:
        up = run(*base, "up", "-d", timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        (client,) = [
            name for name in run(podman, "ps", "-a", "--format", "{{.Names}}").stdout.split()
            if name.startswith(project) and "api" in name
        ]  # fmt: skip
        waited = run(podman, "wait", client, timeout=60)
        logs = run(podman, "logs", client)
        assert waited.stdout.strip() == "0", logs.stdout + logs.stderr
        assert logs.stdout.strip() == "PONG"
        # The network podman-compose made resolves names: the DNS plugin is there (CNI: dnsname).
        dns = run(podman, "network", "inspect", "--format", "{{.DNSEnabled}}", f"{project}_default")
        assert dns.stdout.strip() == "true", dns.stdout + dns.stderr
    finally:
        run(*base, "down", "--timeout", "1", timeout=180)
