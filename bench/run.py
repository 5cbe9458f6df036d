"""The benchmark in one command: raw ONNX Runtime limit, then ninserve and each peer under load.

    .venv/bin/python -m bench.run                       # everything (prints its time estimate)
    .venv/bin/python -m bench.run --servers ninserve,fastapi --artifacts int8   # same int8 file
    .venv/bin/python -m bench.run --servers ninserve,litserve --duration 5 --images png32
    .venv/bin/python -m bench.run smoke                 # each server: start, classify, stop
    .venv/bin/python -m bench.report bench/results/<stamp>.json   # redo the table and chart

For each server in turn: start it, time it to its first correct classification, check its scores
against in-process ONNX Runtime (same preprocessing = same numbers), warm it up, then run the
load generator at each concurrency for a fixed time per test image while sampling the process
tree's memory and CPU; stop it. Writes bench/results/<stamp>.json (every raw number), .md (the
tables for docs/benchmarks.md, ratios from this same run) and .png (the chart). Server logs go to
scratch/bench/logs/<stamp>/.

Two comparisons in one run (`--artifacts fp32,int8`, the default): every server on the fp32
artifact, and every server on the int8 artifact (`<server>@int8`, ninserve pinned to the same
file as the peers), beside ninserve as shipped (`ninserve-int8`: precision=auto picks the int8
variant on the CPU). bench.report checks each comparison's targets.

Everything runs inside a loopback-only network namespace (`unshare -n`, needs root) so that no
server is reachable from outside whatever it binds, and Ray Serve can run at all. Peers need
their venvs first: `bash bench/setup_peers.sh`. Run it on a quiet machine: the load average at
the start and the end is recorded, and a busy start is warned about.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import grpc_load, images, loadgen, procs, report
from bench.peers import common
from bench.servers import (
    ALL_SERVERS,
    ROOT,
    Options,
    Server,
    ServerSpec,
    artifact_of,
    build,
    post,
    scores_from,
    with_artifacts,
)

RESULTS = ROOT / "bench" / "results"
READY_TIMEOUT_S = 240.0
PARITY_TOL = 1e-3  # fp32 servers must match in-process ORT to this (max |score difference|)


def reference_scores(model: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and each test image's scores from in-process ORT with the shared preprocessing."""
    session = common.make_session(model, 1)
    classes = common.class_names(session)
    ref = {}
    for name in images.IMAGES:
        pixels = common.preprocess(images.make(name))[None]  # [1, 32, 32, 3]
        ref[name] = session.run(["scores"], {"image": pixels})[0][0]
    return classes, ref


def requests_for(spec: ServerSpec) -> dict[str, tuple[bytes, dict[str, str]]]:
    out = {}
    for name, (ctype, ext) in images.IMAGES.items():
        out[name] = loadgen.request_for(spec.protocol, images.make(name), ctype, f"{name}.{ext}")
    return out


def parity(server: Server, reqs: dict, classes: list[str], ref: dict[str, np.ndarray]) -> dict[str, Any]:
    """Max |score - reference| and top-1 agreement per image: proof of the same preprocessing."""
    out: dict[str, Any] = {}
    for name, (body, headers) in reqs.items():
        status, answer = post(server.spec.url, body, headers, timeout=30)
        if status != 200:
            raise RuntimeError(f"{name}: HTTP {status}: {answer[:300]!r}")
        got = np.asarray(scores_from(answer, classes))
        out[name] = {
            "max_abs_diff": float(np.abs(got - ref[name]).max()),
            "top1_agrees": bool(got.argmax() == ref[name].argmax()),
        }
    return out


