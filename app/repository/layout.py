"""What a model repository holds: Triton's layout, read and checked without loading anything.

    DIR/<model-name>/config.json          optional: labels, version_policy, precision
    DIR/<model-name>/<version>/model.onnx  versions are positive integers
    DIR/<model-name>/<version>/model-int8.onnx   optional int8 variant (`ninserve quantize`)

`scan(DIR)` returns the models it can serve and, for every entry it cannot (a bad name, a folder
that is not a version, a version without an ONNX file, a model without versions, an unreadable
config.json), the reason; the registry logs those and shows them in the repository index.
Without NINSERVE_MODEL_REPOSITORY the bundled artifacts form a one-model repository
(`builtin`), and NINSERVE_MODEL_PATH a one-model repository of its file (`single_file`); both
keep the artifact's own `model_version` as the version name, as before the repository existed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.repository.policy import LATEST_ONE, PRECISIONS, PolicyError, VersionPolicy, parse_policy

MODEL_FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}  # precision -> file in a version folder
CONFIG_FILE = "config.json"
CONFIG_KEYS = frozenset({"name", "labels", "version_policy", "precision"})
# A URL path segment and a Prometheus label value as is: no '/', no '..', no leading dot.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
VERSION = re.compile(r"[1-9][0-9]{0,8}")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a model (None when it can)."""
    if not NAME.fullmatch(name) or ".." in name:
        return (
            "a model name is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit, "
            "without '..'"
        )
    return None


@dataclass(frozen=True, slots=True)
class VersionSource:
    number: int  # orders versions; 1 in a one-file repository
    files: dict[str, Path]  # precision -> artifact
    label: str | None = None  # the version's name; None: the artifact's model_version (one-file)

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Changes when an artifact is replaced (size, mtime): the poller reloads the version."""
        marks = []
        for path in self.files.values():
            try:
                stat = path.stat()
            except OSError:
                continue
            marks.append((str(path), stat.st_size, stat.st_mtime_ns))
        return tuple(sorted(marks))


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str
    versions: dict[int, VersionSource]
    policy: VersionPolicy = LATEST_ONE
    precision: str | None = None  # config.json's pin; None: NINSERVE_PRECISION
    labels: tuple[str, ...] | None = None  # config.json's; None: the artifact's `classes`

    def selected(self) -> list[VersionSource]:
        return [self.versions[v] for v in self.policy.select(self.versions)]


@dataclass(frozen=True, slots=True)
class Skipped:
    model: str
    version: str | None
    reason: str


@dataclass(slots=True)
class Scan:
    models: dict[str, ModelSource] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


def builtin(name: str, fp32: Path, int8: Path) -> Scan:
    files = {p: path for p, path in (("fp32", fp32), ("int8", int8)) if path.is_file()}
    return Scan({name: ModelSource(name, {1: VersionSource(1, files)})})


def single_file(name: str | None, path: Path) -> Scan:
    """NINSERVE_MODEL_PATH: one model, one version, named after its file unless `name` is given."""
    model = name or path.stem
    return Scan({model: ModelSource(model, {1: VersionSource(1, {"fp32": path})})})


def scan(root: Path) -> Scan:
    """Read DIR/<model>/[config.json, <version>/model.onnx]; never raises for a bad entry."""
    out = Scan()
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        out.skipped.append(Skipped("", None, f"cannot read the repository {root}: {exc.strerror or exc}"))
        return out
    for entry in entries:
        if not entry.is_dir():
            continue
        if (problem := name_problem(entry.name)) is not None:
            out.skipped.append(Skipped(entry.name, None, problem))
            continue
        model = _scan_model(entry, out.skipped)
        if model is not None:
            out.models[model.name] = model
    return out


def _scan_model(folder: Path, skipped: list[Skipped]) -> ModelSource | None:
    name = folder.name
    try:
        config = _read_config(folder / CONFIG_FILE, name)
    except (OSError, ValueError) as exc:
        skipped.append(Skipped(name, None, f"{CONFIG_FILE}: {exc}"))
        return None
    try:  # unreadable, or removed since the repository was listed (a poll racing a deploy)
        entries = sorted(folder.iterdir())
    except OSError as exc:
        skipped.append(Skipped(name, None, f"cannot read the folder: {exc.strerror or exc}"))
        return None
    versions: dict[int, VersionSource] = {}
    for entry in entries:
        if not entry.is_dir():
            continue
        if not VERSION.fullmatch(entry.name):
            skipped.append(Skipped(name, entry.name, "not a version: versions are positive integers"))
            continue
        files = {p: entry / f for p, f in MODEL_FILES.items() if (entry / f).is_file()}
        if not files:
            found = ", ".join(sorted(p.name for p in _listing(entry))[:4]) or "nothing"
            skipped.append(
                Skipped(name, entry.name, f"no {' or '.join(MODEL_FILES.values())} (found {found})")
            )
            continue
        versions[int(entry.name)] = VersionSource(int(entry.name), files, label=entry.name)
    if not versions:
        skipped.append(Skipped(name, None, "no versions: expected <version>/model.onnx"))
        return None
    model = ModelSource(name, versions, **config)
    if not model.selected():
        why = f"version_policy {model.policy.describe()} selects none of {sorted(versions)}"
        skipped.append(Skipped(name, None, why))
        return None
    return model


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _read_config(path: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object")
    if unknown := sorted(set(raw) - CONFIG_KEYS):
        raise ValueError(f"unknown keys {', '.join(unknown)}; it takes {', '.join(sorted(CONFIG_KEYS))}")
    if "name" in raw and raw["name"] != name:
        raise ValueError(f"name {raw['name']!r} differs from the folder's {name!r}")
    config: dict[str, Any] = {}
    try:
        config["policy"] = parse_policy(raw.get("version_policy"))
    except PolicyError as exc:
        raise ValueError(str(exc)) from None
    if "precision" in raw:
        if raw["precision"] not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {raw['precision']!r}")
        config["precision"] = raw["precision"]
    if "labels" in raw:
        labels = raw["labels"]
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) and x for x in labels)
            or len(set(labels)) != len(labels)
        ):
            raise ValueError("labels must be a non-empty list of unique class names")
        config["labels"] = tuple(labels)
    return config
