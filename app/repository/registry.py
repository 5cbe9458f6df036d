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
drain (their requests finish) and close, returning their memory (app/core/served.py). A
version that fails to load, breaks the contract or does not fit the memory left for models stays
out, with its reason in the index, and whatever served before keeps serving. Loads and unloads of
one model take turns (an asyncio lock per model, never held by the request path); requests never
wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from app.config import Settings
from app.core.batcher import Batcher
from app.core.echo import shown
from app.core.engine import Engine, ModelLoadError, cuda_problem
from app.core.errors import ModelNotFound, ModelUnloaded, NotReady
from app.core.memory import LOAD_SLACK, MemoryPlan, MiB, model_cost
from app.core.served import Served
from app.layout_rules import name_problem
from app.repository.artifact import inspect_artifact
from app.repository.index import Index, IndexEntry, State, order, printable
from app.repository.layout import ModelSource, Scan, VersionSource
from app.repository.loading import LoadControl, load_version, variant

logger = logging.getLogger("ninserve")

Scanner = Callable[[], Scan]


class Registry:
    def __init__(self, settings: Settings, plan: MemoryPlan, scanner: Scanner, default_name: str) -> None:
        self.settings = settings
        self.plan = plan
        self.default_name = default_name
        self._scanner = scanner
        self._versions: dict[str, dict[str, Served]] = {}  # name -> version -> serving
        self._latest: dict[str, Served] = {}  # name -> its highest loaded version
        self._index = Index()
        self._fingerprints: dict[tuple[str, str], tuple[tuple[str, int, int], ...]] = {}  # loaded
        self._failed: dict[tuple[str, str], tuple[tuple[str, int, int], ...]] = {}  # not retried
        self._unloaded: set[str] = set()  # over the API: polling leaves them until their files change
        self._loads: dict[str, LoadControl] = {}  # the load in progress per model (unload cancels it)
        self._locks: dict[str, asyncio.Lock] = {}  # only while someone holds or waits for one
        self._lock_users: dict[str, int] = {}
        self._load_gate = asyncio.Lock()  # one session built at a time: its RSS growth is its own
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
        entries = self._index.of(name)
        if any(e.state == "LOADING" for e in entries):
            return NotReady(f"not ready: model {shown(name)} is loading")
        if name in self._unloaded or any(e.state == "UNLOADING" for e in entries):
            why = f"model {shown(name)} was unloaded; POST /v2/repository/models/{name}/load loads it again"
            if name == self.default_name:  # readiness follows the default model: 503, no Retry-After
                return ModelUnloaded(f"not ready: {why}")
            return ModelNotFound(why, served=self.served_names())
        # Why it failed names files and library internals: the index and the log say it, not
        # answers to requests (and /readyz, which is open without a key).
        if name == self.default_name and entries:
            if all(e.reason.startswith("unloaded") for e in entries):
                return NotReady(f"not ready: model {shown(name)} is not loaded ({entries[0].reason})")
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
        self._index.take_scan(scan)
        names = sorted(scan.models, key=lambda n: (n != self.default_name, n))
        if self.default_name not in scan.models:
            why = next((k.reason for k in scan.skipped if k.model == self.default_name), None)
            self._index.set(self.default_name, None, "UNAVAILABLE", why or "not in the repository")
        try:
            for name in names:
                await self._guarded_load(scan.models[name])
        finally:
            self.started = True

    async def stop(self) -> None:
        for control in self._loads.values():
            control.cancel("the server is stopping")
        for served in self.loaded():
            await served.batcher.stop()
        self._versions.clear()
        self._latest.clear()

    def default_error(self) -> str | None:
        """Why the default model serves nothing, once the first load has been tried."""
        if self._latest.get(self.default_name) is not None:
            return None
        reasons = [e.reason for e in self._index.of(self.default_name) if e.reason]
        return reasons[0] if reasons else "not loaded"

    async def load(self, name: str) -> list[str]:
        """Re-read model `name`'s folder and load what its version policy selects (Triton's
        `load`); returns why versions failed (none: all serve). ModelNotFound when the
        repository lacks it."""
        if (problem := name_problem(name)) is not None:
            raise ModelNotFound(f"no model {shown(name)}: {problem}")
        scan = await asyncio.to_thread(self._scanner)
        self._index.take_scan(scan)
        source = scan.models.get(name)
        if source is None:
            why = "; ".join(k.reason for k in scan.skipped if k.model == name)
            raise ModelNotFound(
                f"no model {shown(name)} in the repository" + (f": {why}" if why else ""),
                models=sorted(scan.models),
            )
        self._unloaded.discard(name)
        return await self._load_model(source)

    async def unload(self, name: str) -> list[IndexEntry]:
        """Stop serving `name`: new requests get 404 at once, those running finish, memory returns.
        A load of it in progress is stopped first (its warm-up terminated)."""
        if (problem := name_problem(name)) is not None:
            raise ModelNotFound(f"no model {shown(name)}: {problem}")
        if not self._index.knows(name) and name not in self._versions and name not in self._loads:
            raise ModelNotFound(f"unknown model {shown(name)}", served=self.served_names())
        self._unloaded.add(name)
        if (control := self._loads.get(name)) is not None:
            control.cancel("the load was cancelled: the model was unloaded while it loaded")
        await self._unload(name, "unloaded")
        return [e for e in self.index() if e.name == name]

    async def _unload(self, name: str, reason: str) -> None:
        async with self._turn(name):
            versions = self._versions.pop(name, None)
            self._latest.pop(name, None)
            if not versions:
                return
            for served in versions.values():
                self._index.set(name, served.version, "UNLOADING")
            await asyncio.gather(*(self._retire(served) for served in versions.values()))
            for served in versions.values():
                self._index.set(name, served.version, "UNAVAILABLE", reason)
            logger.info("unloaded model %s (versions %s)", name, ", ".join(versions))

    async def poll(self) -> None:
        """One pass of NINSERVE_REPOSITORY_POLL_S: load new and changed models, unload removed ones."""
        scan = await asyncio.to_thread(self._scanner)
        self._index.take_scan(scan)
        for _, source in sorted(scan.models.items()):
            if self._changed(source):
                self._unloaded.discard(source.name)
                await self._guarded_load(source)
        # A folder skipped this pass (a config.json being edited) keeps what it serves.
        present = set(scan.models) | {skipped.model for skipped in scan.skipped}
        for name in sorted(set(self._versions) - present):
            logger.info("model %s left the repository: unloading it", printable(name))
            await self._unload(name, "unloaded: its folder left the repository")
        # A model gone from the repository loads again if it comes back, even with the same files;
        # one unloaded over the API keeps its marks, so polling does not undo that until they change.
        for marks in (self._fingerprints, self._failed):
            for key in [key for key in marks if key[0] not in present]:
                del marks[key]
        self._unloaded &= present
        self._index.prune(
            scan,
            present,
            busy=lambda n: n in self._versions or n in self._loads or n == self.default_name,
            loaded=lambda n: set(self._versions.get(n, {})),
        )

    async def _guarded_load(self, source: ModelSource) -> list[str]:
        """_load_model, where nothing one model's files do can stop the others (or the poller)."""
        try:
            return await self._load_model(source)
        except Exception as exc:  # noqa: BLE001 - the index shows it; the other models go on
            logger.exception("model %s: load failed", printable(source.name))
            self._index.set(source.name, None, "UNAVAILABLE", f"load failed: {type(exc).__name__}")
            return [f"{type(exc).__name__}"]

    def _changed(self, source: ModelSource) -> bool:
        """New or replaced files among the selected versions, a selected version not serving (the
        newest removed: roll back to what the policy now selects), or loaded versions no longer
        selected. A version that failed is tried again only when its files change; a model
        unloaded over the API only when its files change."""
        name = source.name
        loaded = self._versions.get(name, {})
        wanted: dict[str, VersionSource] = {self._label(name, v): v for v in source.selected()}
        prints = {label: v.fingerprint() for label, v in wanted.items()}
        if name in self._unloaded:
            return any(self._fingerprints.get((name, label)) != fp for label, fp in prints.items())
        failed = False
        for label, fp in prints.items():
            if label in loaded:
                if self._fingerprints.get((name, label)) != fp:
                    return True
            elif self._failed.get((name, label)) == fp:
                failed = True
            else:
                return True
        return not failed and bool(set(loaded) - set(wanted))

    def _state(self, name: str, version: str) -> State | None:
        entry = self._index.get(name, version)
        return entry.state if entry is not None else None

    def _label(self, name: str, version: VersionSource) -> str:
        if version.label is not None:
            return version.label
        # A one-file repository's version is named by its artifact: the loaded one, if any.
        loaded = self._versions.get(name, {})
        return next(iter(loaded), f"#{version.number}")

    async def _load_model(self, source: ModelSource) -> list[str]:
        """Load what `source` selects beside what serves, swap, retire; returns the failures."""
        async with self._turn(source.name):
            old = self._versions.get(source.name, {})
            keep: dict[str, Served] = {}
            new: list[Served] = []
            failures: list[str] = []
            for version in source.selected():
                if source.name in self._unloaded:  # unloaded meanwhile: load nothing more of it
                    break
                label = self._label(source.name, version)
                key = (source.name, label)
                current = old.get(label)
                if current is not None and self._fingerprints.get(key) == version.fingerprint():
                    keep[label] = current
                    continue
                served = await self._load_version(source, version, label)
                if served is None:
                    failed = self._index.get(source.name, label)
                    failures.append(f"version {label}: {failed.reason if failed else 'not loaded'}")
                    continue
                new.append(served)
            versions = {**keep, **{s.version: s for s in new}}
            if failures:  # what served before keeps serving where its successor did not load
                versions = {**{v: s for v, s in old.items() if v not in versions}, **versions}
            ordered = dict(sorted(versions.items(), key=lambda item: order(item[0])))
            retired = [s for v, s in old.items() if v not in ordered or ordered[v] is not s]
            # The swap: one assignment each, no await in between.
            if ordered:
                self._versions[source.name] = ordered
                self._latest[source.name] = ordered[next(reversed(ordered))]
            else:
                self._versions.pop(source.name, None)
                self._latest.pop(source.name, None)
            for served in new:
                self._index.set(source.name, served.version, "READY")
            for label in ordered:  # files replaced in place by ones that failed
                entry = self._index.get(source.name, label)
                if entry is not None and entry.state == "UNAVAILABLE":
                    why = f"serving the files loaded before; the new ones failed: {entry.reason}"
                    self._index.set(source.name, label, "READY", why)
            if new or retired:
                logger.info(
                    "model %s serves versions %s", printable(source.name), ", ".join(ordered) or "none"
                )
            for served in retired:
                if served.version not in ordered:
                    self._index.set(source.name, served.version, "UNLOADING")
            await asyncio.gather(*(self._retire(s) for s in retired))
            for served in retired:
                if served.version not in ordered:
                    why = "unloaded: no longer selected by the version policy"
                    self._index.set(source.name, served.version, "UNAVAILABLE", why)
            return failures

    async def _load_version(self, source: ModelSource, version: VersionSource, label: str) -> Served | None:
        """Check the file, price it, reserve, load and warm up under a watchdog and a deadline,
        then charge what it measurably holds (unloading it when that is more than reserved)."""
        s = self.settings
        name = source.name
        precision = variant(source, version, s, self._device)
        path = version.files[precision]
        try:  # broken files say so before any price is quoted
            facts = await asyncio.to_thread(
                inspect_artifact, path, max_bytes=self.plan.models, max_resolution=s.max_resolution
            )
        except OSError as exc:
            self._fail(name, version, label, f"cannot read the artifact: {exc.strerror or exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - whatever the file does, it fails only itself
            self._fail(name, version, label, str(exc) or type(exc).__name__)
            return None
        cost = model_cost(facts.total_bytes, s.max_batch_size, own_arena=s.ort_arena in ("shrink", "keep"))
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
        self._index.set(name, label, "LOADING")
        # The warm-up's runs are the ORT runs' share; beyond that and the reservation, it stops.
        control = LoadControl(limit_bytes=0, warmup_deadline_s=s.model_warmup_timeout_s)
        try:
            async with self._load_gate:
                # RSS is the whole process's: requests decoding meanwhile can make a load look
                # larger than it is. A load over its memory is tried once more before it fails;
                # one that really takes more fails twice (and costs what it took, twice, once).
                for attempt in (1, 2):
                    control = LoadControl(
                        limit_bytes=cost + self.plan.run_bytes + LOAD_SLACK,
                        warmup_deadline_s=s.model_warmup_timeout_s,
                    )
                    self._loads[name] = control
                    if name in self._unloaded and attempt > 1:
                        control.cancel("the load was cancelled: the model was unloaded while it loaded")
                    try:
                        served = await self._attempt(source, version, precision, cost, control)
                        break
                    except MemoryError as exc:
                        if attempt == 2 or control.reason not in (None, str(exc)):
                            raise
                        logger.warning(
                            "model %s version %s: %s; trying once more", printable(name), label, exc
                        )
            for hook in self.on_load:
                hook(served.engine, served.batcher)
            await served.batcher.start()
        except BaseException as exc:
            self._used -= cost
            if not isinstance(exc, Exception):  # cancelled (the server is stopping): tried again later
                control.cancel("the load was cancelled")
                self._index.set(name, label, "UNAVAILABLE", "the load was cancelled")
                raise
            why = (
                str(exc) if isinstance(exc, MemoryError | ModelLoadError) else f"{type(exc).__name__}: {exc}"
            )
            self._fail(name, version, label, why)
            return None
        finally:
            if self._loads.get(name) is control:
                del self._loads[name]
        if served.held > cost:  # charge what it takes, when more than the estimate
            self._used += served.held - cost
            served.memory = served.held
        if served.version != label:  # one-file repositories: the artifact names the version
            self._index.drop(name, label)
        self._fingerprints[(name, served.version)] = version.fingerprint()
        self._failed.pop((name, served.version), None)
        logger.info(
            "loaded model %s version %s (%s, %s, ~%.0f MB)",
            printable(name),
            served.version,
            served.precision,
            served.engine.provider,
            served.memory / MiB,
        )
        return served

    async def _attempt(
        self, source: ModelSource, version: VersionSource, precision: str, cost: int, control: LoadControl
    ) -> Served:
        """One try: MemoryError when the watchdog stopped it or it holds more than reserved."""
        control.check()  # unloaded while it waited for its turn
        try:
            served = await load_version(
                source,
                version,
                self.settings,
                precision=precision,
                run_pixels=self.plan.run_pixels,
                run_gate=self._run_gate,
                cost=cost,
                control=control,
            )
        except ModelLoadError as exc:
            if control.over_memory:
                raise MemoryError(str(exc)) from None
            raise
        if served.held > cost + LOAD_SLACK:
            raise MemoryError(
                f"memory: loading and warm-up took ~{served.held / MiB:.0f} MB, more than the "
                f"~{cost / MiB:.0f} MB reserved from its file; unloaded"
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
        logger.error(
            "model %s version %s not loaded: %s", printable(name), printable(label), printable(reason)
        )
        self._index.set(name, label, "UNAVAILABLE", reason)
        self._failed[(name, label)] = version.fingerprint()  # not retried until it changes

    @asynccontextmanager
    async def _turn(self, name: str) -> AsyncIterator[None]:
        """Loads and unloads of one model take turns; the lock exists only while it is used."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._lock_users[name] = self._lock_users.get(name, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[name] -= 1
            if not self._lock_users[name]:
                del self._lock_users[name], self._locks[name]

    def index(self) -> list[IndexEntry]:
        """Every model and version known: serving, loading, failed (with why), and skipped entries."""
        return self._index.listing()