class Sampler:
    """Samples the server's process tree every `period` s in a thread: peak RSS/PSS."""

    def __init__(self, server: Server, period: float = 0.5) -> None:
        self.server, self.period = server, period
        self.peak_rss = self.peak_pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            u = self.server.usage()
            self.peak_rss, self.peak_pss = max(self.peak_rss, u.rss_mb), max(self.peak_pss, u.pss_mb)
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def batch_stats(log: Path) -> dict[str, float] | None:
    """The last `bench-batches` line a peer printed (bench/peers/common.py): mean and largest
    batch over the whole run, proof that its dynamic batching engaged."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "bench-batches " in ln]
    if not lines:
        return None
    fields = dict(kv.split("=") for kv in lines[-1].split("bench-batches ", 1)[1].split())
    calls, imgs = int(fields["calls"]), int(fields["images"])
    return {"calls": calls, "mean": round(imgs / max(calls, 1), 2), "max": int(fields["max"])}


def batch_counters(metrics_text: str) -> dict[str, Any]:
    """Images, ORT executions, their seconds and the batch-size histogram's cumulative buckets
    (`le` -> count) from ninserve's /metrics text, summed over every model label."""
    images = execs = compute_s = 0.0
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        if name == "nv_inference_count_total":
            images += float(value)
        elif name == "nv_inference_exec_count_total":
            execs += float(value)
        elif name == "nv_inference_compute_duration_seconds_sum":
            compute_s += float(value)
        elif name == "nv_inference_batch_size_bucket":
            le = float(name_labels.split('le="', 1)[1].split('"', 1)[0])
            buckets[le] = buckets.get(le, 0.0) + float(value)
    return {"images": images, "execs": execs, "compute_s": compute_s, "buckets": buckets}


def batch_summary(
    before: dict[str, Any], after: dict[str, Any], seconds: float | None = None
) -> dict[str, float] | None:
    """Mean batch between two `batch_counters` readings, and the largest batch's bucket bound
    (the smallest `le` that holds every execution in between); with the `seconds` between them,
    the share of that time ONNX Runtime was running a batch (`ort_busy`)."""
    execs = after["execs"] - before["execs"]
    if execs <= 0:
        return None
    grown = {le: n - before["buckets"].get(le, 0.0) for le, n in after["buckets"].items()}
    largest = min((le for le, n in grown.items() if n >= execs), default=float("inf"))
    summary = {
        "calls": int(execs),
        "mean": round((after["images"] - before["images"]) / execs, 2),
        "max": largest,
    }
    if seconds:
        summary["ort_busy"] = round((after.get("compute_s", 0.0) - before.get("compute_s", 0.0)) / seconds, 3)
    return summary


def ninserve_counters(spec: ServerSpec) -> dict[str, Any] | None:
    """ninserve's batch counters now (its /metrics), None for a peer or when unreadable."""
    if not spec.name.startswith("ninserve"):
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{spec.port}/metrics", timeout=10) as response:
            return batch_counters(response.read().decode())
    except (OSError, ValueError):
        return None


def start_and_check(spec: ServerSpec, log: Path, classes: list[str], refs: dict) -> tuple[Server, dict]:
    """Start, wait until it classifies, check parity against in-process ORT on the server's own
    artifact (`refs`: scores per artifact, then per image). The caller stops the server."""
    ref = refs[artifact_of(spec.name)]
    server = Server(spec, log)
    server.start()
    reqs = requests_for(spec)
    ready_s, _ = server.wait_ready(reqs["png32"], READY_TIMEOUT_S)
    idle = server.usage()
    rec = {
        "ready_s": round(ready_s, 2),
        "idle_rss_mb": round(idle.rss_mb, 1),
        "idle_pss_mb": round(idle.pss_mb, 1),
        "processes": idle.processes,
        "parity": parity(server, reqs, classes, ref),
    }
    # A server given an artifact must reproduce in-process ORT on it; ninserve as shipped picks its
    # own file (the bundled int8 variant), so it only has to agree on the top class.
    shipped = spec.name == "ninserve-int8"
    rec["parity_ok"] = all(
        v["top1_agrees"] if shipped else v["max_abs_diff"] <= PARITY_TOL for v in rec["parity"].values()
    )
    if not rec["parity_ok"]:
        print(f"  warning: {spec.name}'s scores differ from in-process ORT: {rec['parity']}", flush=True)
    return server, rec


