"""requirements/*.txt (scripts/lock.py, `make lock`): current with pyproject.toml, complete, hashed,
one ONNX Runtime for every consumer, CPU and GPU runtimes never mixed, and reproducible: made
again at the recorded cutoff, byte for byte the same."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import ROOT, load_script

lock = load_script("scripts/lock.py")
LOCKS = ROOT / "requirements"
HASHED = ("cpu.txt", "gpu.txt", "dev.txt", "ci.txt", "build.txt", "uv.txt", "torch.txt")
# The environments each lock is installed in: the CPU image and `make serve` (3.11; the slim and
# Debian bookworm bases), the GPU image (Ubuntu 24.04: 3.12), CI (3.11).
LINUX_311 = default_environment() | {"python_version": "3.11", "python_full_version": "3.11.4"}
LINUX_311 |= {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"}
LINUX_312 = LINUX_311 | {"python_version": "3.12", "python_full_version": "3.12.3"}


def pinned(name: str, env: dict[str, str]) -> dict[str, str]:
    """{package: version} that requirements/<name> installs in `env`."""
    text = (LOCKS / name).read_text()
    found = {}
    for line in re.findall(r"^[A-Za-z0-9][^\n]*?(?= \\$|$)", text, re.M):
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            (spec,) = req.specifier
            found[canonicalize_name(req.name)] = spec.version
    return found


def test_every_lock_matches_pyproject() -> None:
    locks = sorted(LOCKS.glob("*.txt"))
    assert {p.name for p in locks} == set(HASHED)
    problems = [p for p in map(lock.stale, locks) if p]
    assert not problems, f"{problems}: run `make lock` and commit requirements/"


def test_a_dependency_change_makes_the_locks_stale(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    shutil.copy(ROOT / "pyproject.toml", pyproject)
    assert lock.stale(LOCKS / "cpu.txt", pyproject) is None
    pyproject.write_text(pyproject.read_text() + "\n# comments and layout do not matter\n")
    assert lock.stale(LOCKS / "cpu.txt", pyproject) is None
    text = pyproject.read_text().replace('    "pytest>=8",', '    "pytest>=8",\n    "hypothesis>=6",')
    pyproject.write_text(text)
    assert "other dependencies" in (lock.stale(LOCKS / "dev.txt", pyproject) or "")
    assert "missing" in (lock.stale(tmp_path / "none.txt", pyproject) or "")


def test_check_command_fails_on_a_stale_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "cpu.txt"
    stale.write_text(re.sub(r"sha256: \w+", "sha256: " + "0" * 64, (LOCKS / "cpu.txt").read_text()))
    assert lock.main(["check", str(LOCKS / "cpu.txt")]) == 0
    assert lock.main(["check", str(stale)]) == 1
    assert "make lock" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "extras", "without_extras", "envs"),
    [
        ("cpu.txt", ["cpu"], False, [LINUX_311, LINUX_312]),
        ("gpu.txt", ["gpu"], False, [LINUX_311, LINUX_312]),
        ("dev.txt", ["cpu", "train", "dev"], False, [LINUX_311]),
    ],
)
def test_lock_satisfies_what_pyproject_asks(
    name: str, extras: list[str], without_extras: bool, envs: list[dict[str, str]]
) -> None:
    for env in envs:
        pins = pinned(name, env) | pinned("torch.txt", env)
        for line in lock.requirements(extras, without_extras=without_extras):
            req = Requirement(line)
            key = canonicalize_name(req.name)
            assert key in pins, f"{name} lacks {req.name} (python {env['python_version']})"
            assert req.specifier.contains(pins[key], prereleases=True), f"{name}: {key}=={pins[key]} vs {req}"


def test_every_package_is_hashed() -> None:
    for name in HASHED:
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (LOCKS / name).read_text().split("\n", 4)[4])
        unhashed = [b.split()[0] for b in blocks if b.strip() and "--hash=sha256:" not in b]
        assert not unhashed, f"{name}: no hash for {unhashed}"


def test_cpu_and_gpu_runtimes_never_mix_and_ci_never_gets_cuda_torch() -> None:
    cpu, gpu, dev = (pinned(n, LINUX_311) for n in ("cpu.txt", "gpu.txt", "dev.txt"))
    assert "onnxruntime" in cpu and "onnxruntime-gpu" not in cpu
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu
    # The GPU image's CUDA, cuBLAS and cuDNN are locked wheels (onnxruntime-gpu[cuda,cudnn])...
    assert {"nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cudnn-cu13"} <= gpu.keys()
    assert not any(n.startswith("nvidia-") for n in cpu)  # ...which the CPU image never gets
    assert not any("torch" in pins for pins in (cpu, gpu, dev))
    assert not any(n == "triton" or n.startswith(("nvidia-", "cuda-")) for n in dev)  # CUDA torch deps
    (torch,) = pinned("torch.txt", LINUX_311).items()
    assert torch[0] == "torch" and torch[1].endswith("+cpu")  # never PyPI's CUDA build


def test_images_and_ci_run_the_same_versions() -> None:
    cpu, gpu, dev = (pinned(n, LINUX_311) for n in ("cpu.txt", "gpu.txt", "dev.txt"))
    assert cpu["onnxruntime"] == gpu["onnxruntime-gpu"] == dev["onnxruntime"]
    shared = (cpu.keys() & gpu.keys()) - {"onnxruntime"}
    assert shared and all(cpu[n] == gpu[n] == dev[n] for n in shared)
    ci = pinned("ci.txt", LINUX_311)
    assert "kubernetes-validate" in ci
    assert all(ci[n] == dev[n] for n in ci.keys() & dev.keys())  # installed into the same venv


def test_installs_use_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes" in makefile and "-r requirements/cpu.txt" in makefile
    assert "-r requirements/dev.txt" in makefile and "-r requirements/torch.txt" in makefile
    assert re.search(r"^lock:", makefile, re.M) and "scripts/lock.py" in makefile
    assert '--require-hashes -r "$ROOT/requirements/ci.txt"' in (ROOT / "scripts/ci-deps.sh").read_text()


def test_every_lock_records_one_cutoff() -> None:
    cutoffs = {lock.CUTOFF.search((LOCKS / n).read_text()).group(1) for n in HASHED}
    assert cutoffs == {lock.recorded_cutoff()} and len(cutoffs) == 1
    (cutoff,) = cutoffs
    assert lock.parse_cutoff(cutoff) == cutoff  # the canonical form make lock writes
    assert lock.parse_cutoff("2026-11-23T09:30:00+01:00") == "2026-11-23T08:30:00Z"
    with pytest.raises(SystemExit, match="time zone"):
        lock.parse_cutoff("2026-11-23T08:30:00")


def test_build_backend_and_pip_are_locked_at_dev_versions() -> None:
    build, dev = pinned("build.txt", LINUX_311), pinned("dev.txt", LINUX_311)
    assert {"pip", "setuptools", "wheel"} <= build.keys()
    assert all(build[n] == dev[n] for n in build.keys() & dev.keys())  # one venv holds both
    for line in lock.build_requires():
        req = Requirement(line)
        assert req.specifier.contains(build[canonicalize_name(req.name)]), line
    assert pinned("uv.txt", LINUX_311) == {"uv": lock.UV_PIN.split("==")[1]}


def test_reproduce_reports_each_moved_pin(tmp_path: Path) -> None:
    """`make lock-check` (scripts/lock.py reproduce) re-resolves against the live index, so CI runs
    it as a report; what it reports is checked here without the index."""
    committed = (LOCKS / "dev.txt").read_text()
    same = tmp_path / "same.txt"
    same.write_text(committed)
    assert lock.differences(LOCKS / "dev.txt", same) == []
    version = pinned("dev.txt", LINUX_311)["filelock"]
    moved = tmp_path / "moved.txt"
    moved.write_text(committed.replace(f"filelock=={version} ", "filelock==99.0 ", 1))
    assert lock.differences(LOCKS / "dev.txt", moved) == [f"filelock {version} -> 99.0"]
    rehashed = tmp_path / "rehashed.txt"
    rehashed.write_text(re.sub(r"sha256:\w+", "sha256:" + "0" * 64, committed, count=1))
    assert lock.differences(LOCKS / "dev.txt", rehashed) == ["same pins, other bytes (hashes or comments)"]


def test_lock_check_is_reported_in_ci_but_never_gates() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(
        r"^lock-check:.*\n(\t.*\n)*\t\$\(BIN\)/python scripts/lock.py reproduce$", makefile, re.M
    )
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^make lock-check \|\| echo ", ci, re.M)
