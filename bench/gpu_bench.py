"""GPU benchmark (run by bench/gpu.sh): ONNX Runtime's CUDA EP on the artifact, then ninserve.

1. Raw limit, fp32 and fp16 (converted here, uint8 in / float32 out kept), batch 1 ... 1024,
   through IOBinding two ways: `device` (input already on the GPU, outputs left there: the
   kernel-bound ceiling) and `host` (uint8 batch copied in, both outputs copied back: what a
   server pays per batch).
2. End to end: `ninserve serve --device cuda` with a large batch limit, loaded by CLIENTS
   processes of threads that each keep one HTTP connection busy (closed loop, multipart
   32x32 PNG), at several concurrencies; fp32 and fp16, and fp16 with several uvicorn workers.

    python -m bench.gpu_bench --out scratch/bench/gpu         # ~4 min on one H200
    python -m bench.gpu_bench --cpu --quick                   # exercise the code without a GPU

Standard library + numpy + onnx + onnxruntime(-gpu) only: the GPU machine has no wrk.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench import images, loadgen

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "model" / "artifacts" / "nin-cifar10.onnx"
OUTPUTS = ["scores", "confidence_maps"]


def fp16_model(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
    return dst


def session(path: Path, cpu: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if cpu:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    providers = [("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"})]
    sess = ort.InferenceSession(str(path), options, providers=providers)
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"CUDA EP not active: {sess.get_providers()}")
    return sess


def time_calls(fn: Any, seconds: float, max_calls: int = 2000) -> np.ndarray:
    for _ in range(3):
        fn()
    ms, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(ms) < max_calls:
        t = time.perf_counter_ns()
        fn()
        ms.append((time.perf_counter_ns() - t) / 1e6)
    return np.asarray(ms)


def raw_sweep(sess: ort.InferenceSession, batches: list[int], seconds: float, cpu: bool) -> list[dict]:
    rows = []
    device = "cpu" if cpu else "cuda"
    for n in batches:
        x = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        x_dev = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
        on_device = sess.io_binding()
        on_device.bind_ortvalue_input("image", x_dev)
        for name in OUTPUTS:
            on_device.bind_output(name, device, 0)

        def host(x: np.ndarray = x) -> None:
            binding = sess.io_binding()
            binding.bind_cpu_input("image", x)
            for name in OUTPUTS:
                binding.bind_output(name, device, 0)
            sess.run_with_iobinding(binding)
            binding.copy_outputs_to_cpu()

        for mode, fn in (("device", lambda b=on_device: sess.run_with_iobinding(b)), ("host", host)):
            ms = time_calls(fn, seconds)
            rows.append(
                {
                    "batch": n,
                    "mode": mode,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "images_per_s": float(n * len(ms) / (ms.sum() / 1000)),
                }
            )
        print(f"  batch {n:5}: " + "  ".join(f"{r['mode']} {r['images_per_s']:10.0f}/s" for r in rows[-2:]))
    return rows


# --- end to end --------------------------------------------------------------------------------


def _client(url: str, body: bytes, headers: dict, threads: int, seconds: float, out: mp.Queue) -> None:
    """One client process: `threads` threads, each a keep-alive connection in a closed loop."""
    host, port = url.split("/")[2].split(":")
    path = "/" + url.split("/", 3)[3]
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    mine.append((time.perf_counter() - t) * 1000)
                else:
                    bad += 1
            except OSError:
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        with lock:
            lat.extend(mine)
            errors[0] += bad

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((lat, errors[0]))


def load(url: str, concurrency: int, processes: int, seconds: float) -> dict:
    body, headers = loadgen.request_for("multipart", images.make("png32"), "image/png", "png32.png")
    processes = max(1, min(processes, concurrency))
    per = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    queue: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_client, args=(url, body, headers, n, seconds, queue)) for n in per]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    lat = np.asarray([x for r in results for x in r[0]])
    errors = sum(r[1] for r in results)
    if lat.size == 0:
        return {"concurrency": concurrency, "rps": 0.0, "errors": errors}
    return {
        "concurrency": concurrency,
        "rps": float(lat.size / seconds),
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": errors,
    }


def serve_and_load(model: Path, args: argparse.Namespace, workers: int, port: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "NINSERVE_MAX_BATCH_SIZE": str(args.server_batch),
        "NINSERVE_MAX_QUEUE": str(max(4096, args.server_batch)),
        "NINSERVE_MAX_BATCH_WAIT_MS": "2",
        "NINSERVE_DECODE_THREADS": str(args.decode_threads),
    }
    cmd = [sys.executable, "-m", "app.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--model", str(model), "--device", "cpu" if args.cpu else "cuda", "--workers", str(workers)]
    cmd += ["--log-level", "warning"]
    log = (args.out / f"server-{model.stem}-w{workers}.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    started, rec = time.monotonic(), {"model": model.name, "workers": workers}
    try:
        while True:
            if proc.poll() is not None or time.monotonic() - started > 240:
                return rec | {"error": f"not ready (exit code {proc.poll()}); see {log.name}"}
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        rec["ready_s"] = round(time.monotonic() - started, 1)
        load(f"{base}/v1/classify", max(args.concurrency), args.clients, 2)  # warm-up
        rec["points"] = []
        for c in args.concurrency:
            point = load(f"{base}/v1/classify", c, args.clients, args.seconds)
            rec["points"].append(point)
            print(
                f"  {model.stem} workers={workers} c={c:4}: {point['rps']:8.0f} req/s  "
                f"p50 {point.get('p50_ms', 0):7.2f}  p99 {point.get('p99_ms', 0):7.2f} ms  "
                f"errors {point['errors']}",
                flush=True,
            )
        return rec
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def gpu_facts() -> str:
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "no nvidia-smi"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "scratch" / "bench" / "gpu")
    p.add_argument("--cpu", action="store_true", help="CPU EP: check the script without a GPU")
    p.add_argument("--quick", action="store_true", help="few batches, short points")
    p.add_argument("--seconds", type=float, default=8.0, help="per end-to-end point")
    p.add_argument("--raw-seconds", type=float, default=0.5, help="per raw point")
    p.add_argument("--concurrency", default="16,64,256")
    p.add_argument("--clients", type=int, default=max(1, (os.cpu_count() or 4) // 2), help="client processes")
    p.add_argument("--server-batch", type=int, default=256, help="ninserve max_batch_size")
    p.add_argument("--decode-threads", type=int, default=max(2, (os.cpu_count() or 4) // 2))
    p.add_argument("--workers", default="1,4", help="uvicorn workers for the fp16 end-to-end runs")
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    batches = [1, 8, 64] if args.quick else [2**i for i in range(11)]
    if args.quick:
        args.seconds, args.raw_seconds, args.concurrency, args.workers = 2.0, 0.2, [8], "1"
    args.out.mkdir(parents=True, exist_ok=True)
    if hasattr(ort, "preload_dlls") and not args.cpu:
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels already installed
    result: dict[str, Any] = {
        "gpu": gpu_facts(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cpu_count": os.cpu_count(),
    }
    print(f"{result['gpu']}; onnxruntime {ort.__version__}; {result['providers']}", flush=True)
    models = {"fp32": MODEL, "fp16": fp16_model(MODEL, args.out / "nin-cifar10-fp16.onnx")}
    result["raw"] = {}
    for name, path in models.items():
        print(f"== raw {name} (IOBinding)", flush=True)
        result["raw"][name] = raw_sweep(session(path, args.cpu), batches, args.raw_seconds, args.cpu)
    result["e2e"] = []
    runs = [("fp32", 1)] + [("fp16", int(w)) for w in args.workers.split(",")]
    for i, (name, workers) in enumerate(runs):
        print(f"== ninserve {name}, {workers} worker(s)", flush=True)
        result["e2e"].append(serve_and_load(models[name], args, workers, 8200 + i))
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


def table(result: dict) -> str:
    lines = ["", "| precision | batch | device-resident images/s | host-copy images/s | host p50 ms |"]
    lines.append("|---|--:|--:|--:|--:|")
    for name, rows in result["raw"].items():
        by = {(r["batch"], r["mode"]): r for r in rows}
        for n in sorted({r["batch"] for r in rows}):
            d, h = by[(n, "device")], by[(n, "host")]
            lines.append(
                f"| {name} | {n} | {d['images_per_s']:.0f} | {h['images_per_s']:.0f} | {h['p50_ms']:.2f} |"
            )
    lines += [
        "",
        "| ninserve | workers | c | req/s | p50 ms | p99 ms | errors |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for run in result["e2e"]:
        for pt in run.get("points", []):
            lines.append(
                f"| {run['model']} | {run['workers']} | {pt['concurrency']} | {pt['rps']:.0f} | "
                f"{pt.get('p50_ms', 0):.2f} | {pt.get('p99_ms', 0):.2f} | {pt['errors']} |"
            )
        if "error" in run:
            lines.append(f"| {run['model']} | {run['workers']} | – | failed: {run['error']} | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
