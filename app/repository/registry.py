"""The models this process serves: what the request path reads, and how it changes.

    served = registry.resolve("nin-cifar10")        # the highest loaded version; a dict lookup
    served = registry.resolve("pets", "2")          # one version
    with served.use(): ...                          # the request finishes on this version
    await registry.load("pets")                     # (re)read its folder, load what its policy selects
    await registry.unload("pets")
    registry.index()                                # Triton's repository index, with reasons

A load works beside what is serving: each new version is loaded and warmed up (app/repository/
loading.py), then the model's whole set of versions is replaced in one assignment on the event
loop, so a request sees the old set or the new one, never a mix. Replaced and unloaded versions
drain (their requests finish) and close, returning their memory (app/repository/served.py). A
version that fails to load, breaks the contract or does not fit the memory left for models stays
out, with its reason in the index, and whatever served before keeps serving. Loads and unloads of
one model take turns (an asyncio lock per model, never held by the request path); requests never
wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.config import Settings
from app.core.batcher import Batcher
from app.core.echo import shown
from app.core.engine import Engine, cuda_problem
from app.core.errors import ModelNotFound, NotReady
from app.core.memory import MemoryPlan, MiB, model_cost
from app.repository.layout import ModelSource, Scan, Skipped, VersionSource, name_problem
from app.repository.loading import load_version, variant
from app.repository.served import Served

logger = logging.getLogger("ninserve")

State = Literal["LOADING", "READY", "UNLOADING", "UNAVAILABLE"]  # Triton's index states
Scanner = Callable[[], Scan]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str | None
    state: State
    reason: str = ""


class Registry:
    def __init__(self, settings: Settings, plan: MemoryPlan, scanner: Scanner, default_name: str) -> None:
        self.settings = settings
        self.plan = plan
        self.default_name = default_name
        self._scanner = scanner
        self._versions: dict[str, dict[str, Served]] = {}  # name -> version -> serving
        self._latest: dict[str, Served] = {}  # name -> its highest loaded version
        self._states: dict[tuple[str, str | None], IndexEntry] = {}
        self._fingerprints: dict[tuple[str, str], tuple[tuple[str, int, int], ...]] = {}
        self._skipped: list[Skipped] = []
        self._sources: dict[str, ModelSource] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._used = 0  # bytes charged by loaded versions
        self._run_gate = threading.BoundedSemaphore(settings.concurrent_batches)
        self._device = "cpu"
        self.started = False  # the first load has been tried
        # Called with each new version's engine and its not yet started batcher (app/http/metrics.py).
        self.on_load: list[Callable[[Engine, Batcher], None]] = []
        # Called with each version that stops serving for good (not one replaced in place).
        self.on_unload: list[Callable[[Served], None]] = []

    # --- the request path ---------------------------------------------------------------

    def resolve(self, name: str | None = None, version: str | None = None) -> Served:
        """The version a request runs on; ModelNotFound (404) or NotReady (503) naming why not."""
        served = (
            self._latest.get(name or self.default_name)
            if version is None
            else self._versions.get(name or self.default_name, {}).get(version)
        )
        if served is None:
            raise self._missing(name or self.default_name, version)
        return served

    def _missing(self, name: str, version: str | None) -> Exception:
        if not self.started:
            return NotReady("not ready: the models are loading")
        serving = ", ".join(f"{n} ({', '.join(v)})" for n, v in sorted(self._versions.items())) or "none"
        versions = self._versions.get(name)
        if versions:
            return ModelNotFound(
                f"model {shown(name)} has no version {shown(version)} loaded; "
                f"it serves {', '.join(versions)}",
                served=self.served_names(),
            )
        entries = [e for (n, _), e in self._states.items() if n == name]
        if any(e.state == "LOADING" for e in entries):
            return NotReady(f"not ready: model {shown(name)} is loading")
        # Why it failed names files and library internals: the index and the log say it, not
        # answers to requests (and /readyz, which is open without a key).
        if name == self.default_name and entries:
            if all(e.reason.startswith("unloaded") for e in entries):
                return NotReady(f"not ready: model {shown(name)} is not loaded (unloaded)")
            why = "the server log and POST /v2/repository/index say why"
            return NotReady(f"not ready: the model failed to load ({why})")
        known = " (not loaded; POST /v2/repository/index says why)" if entries else ""
        return ModelNotFound(
            f"unknown model {shown(name)}{known}; this server serves {serving}", served=self.served_names()
        )

    def served_names(self) -> dict[str, list[str]]:
        return {name: list(versions) for name, versions in sorted(self._versions.items())}

    def loaded(self) -> list[Served]:
        """Every serving version, by model name and version number."""
        return [s for _, versions in sorted(self._versions.items()) for s in versions.values()]

    def versions_of(self, name: str) -> list[str]:
        return list(self._versions.get(name, {}))

    @property
    def used_bytes(self) -> int:
        return self._used

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every model the repository holds, the default one first; never raises."""
        s = self.settings
        self._device = "cpu" if s.device == "cpu" or (s.device == "auto" and cuda_problem()) else "cuda"
        scan = await asyncio.to_thread(self._scanner)
        self._take_scan(scan)
        names = sorted(scan.models, key=lambda n: (n != self.default_name, n))
        if self.default_name not in scan.models:
            why = next((k.reason for k in scan.skipped if k.model == self.default_name), None)
            self._set(self.default_name, None, "UNAVAILABLE", why or "not in the repository")
        for name in names:
            await self._load_model(scan.models[name])
        self.started = True

    async def stop(self) -> None:
        for served in self.loaded():
            await served.batcher.stop()
        self._versions.clear()
        self._latest.clear()

    def default_error(self) -> str | None:
        """Why the default model serves nothing, once the first load has been tried."""
        if self._latest.get(self.default_name) is not None:
            return None
        reasons = [e.reason for (n, _), e in self._states.items() if n == self.default_name and e.reason]
        return reasons[0] if reasons else "not loaded"

    async def load(self, name: str) -> list[str]:
        """Re-read model `name`'s folder and load what its version policy selects (Triton's
        `load`); returns why versions failed (none: all serve). ModelNotFound when the
        repository lacks it."""
        if (problem := name_problem(name)) is not None:
            raise ModelNotFound(f"no model {shown(name)}: {problem}")
        scan = await asyncio.to_thread(self._scanner)
        self._take_scan(scan)
        source = scan.models.get(name)
        if source is None:
            why = "; ".join(k.reason for k in scan.skipped if k.model == name)
            raise ModelNotFound(
                f"no model {shown(name)} in the repository" + (f": {why}" if why else ""),
                models=sorted(scan.models),
            )
        return await self._load_model(source)

    async def unload(self, name: str) -> list[IndexEntry]:
        """Stop serving `name`: new requests get 404 at once, those running finish, memory returns."""
        if (problem := name_problem(name)) is not None:
            raise ModelNotFound(f"no model {shown(name)}: {problem}")
        async with self._lock(name):
            versions = self._versions.pop(name, None)
            self._latest.pop(name, None)
            if versions is None:
                if not any(n == name for n, _ in self._states):
                    raise ModelNotFound(f"unknown model {shown(name)}", served=self.served_names())
                return [e for e in self.index() if e.name == name]
            for served in versions.values():
                self._set(name, served.version, "UNLOADING")
            await asyncio.gather(*(self._retire(served) for served in versions.values()))
            for served in versions.values():
                self._set(name, served.version, "UNAVAILABLE", "unloaded")
            logger.info("unloaded model %s (versions %s)", name, ", ".join(versions))
        return [e for e in self.index() if e.name == name]

    async def poll(self) -> None:
        """One pass of NINSERVE_REPOSITORY_POLL_S: load new and changed models, unload removed ones."""
        scan = await asyncio.to_thread(self._scanner)
        self._take_scan(scan)
        for _, source in sorted(scan.models.items()):
            if self._changed(source):
                await self._load_model(source)
        # A folder skipped this pass (a config.json being edited) keeps what it serves.
        present = set(scan.models) | {skipped.model for skipped in scan.skipped}
        for name in sorted(set(self._versions) - present):
            logger.info("model %s left the repository: unloading it", name)
            await self.unload(name)
        # A model gone from the repository loads again if it comes back, even with the same files;
        # one unloaded over the API keeps its marks, so polling does not undo that until they change.
        for key in [key for key in self._fingerprints if key[0] not in present]:
            del self._fingerprints[key]

    def _changed(self, source: ModelSource) -> bool:
        """New or replaced files among the selected versions, or loaded versions no longer selected.
        A version that failed is tried again only when its files change, not on every pass."""
        wanted = {self._label(source.name, v): v for v in source.selected()}
        marks = self._fingerprints
        if any(marks.get((source.name, label)) != v.fingerprint() for label, v in wanted.items()):
            return True
        failed = any(self._state(source.name, label) == "UNAVAILABLE" for label in wanted)
        return not failed and bool(set(self._versions.get(source.name, {})) - set(wanted))

    def _state(self, name: str, version: str) -> State | None:
        entry = self._states.get((name, version))
        return entry.state if entry is not None else None

    def _label(self, name: str, version: VersionSource) -> str:
        if version.label is not None:
            return version.label
        # A one-file repository's version is named by its artifact: the loaded one, if any.
        loaded = self._versions.get(name, {})
        return next(iter(loaded), f"#{version.number}")

    async def _load_model(self, source: ModelSource) -> list[str]:
        """Load what `source` selects beside what serves, swap, retire; returns the failures."""
        async with self._lock(source.name):
            self._sources[source.name] = source
            old = self._versions.get(source.name, {})
            keep: dict[str, Served] = {}
            new: list[Served] = []
            failures: list[str] = []
            for version in source.selected():
                label = self._label(source.name, version)
                key = (source.name, label)
                current = old.get(label)
                if current is not None and self._fingerprints.get(key) == version.fingerprint():
                    keep[label] = current
                    continue
                served = await self._load_version(source, version, label)
                if served is None:
                    failures.append(f"version {label}: {self._states[(source.name, label)].reason}")
                    continue
                new.append(served)
            versions = {**keep, **{s.version: s for s in new}}
            if failures:  # what served before keeps serving where its successor did not load
                versions = {**{v: s for v, s in old.items() if v not in versions}, **versions}
            ordered = dict(sorted(versions.items(), key=lambda item: _order(item[0])))
            retired = [s for v, s in old.items() if v not in ordered or ordered[v] is not s]
            # The swap: one assignment each, no await in between.
            if ordered:
                self._versions[source.name] = ordered
                self._latest[source.name] = ordered[next(reversed(ordered))]
            else:
                self._versions.pop(source.name, None)
                self._latest.pop(source.name, None)
            for served in new:
                self._set(source.name, served.version, "READY")
            for version in ordered:  # files replaced in place by ones that failed
                entry = self._states.get((source.name, version))
                if entry is not None and entry.state == "UNAVAILABLE":
                    why = f"serving the files loaded before; the new ones failed: {entry.reason}"
                    self._set(source.name, version, "READY", why)
            if new or retired:
                logger.info("model %s serves versions %s", source.name, ", ".join(ordered) or "none")
            for served in retired:
                if served.version not in ordered:
                    self._set(source.name, served.version, "UNLOADING")
            await asyncio.gather(*(self._retire(s) for s in retired))
            for served in retired:
                if served.version not in ordered:
                    why = "unloaded: no longer selected by the version policy"
                    self._set(source.name, served.version, "UNAVAILABLE", why)
            return failures

    async def _load_version(self, source: ModelSource, version: VersionSource, label: str) -> Served | None:
        s = self.settings
        name = source.name
        precision = variant(source, version, s, self._device)
        try:
            size = version.files[precision].stat().st_size
        except OSError as exc:
            self._fail(name, version, label, f"cannot read the artifact: {exc.strerror or exc}")
            return None
        cost = model_cost(size, s.max_batch_size)
        if self._used + cost > self.plan.models:
            self._fail(
                name,
                version,
                label,
                f"memory: this version needs ~{cost / MiB:.0f} MB and loaded versions hold "
                f"{self._used / MiB:.0f} of the {self.plan.models / MiB:.0f} MB for models "
                "(NINSERVE_MODEL_MEMORY_MB); unload a model or raise it",
            )
            return None
        self._used += cost  # charged while it loads, so two loads cannot both take the last room
        self._set(name, label, "LOADING")
        try:
            served = await load_version(
                source,
                version,
                s,
                precision=precision,
                run_pixels=self.plan.run_pixels,
                run_gate=self._run_gate,
                cost=cost,
            )
            for hook in self.on_load:
                hook(served.engine, served.batcher)
            await served.batcher.start()
        except BaseException as exc:
            self._used -= cost
            if not isinstance(exc, Exception):  # cancelled (the server is stopping): tried again later
                self._set(name, label, "UNAVAILABLE", "the load was cancelled")
                raise
            self._fail(name, version, label, f"{type(exc).__name__}: {exc}")
            return None
        if served.version != label:  # one-file repositories: the artifact names the version
            self._states.pop((name, label), None)
        self._fingerprints[(name, served.version)] = version.fingerprint()
        logger.info(
            "loaded model %s version %s (%s, %s, ~%.0f MB)",
            name,
            served.version,
            served.precision,
            served.engine.provider,
            cost / MiB,
        )
        return served

    async def _retire(self, served: Served) -> None:
        await served.retire(self.settings.request_timeout_s + 5.0)
        self._used -= served.memory
        if served.version in self._versions.get(served.name, {}):
            return  # replaced in place: its successor serves (and counts) under the same version
        for hook in self.on_unload:
            hook(served)

    def _fail(self, name: str, version: VersionSource, label: str, reason: str) -> None:
        logger.error("model %s version %s not loaded: %s", name, label, reason)
        self._set(name, label, "UNAVAILABLE", reason)
        self._fingerprints[(name, label)] = version.fingerprint()  # not retried until it changes

    def _set(self, name: str, version: str | None, state: State, reason: str = "") -> None:
        self._states[(name, version)] = IndexEntry(name, version, state, reason)
        if version is not None:  # the model is in the repository after all
            self._states.pop((name, None), None)

    def _take_scan(self, scan: Scan) -> None:
        for skipped in scan.skipped:
            if skipped not in self._skipped:
                logger.warning(
                    "repository: skipped %s%s: %s",
                    skipped.model or "(repository)",
                    f" version {skipped.version}" if skipped.version else "",
                    skipped.reason,
                )
        self._skipped = list(scan.skipped)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def index(self) -> list[IndexEntry]:
        """Every model and version known: serving, loading, failed (with why), and skipped entries."""
        entries = dict(self._states)
        for skipped in self._skipped:
            entries.setdefault(
                (skipped.model, skipped.version),
                IndexEntry(skipped.model, skipped.version, "UNAVAILABLE", skipped.reason),
            )
        return sorted(entries.values(), key=lambda e: (e.name, _order(e.version or "")))


def _order(version: str) -> tuple[int, int, str]:
    """Numeric versions in number order, named ones (one-file repositories) after them."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)
