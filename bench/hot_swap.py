"""A hot swap with the default settings: a repository of the fp32 NiN as `alpha` and the int8 NiN
as `beta`, then `alpha/2` (an fp32 NiN whose last bias differs, so its answers differ) dropped in
while 16 clients classify through `alpha` without pause. Nothing is tuned but polling (1 s).

    .venv/bin/python -m bench.hot_swap [--seconds 20] [--port 18220]

Prints every version's state and memory charge, the statuses and connection errors of all
answers, how many came from each version, and whether every answer's scores are exactly those of
the version it names (one whole version per answer), with the server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.hostile import ROOT, Connection, Server, small_png

ARTIFACTS = ROOT / "model" / "artifacts"


def shifted_fp32(target: Path) -> None:
    """The fp32 NiN with its last bias shifted: a distinct version 2, same size and cost."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(ARTIFACTS / "nin-cifar10.onnx")
    classes = 10
    last = [t for t in model.graph.initializer if list(t.dims) == [classes]][-1]  # the class maps' bias
    values = numpy_helper.to_array(last).copy()
    values += 0.5  # before the last ReLU: every map, and so every score, moves
    last.CopyFrom(numpy_helper.from_array(values, last.name))
    onnx.save(model, target)


async def crowd(port: int, clients: int, stop: float) -> list[tuple[int, str, tuple[float, ...]]]:
    body = small_png(3)
    answers: list[tuple[int, str, tuple[float, ...]]] = []

    async def client() -> None:
        conn = Connection(port)
        while time.perf_counter() < stop:
            outcome = await conn.request("POST", "/v1/models/alpha/classify", body, "image/png")
            if outcome.status == 200:
                result = json.loads(outcome.body)
                scores = tuple(result["scores"][k] for k in sorted(result["scores"]))
                answers.append((200, result["model"]["version"], scores))
            else:
                answers.append((outcome.status, "", ()))
        await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers


async def index(port: int) -> list[dict[str, str]]:
    conn = Connection(port)
    outcome = await conn.request("POST", "/v2/repository/index")
    metrics = await conn.request("GET", "/metrics")
    await conn.close()
    used = [
        line for line in metrics.body.decode().splitlines() if line.startswith("ninserve_model_memory_bytes")
    ]
    return json.loads(outcome.body) + [{"metric": line} for line in used]


async def run(server: Server, root: Path, seconds: float, clients: int) -> dict[str, object]:
    stop = time.perf_counter() + seconds
    before = await index(server.port)

    async def drop_in() -> float:
        await asyncio.sleep(seconds / 4)
        staging = root / ".alpha-2.onnx"
        shifted_fp32(staging)
        (root / "alpha" / "2").mkdir()
        staging.rename(root / "alpha" / "2" / "model.onnx")  # written elsewhere, then moved in
        return time.perf_counter()

    answers, _ = await asyncio.gather(crowd(server.port, clients, stop), drop_in())
    after = await index(server.port)
    scores: dict[str, set[tuple[float, ...]]] = {}
    statuses: dict[int, int] = {}
    for status, version, values in answers:
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            scores.setdefault(version, set()).add(values)
    return {
        "before": before,
        "after": after,
        "answers": len(answers),
        "statuses": statuses,
        "connection_errors": statuses.get(0, 0),
        "per_version": {v: sum(1 for _, ver, _ in answers if ver == v) for v in scores},
        "distinct_scores_per_version": {v: len(s) for v, s in scores.items()},
        "versions_differ": len({next(iter(s)) for s in scores.values()}) == len(scores),
        "peak_rss_mb": round(server.peak_mb),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--port", type=int, default=18220)
    parser.add_argument("--app-dir", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ninserve-swap-") as tmp:
        root = Path(tmp)
        (root / "alpha" / "1").mkdir(parents=True)
        (root / "beta" / "1").mkdir(parents=True)
        shutil.copy(ARTIFACTS / "nin-cifar10.onnx", root / "alpha" / "1" / "model.onnx")
        shutil.copy(ARTIFACTS / "nin-cifar10-int8.onnx", root / "beta" / "1" / "model-int8.onnx")
        env = {
            "NINSERVE_MODEL_REPOSITORY": str(root),
            "NINSERVE_REPOSITORY_POLL_S": "1",
            "NINSERVE_DEVICE": "cpu",
            "NINSERVE_LOG_LEVEL": "info",
        }
        server = Server(args.app_dir.resolve(), args.port, env)
        server.start()
        try:
            result = asyncio.run(run(server, root, args.seconds, args.clients))
        finally:
            server.stop()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
