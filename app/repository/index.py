"""Triton's repository index: every model and version known, its state and why.

The registry records each state change here (LOADING, READY, UNLOADING, UNAVAILABLE with its
reason) and hands over each scan's skipped entries, which are logged once and listed until they
are fixed. Entries of versions and models gone from the repository are pruned, so a server that
lives through months of deploys does not list every version it ever saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

from app.repository.layout import Scan, Skipped

logger = logging.getLogger("ninserve")

State = Literal["LOADING", "READY", "UNLOADING", "UNAVAILABLE"]  # Triton's index states
Key = tuple[str, str | None]  # (model, version); version None: the model as a whole


def printable(text: str | None) -> str:
    """A folder name fit for one log line: control characters escaped (a newline in a name could
    forge a line of its own)."""
    if text is None:
        return ""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str | None
    state: State
    reason: str = ""


def order(version: str) -> tuple[int, int, str]:
    """Numeric versions in number order, named ones (one-file repositories) after them."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


class Index:
    def __init__(self) -> None:
        self._states: dict[str, dict[str | None, IndexEntry]] = {}  # name -> version -> entry
        self._skipped: dict[Key, Skipped] = {}

    def set(self, name: str, version: str | None, state: State, reason: str = "") -> None:
        versions = self._states.setdefault(name, {})
        versions[version] = IndexEntry(name, version, state, reason)
        if version is not None:  # the model is in the repository after all
            versions.pop(None, None)

    def get(self, name: str, version: str | None) -> IndexEntry | None:
        return self._states.get(name, {}).get(version)

    def of(self, name: str) -> list[IndexEntry]:
        return list(self._states.get(name, {}).values())

    def knows(self, name: str) -> bool:
        return name in self._states

    def drop(self, name: str, version: str | None) -> None:
        self._states.get(name, {}).pop(version, None)

    def take_scan(self, scan: Scan) -> None:
        """This pass's skipped entries; each new one (or new reason) is logged once."""
        skipped = {(k.model, k.version): k for k in scan.skipped}
        for key, entry in skipped.items():
            if self._skipped.get(key) != entry:
                logger.warning(
                    "repository: skipped %s%s: %s",
                    printable(entry.model) or "(repository)",
                    f" version {printable(entry.version)}" if entry.version else "",
                    printable(entry.reason),
                )
        self._skipped = skipped

    def prune(
        self,
        scan: Scan,
        present: AbstractSet[str],
        busy: Callable[[str], bool],
        loaded: Callable[[str], AbstractSet[str]],
    ) -> None:
        """Entries of versions and models gone from the repository, and not serving, go. `busy`:
        the model serves or loads (kept); `loaded`: its serving versions."""
        for name in list(self._states):
            if name not in present and not busy(name):
                del self._states[name]
                continue
            source = scan.models.get(name)
            if source is None or any(v.label is None for v in source.versions.values()):
                continue
            keep = {v.label for v in source.versions.values()} | loaded(name)
            versions = self._states[name]
            for version in [v for v in versions if v is not None and v not in keep]:
                if versions[version].state != "LOADING":
                    del versions[version]

    def listing(self) -> list[IndexEntry]:
        """Every model and version known: serving, loading, failed (with why), and skipped entries."""
        entries: dict[Key, IndexEntry] = {
            (name, version): entry
            for name, versions in self._states.items()
            for version, entry in versions.items()
        }
        for key, skipped in self._skipped.items():
            entries.setdefault(key, IndexEntry(skipped.model, skipped.version, "UNAVAILABLE", skipped.reason))
        return sorted(entries.values(), key=lambda e: (e.name, order(e.version or "")))
