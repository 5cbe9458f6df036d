"""Which versions of a model are served, and which precision variant of each.

Triton's version policies, in its config's JSON spelling (docs/repository.md):

    {"latest": {"num_versions": 2}}   the N highest versions (the default: N = 1)
    {"specific": {"versions": [1, 3]}}
    {"all": {}}

Precision `auto` serves the int8 variant on the CPU (within 0.1 pt of fp32, faster through the
server: docs/repository.md) and fp32 on CUDA, where the int8 QDQ graph gains nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Precision = Literal["auto", "fp32", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "int8")


class PolicyError(ValueError):
    """A config.json whose version policy or precision cannot be read."""


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    kind: Literal["latest", "specific", "all"] = "latest"
    num_versions: int = 1  # latest
    versions: tuple[int, ...] = ()  # specific

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve out of those present, ascending."""
        present = sorted(set(available))
        if self.kind == "all":
            return present
        if self.kind == "specific":
            return [v for v in present if v in self.versions]
        return present[-self.num_versions :]

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        if self.kind == "specific":
            return "specific " + ", ".join(map(str, self.versions))
        return "all"


LATEST_ONE = VersionPolicy()


def parse_policy(value: Any) -> VersionPolicy:
    """Triton's `version_policy` object -> VersionPolicy; PolicyError says what is wrong."""
    if value is None:
        return LATEST_ONE
    if not isinstance(value, dict) or len(value) != 1:
        raise PolicyError('version_policy must be one of {"latest": ...}, {"specific": ...}, {"all": {}}')
    ((kind, body),) = value.items()
    body = body if isinstance(body, dict) else {}
    if kind == "all":
        return VersionPolicy("all")
    if kind == "latest":
        n = body.get("num_versions", 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PolicyError(f"version_policy.latest.num_versions must be a positive integer, got {n!r}")
        return VersionPolicy("latest", num_versions=n)
    if kind == "specific":
        versions = body.get("versions")
        if (
            not isinstance(versions, list)
            or not versions
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in versions)
        ):
            raise PolicyError(
                "version_policy.specific.versions must be a non-empty list of positive integers"
            )
        return VersionPolicy("specific", versions=tuple(sorted(set(versions))))
    raise PolicyError(f"unknown version_policy {kind!r}: use latest, specific or all")


def pick_precision(wanted: str, device: str, available: Iterable[str]) -> str:
    """The variant to load: `auto` is int8 on the CPU when there is one, else fp32; a pinned
    precision the version lacks falls back to what it has (the caller logs it)."""
    have = set(available)
    if wanted == "auto":
        wanted = "int8" if device == "cpu" else "fp32"
    if wanted in have:
        return wanted
    return "fp32" if "fp32" in have else sorted(have)[0]
