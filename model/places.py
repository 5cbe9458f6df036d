"""Where training and export write: never over files that git tracks unless asked.

    ninserve train  ...                 -> runs/<name>/checkpoint.pt (untracked, .gitignore)
    ninserve export --checkpoint C      -> <repository>/<model>/<next version>/model.onnx
    ... --out model/artifacts/x.onnx    -> refused unless --overwrite-tracked (what `make artifacts` passes)

A 1-epoch run once replaced model/training/checkpoint.pt and export replaced the shipped
artifact, so the server then served a mismatched fp32/int8 pair under one version, silently.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

from model.errors import DataError

RUNS = Path("runs")
REPOSITORY = Path("repository")  # export's default repository, untracked (.gitignore)
OVERWRITE_FLAG = "--overwrite-tracked"
_VERSION = re.compile(r"[1-9][0-9]{0,17}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def run_name() -> str:
    """A new run's default name: the UTC time it started."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def latest_run(root: Path = RUNS) -> Path | None:
    """The most recently changed run under `root` (what `--resume` continues without a name)."""
    runs = [p for p in root.glob("*/checkpoint.pt")] if root.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime).parent if runs else None


def tracked(path: Path) -> list[str]:
    """Files git tracks at `path` (a file, or the files under a folder); [] outside a checkout
    or without git."""
    target = path.resolve()
    folder = target if target.is_dir() else target.parent
    while not folder.exists():
        folder = folder.parent
    try:
        listed = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "-z", "--full-name", "--", str(target)],
            capture_output=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    return [name for name in listed.stdout.decode(errors="replace").split("\0") if name]


def refuse_tracked(path: Path, overwrite: bool, what: str) -> None:
    """DataError when writing `path` would replace files git tracks and `overwrite` was not asked."""
    if overwrite:
        return
    files = tracked(path)
    if files:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise DataError(
            f"{what} {path} would replace files that git tracks ({shown}); write elsewhere, or pass "
            f"{OVERWRITE_FLAG} to replace them"
        )


def model_name(text: str) -> str:
    """`text` as a repository model name (letters, digits, `_`, `-`, `.`), or DataError."""
    if not _NAME.fullmatch(text) or ".." in text:
        raise DataError(
            f"model name {text!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return text


def next_version(model_dir: Path) -> int:
    """One more than the highest version folder of a repository model (1 for a new model)."""
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]
        if model_dir.is_dir()
        else []
    )
    return max(versions, default=0) + 1
