"""Helpers for the deployment tests: where the repository is, and how to find a lint tool.

The tools (hadolint, kubernetes-validate, check-jsonschema, docker-compose, podman) come from the
`dev` extra or scripts/ci-deps.sh; a test whose tool is missing skips and says how to get it.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str, how: str) -> str:
    """Path of a command, preferring the running venv's bin/; skips the test when it is absent."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({how})")
    return found


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; output is kept for the assertion message."""
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def load_script(relative: str) -> ModuleType:
    """Import a stand-alone script of the repository (not a package module) by its path."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module