def bench_server(
    spec: ServerSpec, args: argparse.Namespace, log: Path, classes: list[str], refs: dict
) -> dict:
    rec: dict[str, Any] = {
        "url": spec.url,
        "protocol": spec.protocol,
        "versions": spec.versions,
        "artifact": artifact_of(spec.name),
    }
    if spec.unavailable:
        print(f"  skipped: {spec.unavailable}", flush=True)
        return rec | {"status": "unavailable", "why": spec.unavailable}
    server = None
    try:
        server, checked = start_and_check(spec, log, classes, refs)
        rec |= checked
        print(f"  ready in {checked['ready_s']} s, idle PSS {checked['idle_pss_mb']} MiB", flush=True)
        reqs = requests_for(spec)
        first_counters = None
        if args.warmup > 0:
            load(spec, args, reqs["png32"], "png32", max(args.concurrency), args.warmup)
        first_counters = ninserve_counters(spec)  # batches from here on (peers log theirs)
        points = []
        for image in args.images:
            for c in args.concurrency:
                cpu0, counted0 = server.usage().cpu_s, ninserve_counters(spec)
                with Sampler(server) as sampler:
                    res, client_cpu_s = load(spec, args, reqs[image], image, c, args.duration)
                counted1 = ninserve_counters(spec)
                point = res.as_dict() | {
                    "client_cpu_s": client_cpu_s,
                    "image": image,
                    "peak_rss_mb": round(sampler.peak_rss, 1),
                    "peak_pss_mb": round(sampler.peak_pss, 1),
                    "server_cpu_s": round(server.usage().cpu_s - cpu0, 2),
                }
                if counted0 is not None and counted1 is not None:  # ninserve: its batches at this point
                    point["batches"] = batch_summary(counted0, counted1, res.seconds)
                points.append(point)
                print(
                    f"  {image:6} c={c:<3} {res.rps:8.1f} req/s  p50 {res.p50_ms:7.2f}  "
                    f"p99 {res.p99_ms:7.2f} ms  errors {res.errors}  PSS {sampler.peak_pss:6.0f} MiB",
                    flush=True,
                )
        batches = batch_stats(log)
        if batches is None and (start := first_counters) is not None and (end := ninserve_counters(spec)):
            batches = batch_summary(start, end)
        rec |= {"status": "ok", "points": points, "batches": batches}
    except Exception as exc:  # one broken server must not lose the others' results
        rec |= {"status": "failed", "why": f"{type(exc).__name__}: {exc}"}
        if server is not None:
            rec["log_tail"] = server.log_tail()
        print(f"  FAILED: {rec['why']}", flush=True)
    finally:
        if server is not None:
            server.stop()
    return rec


def load(
    spec: ServerSpec,
    args: argparse.Namespace,
    request: tuple[bytes, dict],
    image: str,
    c: int,
    seconds: float,
) -> tuple[loadgen.LoadResult, float | None]:
    """One load point: wrk (or hey) over HTTP; for a gRPC server bench/grpc_load.py, with the
    same image in the same tensor, and the client's CPU seconds (None where not measured)."""
    if spec.protocol != "grpc":
        return loadgen.run(args.loadgen, spec.url, *request, c, seconds), None
    assert spec.grpc_target is not None
    body = grpc_load.infer_request("nin-cifar10", images.make(image))
    return grpc_load.run(spec.grpc_target, body, c, seconds)


def smoke_server(
    spec: ServerSpec, args: argparse.Namespace, log: Path, classes: list[str], refs: dict
) -> dict:
    """Start, one correct answer per image, a few seconds of load if asked, stop."""
    rec: dict[str, Any] = {"server": spec.name, "url": spec.url, "versions": spec.versions}
    if spec.unavailable:
        return rec | {"status": "unavailable", "why": spec.unavailable}
    server = None
    try:
        server, checked = start_and_check(spec, log, classes, refs)
        rec |= checked
        if args.load_seconds > 0:
            res, _ = load(spec, args, requests_for(spec)["png32"], "png32", 8, args.load_seconds)
            rec["load_c8_png32"] = res.as_dict()
        rec["status"] = "works" if checked["parity_ok"] else "fails"
        if not checked["parity_ok"]:
            rec["why"] = f"answers, but its scores differ from in-process ORT: {checked['parity']}"
    except Exception as exc:
        rec |= {"status": "fails", "why": f"{type(exc).__name__}: {exc}"}
        if server is not None:
            rec["log_tail"] = server.log_tail(25)
    finally:
        if server is not None:
            server.stop()
    return rec


