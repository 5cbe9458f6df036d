"""What a model repository's paths look like: model names, version folders, artifact file names.

A leaf shared by app/config.py, which refuses a repository path that holds no model before the
server starts, and app/repository/layout.py, which reads the repository itself (config.json,
symlinks, the version policy): the names are checked the same way in both.
"""

from __future__ import annotations

import re
from pathlib import Path

MODEL_FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}  # precision -> file in a version folder
# A URL path segment and a Prometheus label value as is: no '/', no '..', no leading dot.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
VERSION = re.compile(r"[1-9][0-9]{0,8}")
EXPECTED_LAYOUT = "expected <model>/<version>/model.onnx, e.g. pets/1/model.onnx"
LISTED = 1000  # entries looked at per folder by the check at start: a huge folder costs no more


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a model (None when it can)."""
    if not NAME.fullmatch(name) or ".." in name:
        return (
            "a model name is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit, "
            "without '..'"
        )
    return None


def repository_problem(root: Path) -> str | None:
    """Why `root` cannot be served as a repository (None when it holds a model): checked before
    the server starts, so a wrong path fails in one line naming it and the layout. A model here is
    a well-named folder with a numbered version holding an artifact; what else can stop one from
    serving (its config.json, a symlink out) is the repository's to report when it loads."""
    if any(_holds_a_version(folder) for folder in _listing(root) if name_problem(folder.name) is None):
        return None
    if any((root / file).is_file() for file in MODEL_FILES.values()):
        hint = f"; {root} is a version folder: point to the folder two levels up"
    elif any(VERSION.fullmatch(p.name) and p.is_dir() for p in _listing(root)):
        hint = f"; {root} looks like one model's folder: point to its parent"
    else:
        hint = ""
    return f"model repository {root} holds no model ({EXPECTED_LAYOUT}){hint}"


def _holds_a_version(folder: Path) -> bool:
    return folder.is_dir() and any(
        VERSION.fullmatch(version.name) and any((version / f).is_file() for f in MODEL_FILES.values())
        for version in _listing(folder)
    )


def _listing(root: Path) -> list[Path]:
    try:
        return sorted(root.iterdir())[:LISTED]
    except OSError:
        return []
