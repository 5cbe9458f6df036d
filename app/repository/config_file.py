"""A model's config.json, read under limits and only when it changes.

A config.json is a handful of keys (labels, version_policy, precision): 64 KB and 8 levels of
nesting hold any real one many times over. Anything larger or deeper is refused before it is
parsed, so a 500 MB file or `[` x 100,000 (which made the JSON parser raise RecursionError, and
stopped the server) costs one stat and one bounded read. The parsed result is kept per path with
the file's (inode, size, mtime): a poll pass re-reads only a config.json that changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from app.core.echo import shown
from app.repository.policy import PRECISIONS, PolicyError, parse_policy

CONFIG_FILE = "config.json"
CONFIG_KEYS = frozenset({"name", "labels", "version_policy", "precision"})
MAX_CONFIG_BYTES = 64 * 1024
MAX_CONFIG_DEPTH = 8  # {"version_policy": {"specific": {"versions": [1]}}} is 4
MAX_LABELS = 100_000

Stamp = tuple[int, int, int]  # inode, size, mtime_ns


class ConfigError(ValueError):
    """A config.json that cannot be used; the message says why (the model is skipped)."""


def nesting_depth(text: bytes) -> int:
    """Deepest [ / { nesting outside strings, without recursion (json.loads recurses per level)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_config(raw_bytes: bytes, name: str) -> dict[str, Any]:
    """config.json's bytes -> ModelSource keyword arguments; ConfigError says what is wrong."""
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES // 1024} KB")
    if nesting_depth(raw_bytes) > MAX_CONFIG_DEPTH:
        raise ConfigError(f"nested deeper than {MAX_CONFIG_DEPTH} levels")
    try:
        raw = json.loads(raw_bytes)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON ({exc.msg}, line {exc.lineno})") from None
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ConfigError(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError("must be a JSON object")
    if unknown := sorted(set(raw) - CONFIG_KEYS):
        listed = ", ".join(shown(k, 32) for k in unknown[:8])
        raise ConfigError(f"unknown keys {listed}; it takes {', '.join(sorted(CONFIG_KEYS))}")
    if "name" in raw and raw["name"] != name:
        raise ConfigError(f"name {shown(raw['name'])} differs from the folder's {shown(name)}")
    config: dict[str, Any] = {}
    try:
        config["policy"] = parse_policy(raw.get("version_policy"))
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    if "precision" in raw:
        if raw["precision"] not in PRECISIONS:
            wanted = ", ".join(PRECISIONS)
            raise ConfigError(f"precision must be one of {wanted}, got {shown(raw['precision'])}")
        config["precision"] = raw["precision"]
    if "labels" in raw:
        labels = raw["labels"]
        if (
            not isinstance(labels, list)
            or not 0 < len(labels) <= MAX_LABELS
            or not all(isinstance(x, str) and x for x in labels)
            or len(set(labels)) != len(labels)
        ):
            raise ConfigError("labels must be a non-empty list of unique class names")
        config["labels"] = tuple(labels)
    return config


class ConfigCache:
    """Parsed config.json files by path, re-read only when (inode, size, mtime) changes."""

    def __init__(self) -> None:
        # A failure is kept as its message: a cached exception raised again on every pass would
        # grow its traceback by the frames of each pass (and keep their listings alive).
        self._seen: dict[Path, tuple[Stamp, dict[str, Any] | str]] = {}

    def read(self, path: Path, name: str) -> dict[str, Any]:
        """{} when there is none; raises ConfigError (also for an unreadable file)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._seen.pop(path, None)
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read it: {exc.strerror or exc}") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._seen.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, self._parse(path, st.st_size, name))
            self._seen[path] = cached
        if isinstance(cached[1], str):
            raise ConfigError(cached[1])
        return cached[1]

    def _parse(self, path: Path, size: int, name: str) -> dict[str, Any] | str:
        if size > MAX_CONFIG_BYTES:
            return f"larger than {MAX_CONFIG_BYTES // 1024} KB ({size} bytes)"
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)  # it may have grown since the stat
            return parse_config(data, name)
        except ConfigError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot read it: {exc.strerror or exc}"

    def forget_except(self, paths: set[Path]) -> None:
        """Drop the entries of config.json files no longer in the repository."""
        for path in [p for p in self._seen if p not in paths]:
            del self._seen[path]
