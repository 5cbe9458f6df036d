"""What a model repository holds: Triton's layout, read and checked without loading anything.

    DIR/<model-name>/config.json          optional: labels, version_policy, precision
    DIR/<model-name>/<version>/model.onnx  versions are positive integers
    DIR/<model-name>/<version>/model-int8.onnx   optional int8 variant (`ninserve quantize`)

`Scanner(DIR)()` returns the models it can serve and, for every entry that looks like a model but
cannot be served (a bad name, a folder that is not a version, a version without an ONNX file, an
unreadable config.json, a symlink leaving the repository), the reason; the registry logs those
and shows them in the repository index. A folder that does not look like a model (no config.json,
no numbered subfolder, no .onnx file: a dataset left beside the models) is passed over silently,
and remembered by its (inode, mtime) so later passes cost one stat for it. Symlinks are followed
only where they stay inside the repository. The scanner runs in a thread, never on the event loop.
Without NINSERVE_MODEL_REPOSITORY the bundled artifacts form a one-model repository
(`builtin`), and NINSERVE_MODEL_PATH a one-model repository of its file (`single_file`); both
keep the artifact's own `model_version` as the version name, as before the repository existed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.layout_rules import MODEL_FILES, VERSION, name_problem
from app.repository.config_file import CONFIG_FILE, ConfigCache, ConfigError
from app.repository.policy import LATEST_ONE, VersionPolicy

logger = logging.getLogger("ninserve")

# A pass over 10,000 folders that are not models takes ~30 ms of Python in the scan's thread; the
# event loop would wait up to the 5 ms switch interval for the GIL each time it wants it (~0.1 ms
# of scanning between hand-overs instead).
YIELD_EVERY = 32
OUTSIDE = "a symlink leading out of the repository: not followed"


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


def inside(path: str, root: str) -> bool:
    """`path` (resolved) is `root` or below it: symlinks may not lead out of the repository."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass(frozen=True, slots=True)
class _Child:
    name: str
    is_dir: bool
    path: str


def _children(folder: str) -> list[_Child]:
    with os.scandir(folder) as it:
        return sorted(
            (_Child(e.name, _is_dir(e), e.path) for e in it),
            key=lambda c: c.name,
        )


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _looks_like_model(children: list[_Child]) -> bool:
    return any(
        c.name == CONFIG_FILE or c.name.endswith(".onnx") or (c.is_dir and c.name.isdigit()) for c in children
    )


class Scanner:
    """Reads DIR/<model>/[config.json, <version>/model.onnx]; never raises for a bad entry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._configs = ConfigCache()
        self._not_models: dict[str, tuple[int, int]] = {}  # folder name -> (inode, mtime_ns)
        self._lock = threading.Lock()  # a poll and an API load may scan at once, in two threads

    def __call__(self) -> Scan:
        with self._lock:
            return self._scan()

    def _scan(self) -> Scan:
        out = Scan()
        root = os.path.realpath(self.root)
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            why = f"cannot read the repository {self.root}: {exc.strerror or exc}"
            out.skipped.append(Skipped("", None, why))
            return out
        present: set[str] = set()
        configs: set[Path] = set()
        for i, entry in enumerate(entries):
            if not i % YIELD_EVERY:  # hand the GIL to the event loop now and then, not every 5 ms
                time.sleep(0)
            present.add(entry.name)
            try:
                self._entry(entry, root, out, configs)
            except Exception as exc:  # noqa: BLE001 - one model's files never stop the others
                out.skipped.append(Skipped(entry.name, None, f"cannot read it: {type(exc).__name__}: {exc}"))
        for name in [n for n in self._not_models if n not in present]:
            del self._not_models[name]
        self._configs.forget_except(configs)
        return out

    def _entry(self, entry: os.DirEntry[str], root: str, out: Scan, configs: set[Path]) -> None:
        if not _is_dir(entry):
            return
        if entry.is_symlink() and not inside(os.path.realpath(entry.path), root):
            if name_problem(entry.name) is None:
                out.skipped.append(Skipped(entry.name, None, OUTSIDE))
            return
        st = entry.stat()
        stamp = (st.st_ino, st.st_mtime_ns)
        if self._not_models.get(entry.name) == stamp:
            return
        try:
            children = _children(entry.path)
        except OSError as exc:
            out.skipped.append(Skipped(entry.name, None, f"cannot read the folder: {exc.strerror or exc}"))
            return
        if not _looks_like_model(children):
            self._not_models[entry.name] = stamp
            return
        self._not_models.pop(entry.name, None)
        if (problem := name_problem(entry.name)) is not None:
            out.skipped.append(Skipped(entry.name, None, problem))
            return
        configs.add(Path(entry.path) / CONFIG_FILE)
        model = self._model(entry.name, Path(entry.path), children, root, out.skipped)
        if model is not None:
            out.models[model.name] = model

    def _model(
        self, name: str, folder: Path, children: list[_Child], root: str, skipped: list[Skipped]
    ) -> ModelSource | None:
        config_path = folder / CONFIG_FILE
        try:
            if os.path.lexists(config_path) and not inside(os.path.realpath(config_path), root):
                raise ConfigError(OUTSIDE)
            config = self._configs.read(config_path, name)
        except ConfigError as exc:
            skipped.append(Skipped(name, None, f"{CONFIG_FILE}: {exc}"))
            return None
        versions: dict[int, VersionSource] = {}
        for child in children:
            if not child.is_dir:
                continue
            if not VERSION.fullmatch(child.name):
                if child.name.isdigit():  # 0, 007: numbered but not a version
                    skipped.append(Skipped(name, child.name, "not a version: versions are positive integers"))
                continue
            source = self._version(name, child, root, skipped)
            if source is not None:
                versions[source.number] = source
        if not versions:
            skipped.append(Skipped(name, None, "no versions: expected <version>/model.onnx"))
            return None
        model = ModelSource(name, versions, **config)
        if not model.selected():
            why = f"version_policy {model.policy.describe()} selects none of {sorted(versions)}"
            skipped.append(Skipped(name, None, why))
            return None
        return model

    def _version(self, name: str, child: _Child, root: str, skipped: list[Skipped]) -> VersionSource | None:
        real = os.path.realpath(child.path)
        if not inside(real, root):
            skipped.append(Skipped(name, child.name, OUTSIDE))
            return None
        folder = Path(child.path)
        files: dict[str, Path] = {}
        for precision, filename in MODEL_FILES.items():
            path = folder / filename
            if path.is_file() and inside(os.path.realpath(path), root):
                files[precision] = path
        if not files:
            try:
                found = ", ".join(c.name for c in _children(child.path)[:4]) or "nothing"
            except OSError:
                found = "nothing readable"
            wanted = " or ".join(MODEL_FILES.values())
            skipped.append(Skipped(name, child.name, f"no {wanted} (found {found})"))
            return None
        return VersionSource(int(child.name), files, label=child.name)


def scan(root: Path) -> Scan:
    """One pass without the caches (tests, and the check at start)."""
    return Scanner(root)()