def run_raw(args: argparse.Namespace, opts: Options, out: Path) -> dict:
    cmd = [sys.executable, "-m", "bench.raw_ort", "--threads", str(opts.threads)]
    cmd += ["--seconds", str(args.raw_seconds), "--fp32", str(opts.model), "--int8", str(opts.int8_model)]
    cmd += ["--json", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads(out.read_text())


def sha256_of(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: which artifact a run's servers were given."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def estimate_s(args: argparse.Namespace, n_servers: int) -> float:
    per_server = 20 + args.warmup + len(args.images) * len(args.concurrency) * (args.duration + 1.5)
    raw = 2 * args.raw_seconds * (3 + len(images.IMAGES) * 3.5)
    return n_servers * per_server + raw


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", choices=["bench", "smoke"], default="bench")
    p.add_argument("--servers", default=",".join(ALL_SERVERS), help="comma-separated; default: all")
    p.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads, every server"
    )
    p.add_argument("--max-batch", type=int, default=32, help="dynamic batching limit, every server")
    p.add_argument("--max-wait-ms", type=float, default=0.0, help="batch window, every server")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load point")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--images", default=",".join(images.IMAGES))
    p.add_argument("--raw-seconds", type=float, default=3.0, help="seconds per raw ORT point; 0 skips")
    p.add_argument("--loadgen", choices=["wrk", "hey"], default="wrk")
    p.add_argument("--load-seconds", type=float, default=0.0, help="smoke: seconds of c=8 load")
    p.add_argument("--model", type=Path, default=Options.model, help="fp32 artifact")
    p.add_argument("--int8-model", type=Path, default=Options.int8_model, help="int8 artifact")
    p.add_argument(
        "--artifacts",
        default="fp32,int8",
        help="fp32: every server on the fp32 file; int8: every server on the int8 file too (<server>@int8)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="where <stamp>.json/.md/.png go")
    p.add_argument("--no-netns", dest="netns", action="store_false", help="stay in this network namespace")
    args = p.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.concurrency = [int(c) for c in str(args.concurrency).split(",")]
    args.images = [i for i in args.images.split(",") if i]
    args.artifacts = [a for a in args.artifacts.split(",") if a]
    if not set(args.artifacts) <= {"fp32", "int8"} or not args.artifacts:
        p.error("--artifacts takes fp32, int8 or both")
    args.servers = with_artifacts(args.servers, args.artifacts)
    return args


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse(raw_argv)
    if args.netns:
        procs.reexec_in_netns(["-m", "bench.run", *raw_argv])  # returns only where impossible
        if not procs.in_private_netns():
            print("note: no loopback-only namespace (needs root and unshare); Ray is skipped", flush=True)
    procs.become_subreaper()
    if not loadgen.available(args.loadgen):
        print(f"{args.loadgen} not found: run bench/setup_peers.sh (installs wrk and hey)", file=sys.stderr)
        return 2
    opts = Options(
        threads=args.threads,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        model=args.model.resolve(),
        int8_model=args.int8_model.resolve(),
    )
    specs = [build(name, opts) for name in args.servers]
    classes, ref = reference_scores(opts.model)
    refs = {"fp32": ref, "int8": reference_scores(opts.int8_model)[1]}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = opts.scratch / "logs" / stamp

    if args.mode == "smoke":
        smoke_dir = opts.scratch / "smoke"
        smoke_dir.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            rec = smoke_server(spec, args, logs / f"{spec.name}.log", classes, refs)
            (smoke_dir / f"{spec.name}.json").write_text(json.dumps(rec, indent=2))
            print(report.smoke_line(rec), flush=True)
        return 0

    load0 = procs.load_average()
    print(f"estimated time: {estimate_s(args, len(specs)) / 60:.0f} min; load average now {load0:.2f}")
    if load0 > 0.5:
        print("warning: the machine is not quiet; results will understate every server", flush=True)
    result: dict[str, Any] = {
        "stamp": stamp,
        "machine": machine(),
        "settings": {
            "threads": opts.threads,
            "max_batch": opts.max_batch,
            "max_wait_ms": opts.max_wait_ms,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "images": {n: len(images.make(n)) for n in args.images},
            "loadgen": loadgen.version(args.loadgen),
            "netns": procs.in_private_netns(),
            "artifacts": {
                "fp32": {"file": opts.model.name, "sha256": sha256_of(opts.model)},
                "int8": {"file": opts.int8_model.name, "sha256": sha256_of(opts.int8_model)},
            },
        },
        "load_average_start": load0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.raw_seconds > 0:
        print("== raw ONNX Runtime", flush=True)
        result["raw"] = run_raw(args, opts, logs / "raw_ort.json")
    result["servers"] = {}
    for spec in specs:
        print(f"== {spec.name}", flush=True)
        result["servers"][spec.name] = bench_server(spec, args, logs / f"{spec.name}.log", classes, refs)
    result["load_average_end"] = procs.load_average()
    base = args.out / stamp
    base.with_suffix(".json").write_text(json.dumps(result, indent=2))
    written = report.write(result, base)
    print(f"wrote {base}.json, {', '.join(str(path) for path in written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
