"""bench.hostile's model-repository phases: the server serves a repository this process writes
to, polled every second (NINSERVE_REPOSITORY_POLL_S=1), while the 32x32 probe measures what a
cheap request waits.

  churn       the probe alone, then beside 10,000 folders that are not models (a dataset left
              in the repository) with only the poll running; then a version
              of model `churn` added and removed every 0.5 s, and a client calling
              POST /v2/repository/models/nin-cifar10/load in a loop: the probe's p50/p99, the load
              calls' p50, their statuses, and the index's size at the end (stale entries)
  configbomb  model `bomb`'s config.json replaced in turn by `[` x 100,000 and by a 500 MB file
              (sparse) while the load loop runs: the load calls' statuses (a 500 is a failure), the
              probe, and whether the server is still up
  loadbombs   models loaded in turn over the API: a ConstantOfShape of 300 M floats (its shape an
              initializer, then a Constant node), one of 75 M floats whose shape only the run
              shows (a Constant through an Identity), native_size 2048, external data outside the
              folder, a Loop of 10^9 steps: each load's status, reason, time, and the peak RSS
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

from bench.hostile import Connection, Outcome, Server, latency_summary, probe

BUNDLED = Path(__file__).resolve().parents[1] / "model" / "artifacts"


def make_repository(root: Path) -> dict[str, str]:
    """The bundled model as `nin-cifar10` version 1 in `root`; the server's env for it."""
    version = root / "nin-cifar10" / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUNDLED / "nin-cifar10.onnx", version / "model.onnx")
    shutil.copy(BUNDLED / "nin-cifar10-int8.onnx", version / "model-int8.onnx")
    return {"NINSERVE_MODEL_REPOSITORY": str(root), "NINSERVE_REPOSITORY_POLL_S": "1"}


async def _load_loop(port: int, stop: float) -> list[Outcome]:
    conn, out = Connection(port), []
    while time.perf_counter() < stop:
        out.append(await conn.request("POST", "/v2/repository/models/nin-cifar10/load", timeout=60))
    await conn.close()
    return out


def _statuses(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[str(o.status)] = counts.get(str(o.status), 0) + 1
    return counts


async def _index_size(port: int) -> int:
    conn = Connection(port)
    outcome = await conn.request("POST", "/v2/repository/index", timeout=30)
    await conn.close()
    return len(json.loads(outcome.body or b"[]"))


async def phase_churn(server: Server, seconds: float, root: Path) -> dict[str, object]:
    baseline = await probe(server.port, seconds / 2)  # the same poll, before the folders
    for i in range(10_000):
        (root / f"class_{i}").mkdir(exist_ok=True)
    await asyncio.sleep(3)  # the first pass over them
    server.reset_peak()
    quiet = await probe(server.port, seconds / 2)  # the folders and the 1 s poll alone
    stop = time.perf_counter() + seconds

    async def churn() -> int:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            folder = root / "churn" / str(n)
            folder.mkdir(parents=True)
            shutil.copy(BUNDLED / "nin-cifar10-int8.onnx", folder / "model-int8.onnx")
            if n > 1:
                shutil.rmtree(root / "churn" / str(n - 1))
            await asyncio.sleep(0.5)
        return n

    probed, loads, versions = await asyncio.gather(
        probe(server.port, seconds), _load_loop(server.port, stop), churn()
    )
    await asyncio.sleep(2)
    return {
        "probe_baseline": latency_summary(baseline),
        "probe_folders_only": latency_summary(quiet),
        "probe": latency_summary(probed),
        "load_calls": {"statuses": _statuses(loads), **latency_summary(loads)},
        "churned_versions": versions,
        "index_entries_after": await _index_size(server.port),
        "peak_rss_mb": round(server.peak_mb),
    }


async def phase_configbomb(server: Server, seconds: float, root: Path) -> dict[str, object]:
    model = root / "bomb" / "1"
    model.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUNDLED / "nin-cifar10-int8.onnx", model / "model-int8.onnx")
    config = root / "bomb" / "config.json"
    server.reset_peak()
    stop = time.perf_counter() + seconds

    async def bombs() -> int:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            tmp = config.with_suffix(".tmp")
            if n % 2:
                tmp.write_text("[" * 100_000)
            else:
                with open(tmp, "wb") as f:
                    f.truncate(500 * 2**20)  # sparse: costs the disk nothing
            os.replace(tmp, config)
            await asyncio.sleep(1.0)
        return n

    probed, loads, written = await asyncio.gather(
        probe(server.port, seconds), _load_loop(server.port, stop), bombs()
    )
    config.unlink(missing_ok=True)
    alive = server.proc is not None and server.proc.poll() is None
    return {
        "probe": latency_summary(probed),
        "load_calls": {"statuses": _statuses(loads), **latency_summary(loads)},
        "configs_written": written,
        "server_alive": alive,
        "peak_rss_mb": round(server.peak_mb),
    }


def _hostile_models(root: Path) -> list[str]:
    """The load attacks, as models of their own (tests/app/repository/hostile_models.py)."""
    from tests.app.repository import hostile_models

    made = []
    for name, build in (
        ("expand-init", lambda p: hostile_models.expanding(p, 300 * 2**20, from_initializer=True)),
        ("expand-const", lambda p: hostile_models.expanding(p, 300 * 2**20, from_initializer=False)),
        (
            "expand-hidden",
            lambda p: hostile_models.expanding(p, 75 * 2**20, from_initializer=False, hidden=True),
        ),
        ("native2048", lambda p: hostile_models.with_metadata(p, native_size="2048")),
        ("outside", lambda p: hostile_models.external_outside(p, "../../../../etc/hostname")),
        ("loop", hostile_models.endless_loop),
    ):
        folder = root / name / "1"
        folder.mkdir(parents=True, exist_ok=True)
        build(folder / "model.onnx")
        made.append(name)
    return made


async def phase_loadbombs(server: Server, seconds: float, root: Path) -> dict[str, object]:
    """Each hostile model loaded over the API in turn (the server was started without them):
    its status, its reason, how long the load took, and the server's peak RSS around it."""
    staging = root.parent / f"{root.name}-staging"
    names = _hostile_models(staging)
    out: dict[str, object] = {}
    conn = Connection(server.port)
    for name in names:
        shutil.move(str(staging / name), str(root / name))
        server.reset_peak()
        outcome = await conn.request("POST", f"/v2/repository/models/{name}/load", timeout=max(seconds, 90))
        body = json.loads(outcome.body or b"{}") if outcome.status else {}
        out[name] = {
            "status": outcome.status,
            "seconds": round(outcome.seconds, 2),
            "reason": str(body.get("error", body))[:200],
            "peak_rss_mb": round(server.peak_mb),
        }
        print(json.dumps({name: out[name]}), flush=True)  # one line each: a hung load keeps the rest
        await conn.request("POST", f"/v2/repository/models/{name}/unload", timeout=90)
        shutil.rmtree(root / name, ignore_errors=True)
    await conn.close()
    shutil.rmtree(staging, ignore_errors=True)
    return out
