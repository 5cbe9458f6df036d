"""Every package install in the Makefile, the Dockerfile, scripts/, .ci/ and bench/ is
hash-checked (a lock under requirements/ with --require-hashes, or npm ci from a lock), installs
ninserve itself from the checkout without fetching a build backend, or says why not in a
`# unhashed:` comment right above it; and the versions bench/ pins are the lock's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT
from tests.deploy.test_lock import LINUX_312, pinned

# A command that fetches or installs packages (pip, uv pip, npm), in shell, make or Dockerfile.
INSTALL = re.compile(
    r"(?:\bpip3?\b|-m pip\b|\bquiet_pip\b|\buv pip\b|\bnpm\b)[^\n#]*?\b(install|download|sync|ci|i)\b"
    r"|\$\(PIP_(?:LOCKED|SELF)\)"  # the Makefile's install commands, defined with their flags
)
JUSTIFIED = "# unhashed:"


def sources() -> list[Path]:
    found = [ROOT / "Makefile", ROOT / "Dockerfile", *sorted((ROOT / ".ci").iterdir())]
    found += sorted(p for p in (ROOT / "scripts").iterdir() if p.suffix in {".sh", ""} and p.is_file())
    found += sorted((ROOT / "bench").glob("*.sh"))
    return found


def commands(path: Path) -> list[tuple[int, str, str]]:
    """(line number, the command with its continuation lines, the comment lines just above it)."""
    lines = path.read_text().splitlines()
    found = []
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        if "echo" in code or not INSTALL.search(code):
            continue
        command, j = code, i
        while command.rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
            command = command.rstrip()[:-1] + " " + lines[j].split("#", 1)[0]
        above, k = [], i - 1
        while k >= 0 and lines[k].lstrip().startswith("#"):
            above.insert(0, lines[k].strip())
            k -= 1
        found.append((i + 1, command, " ".join(above)))
    return found


def verdict(command: str, comments: str) -> str | None:
    """Why the install is acceptable, or None."""
    if "--require-hashes" in command or re.search(r"\$\(PIP_LOCKED\)", command):
        return "hash-checked"
    if re.search(r"\bnpm ci\b", command):
        return "npm ci (package-lock.json integrity)"
    if (
        "--no-deps" in command
        and "--no-build-isolation" in command
        and re.search(r"(?:\s|^)\.(?:\s|$)", command)
    ):
        return "ninserve itself, built with the locked backend"
    if re.search(r"\$\(PIP_SELF\)", command):
        return "ninserve itself, built with the locked backend"
    if JUSTIFIED in comments:
        return "justified"
    return None


def test_the_scan_finds_the_installs_it_must_judge() -> None:
    """The scanner itself: it sees the Makefile's, the images', CI's and the bench's installs."""
    seen = {path.name: len(commands(path)) for path in sources()}
    assert seen["Makefile"] >= 5 and seen["Dockerfile"] >= 6
    assert seen["ci-deps.sh"] >= 2 and seen["setup_peers.sh"] >= 2 and seen["gpu.sh"] >= 2
    assert verdict("pip install fastapi", "") is None
    assert verdict("pip install --upgrade pip", "# a comment") is None
    assert verdict("npm install left-pad", "") is None
    assert verdict("pip install --no-deps .", "") is None  # would fetch setuptools unhashed


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_install_is_hash_checked_or_justified(path: Path) -> None:
    unjudged = [
        f"{path.name}:{n}: {c.strip()}" for n, c, above in commands(path) if verdict(c, above) is None
    ]
    assert not unjudged, "install without hashes or a `# unhashed:` reason:\n" + "\n".join(unjudged)


def test_makefile_defines_its_install_commands_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^PIP_LOCKED = \S+ install --require-hashes", makefile, re.M)
    assert re.search(r"^PIP_SELF = \S+ install --no-deps --no-build-isolation --editable \.$", makefile, re.M)
    assert "install --upgrade pip" not in makefile and "uv==" not in makefile
    assert "-r requirements/build.txt" in makefile and "-r requirements/uv.txt" in makefile


def test_bench_pins_are_the_locks() -> None:
    """setup_peers.sh reads the shared stack from the lock; gpu.sh's pins equal the GPU lock's."""
    peers = (ROOT / "bench" / "setup_peers.sh").read_text()
    assert "onnxruntime==" not in peers.split("lock_pin()")[0] and "lock_pin onnxruntime" in peers
    gpu_lock = pinned("gpu.txt", LINUX_312)
    script = (ROOT / "bench" / "gpu.sh").read_text()
    pins = dict(re.findall(r"\b([a-z][a-z0-9-]*)==([0-9][^\s\")]*)", script))
    assert pins and pins["onnxruntime-gpu"] == gpu_lock["onnxruntime-gpu"]
    assert {name: version for name, version in pins.items() if gpu_lock.get(name) != version} == {}
