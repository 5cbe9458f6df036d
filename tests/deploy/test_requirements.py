"""deploy/docker/requirements.py: the install list the image build derives from pyproject.toml."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import ROOT, load_script

PYPROJECT = ROOT / "pyproject.toml"
requirements = load_script("deploy/docker/requirements.py").requirements


def names(reqs: list[str]) -> set[str]:
    return {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip() for r in reqs}


def test_cpu_image_gets_onnxruntime_and_no_torch() -> None:
    got = names(requirements(PYPROJECT, "cpu"))
    assert {"onnxruntime", "fastapi", "uvicorn"} <= got
    assert not got & {"torch", "onnxruntime-gpu"}


def test_gpu_image_takes_cuda_from_the_base_not_from_wheels() -> None:
    reqs = requirements(PYPROJECT, "gpu", without_extras=True)
    gpu = [r for r in reqs if r.startswith("onnxruntime-gpu")]
    assert gpu and "[" not in gpu[0]
    assert "torch" not in names(reqs)
    assert any(r.startswith("uvicorn[standard]") for r in reqs)  # core deps keep their extras


def test_unknown_extra_is_an_error() -> None:
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        requirements(PYPROJECT, "nope")
