"""Process facts from /proc, and the loopback-only network namespace the benchmark runs in.

A server is a process tree (uvicorn workers, LitServe's inference process, TorchServe's JVM and
Python worker, Ray's raylet and actors, Triton and its Python stub), so memory and CPU are
summed over the tree. RSS double-counts pages the processes share; PSS splits them, so both are
reported and PSS is the fair "what this server costs" number.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
NETNS_ENV = "BENCH_IN_NETNS"


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (which may contain spaces)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process
    (a pid alone can be reused by an unrelated process once the first one exits)."""
    fields = _stat(pid)
    return fields[19] if fields else None


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_pids(root: int) -> list[int]:
    """`root` and every live descendant."""
    tree, out, todo = children_map(), [], [root]
    while todo:
        pid = todo.pop()
        if (PROC / str(pid)).exists():
            out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


@dataclass(frozen=True)
class TreeUsage:
    processes: int
    rss_mb: float
    pss_mb: float
    cpu_s: float  # user + system time, the live processes' own (not their reaped children's)


def usage(root: int) -> TreeUsage:
    rss = pss = cpu = 0.0
    pids = tree_pids(root)
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        rss += int(fields[21]) * PAGE  # field 24 (rss, pages) counted from field 3
        cpu += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        try:
            for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
    return TreeUsage(len(pids), rss / 2**20, pss / 2**20, cpu)


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux PR_SET_CHILD_SUBREAPER), so a server whose
    launcher exits first (TorchServe's, Ray's) leaves its children to us to reap, not zombies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_orphans() -> None:
    """Collect the exit status of every adopted child that has ended."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def load_average() -> float:
    return os.getloadavg()[0]


def in_private_netns() -> bool:
    return os.environ.get(NETNS_ENV) == "1"


def reexec_in_netns(argv: list[str]) -> None:
    """Replace this process with itself inside a new network namespace that has only loopback,
    so no server (Ray binds every interface) is reachable from outside and no traffic leaves.
    Returns only if that is impossible (not root, no `unshare`); the caller decides what then."""
    if in_private_netns() or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        return
    os.environ[NETNS_ENV] = "1"
    inner = f"ip link set lo up && exec {shlex.join([sys.executable, *argv])}"
    os.execvp("unshare", ["unshare", "-n", "--", "sh", "-c", inner])
