"""The servers under test: how to start each, where it answers, and its life cycle.

Every server gets the same model, intra-op thread count and batching limits (BENCH_* for the
peers, NINSERVE_* for ninserve), binds 127.0.0.1 on its own port, and runs from its own venv
(scratch/bench/venvs/<peer>, made by bench/setup_peers.sh). A server is "ready" when it
classifies a real image, not when its health route first answers: frameworks disagree on what
health means, and time to ready is measured to the first useful answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from bench import procs

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
# triton: KServe V2 + binary tensor data over HTTP; grpc: the same tensor over gRPC (bench/grpc_load.py),
# with readiness and parity checked over the same server's HTTP V2 route.
Protocol = Literal["multipart", "triton", "grpc"]

# Framework packages whose versions a result records, per peer.
PEER_PACKAGES = {
    "fastapi": ["fastapi", "uvicorn", "starlette"],
    "litserve": ["litserve", "fastapi", "uvicorn"],
    "bentoml": ["bentoml"],
    "torchserve": ["torchserve", "torch-model-archiver", "torch"],
    "pytriton": ["nvidia-pytriton", "tritonclient"],
    "ray": ["ray", "fastapi"],
}
# ninserve-v2 and ninserve-grpc: the fp32 ninserve answering the V2 protocol, the encoded image as a
# BYTES tensor (PyTriton's request), over HTTP (wrk) and over gRPC (bench/grpc_load.py).
ALL_SERVERS = ("ninserve", "ninserve-int8", "ninserve-v2", "ninserve-grpc", *PEER_PACKAGES)
V2_INFER = "/v2/models/nin-cifar10/infer"
# `<server>@int8`: the same server given the int8 artifact instead of the fp32 one (ninserve pinned
# to it like any peer). Beside `ninserve-int8` (as shipped: precision=auto, which picks that same
# file on the CPU) these rows compare every server on one int8 file.
INT8_SUFFIX = "@int8"
# Servers that get an @int8 twin when bench.run measures the int8 artifact too.
SAME_ARTIFACT_SERVERS = ("ninserve", *PEER_PACKAGES)


def artifact_of(name: str) -> str:
    """ "int8" for a server run on the int8 file (an @int8 twin, or ninserve as shipped), else "fp32"."""
    return "int8" if name.endswith(INT8_SUFFIX) or name == "ninserve-int8" else "fp32"


def with_artifacts(names: list[str], artifacts: list[str]) -> list[str]:
    """The server list for these artifacts: fp32 as named; for int8, an @int8 twin of each server
    in SAME_ARTIFACT_SERVERS (right after it), and ninserve as shipped stays as named."""
    out: list[str] = []
    for name in names:
        base = name.removesuffix(INT8_SUFFIX)
        if name.endswith(INT8_SUFFIX) or base not in SAME_ARTIFACT_SERVERS:
            out.append(name)
            continue
        out += [name] if "fp32" in artifacts else []
        out += [name + INT8_SUFFIX] if "int8" in artifacts else []
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Options:
    """What every server is given alike."""

    threads: int
    max_batch: int = 32  # ninserve's default max_batch_size
    max_wait_ms: float = 0.0  # ninserve's default max_batch_wait_ms
    model: Path = ROOT / "model" / "artifacts" / "nin-cifar10.onnx"
    int8_model: Path = ROOT / "model" / "artifacts" / "nin-cifar10-int8.onnx"
    scratch: Path = ROOT / "scratch" / "bench"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: list[str]
    port: int
    path: str  # the classify route
    protocol: Protocol = "multipart"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    unavailable: str | None = None  # why it cannot run here, if it cannot
    versions: dict[str, str] = field(default_factory=dict)
    grpc_target: str | None = None  # host:port, for protocol "grpc"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def _freeze_versions(venv: Path, names: list[str]) -> dict[str, str]:
    """Versions from the venv's `pip freeze` snapshot (written by setup_peers.sh)."""
    try:
        lines = (venv / ".bench-freeze").read_text().splitlines()
    except OSError:
        return {}
    wanted = {n.lower() for n in names}
    out = {}
    for line in lines:
        name, sep, version = line.partition("==")
        if sep and name.lower() in wanted:
            out[name] = version
    return out


def _ninserve(name: str, opts: Options, model: Path | None, port: int) -> ServerSpec:
    """ninserve on one pinned fp32 artifact, or (`model` None) as shipped: the bundled repository
    with `precision=auto`, which serves the int8 variant on the CPU."""
    python = ROOT / ".venv" / "bin" / "python"
    argv = [str(python), "-m", "app.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--model", str(model), "--precision", "fp32"] if model else ["--precision", "auto"]
    argv += ["--device", "cpu", "--log-level", "warning"]
    env = {
        "NINSERVE_INTRA_OP_THREADS": str(opts.threads),
        "NINSERVE_MAX_BATCH_SIZE": str(opts.max_batch),
        "NINSERVE_MAX_BATCH_WAIT_MS": str(opts.max_wait_ms),
    }
    why = None
    if model and not model.is_file():
        why = f"artifact not found: {model}"
    else:
        probe = subprocess.run([*argv[:4], "--help"], cwd=ROOT, capture_output=True, text=True)
        if probe.returncode != 0:
            why = f"`ninserve serve` is not available yet: {probe.stderr.strip().splitlines()[-1:]}"
    # uvloop/httptools (uvicorn[standard]) change the HTTP stack's cost: record whether ninserve had
    # them, since the peers' venvs do.
    versions = {m: _module_version(python, m) for m in ("onnxruntime", "uvicorn", "uvloop", "httptools")}
    versions["git"] = _git_commit()
    return ServerSpec(name, argv, port, "/v1/classify", env=env, unavailable=why, versions=versions)


def _module_version(python: Path, module: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import {module}; print({module}.__version__)"], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else "missing"


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "app"], cwd=ROOT, capture_output=True)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def build(name: str, opts: Options, port: int | None = None) -> ServerSpec:
    """The spec for one server by name (see ALL_SERVERS, and INT8_SUFFIX for any of
    SAME_ARTIFACT_SERVERS on the int8 file); `port` overrides ninserve's default."""
    if name.endswith(INT8_SUFFIX):
        base = name.removesuffix(INT8_SUFFIX)
        if base not in SAME_ARTIFACT_SERVERS:
            raise ValueError(f"{name!r}: only {', '.join(SAME_ARTIFACT_SERVERS)} take {INT8_SUFFIX}")
        spec = build(base, replace(opts, model=opts.int8_model), port)
        return replace(spec, name=name)
    if name == "ninserve":
        return _ninserve(name, opts, opts.model, port or 8100)
    if name == "ninserve-int8":  # as shipped: precision=auto picks the int8 variant on the CPU
        return _ninserve(name, opts, None, port or 8120)
    if name == "ninserve-v2":
        spec = _ninserve(name, opts, opts.model, port or 18410)
        return replace(spec, path=V2_INFER, protocol="triton")
    if name == "ninserve-grpc":
        spec = _ninserve(name, opts, opts.model, port or 18411)
        grpc_port = spec.port + 50
        return replace(
            spec,
            path=V2_INFER,
            protocol="grpc",
            env=spec.env | {"NINSERVE_GRPC_PORT": str(grpc_port)},
            grpc_target=f"127.0.0.1:{grpc_port}",
        )
    if name not in PEER_PACKAGES:
        raise ValueError(f"unknown server {name!r}; one of {', '.join(ALL_SERVERS)}")
    venv = opts.scratch / "venvs" / name
    py = str(venv / "bin" / "python")
    ports = {"fastapi": 8101, "litserve": 8102, "bentoml": 8103, "torchserve": 8104, "pytriton": 8110}
    port = ports.get(name, 8115)
    argv: list[str]
    path, protocol = "/classify", "multipart"
    if name == "fastapi":
        argv = [py, "fastapi_ort.py"]
    elif name == "litserve":
        argv = [py, "litserve_server.py"]
    elif name == "bentoml":
        argv = [str(venv / "bin" / "bentoml"), "serve", "bentoml_service:NiN", "--host", "127.0.0.1"]
        argv += ["--port", str(port)]
    elif name == "torchserve":
        argv, path = [py, "torchserve/serve.py"], "/predictions/nin"
    elif name == "pytriton":
        argv, path, protocol = [py, "pytriton_server.py"], "/v2/models/nin/infer", "triton"
    else:
        argv = [py, "ray_serve_app.py"]
    env = {
        "BENCH_PORT": str(port),
        "BENCH_MODEL": str(opts.model),
        "BENCH_THREADS": str(opts.threads),
        "BENCH_MAX_BATCH": str(opts.max_batch),
        "BENCH_MAX_WAIT_MS": str(opts.max_wait_ms),
        "BENCH_SCRATCH": str(opts.scratch),
        "PYTHONPATH": str(PEERS),
        # No usage reporting from frameworks that phone home by default.
        "BENTOML_DO_NOT_TRACK": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    why = None
    if not (venv / ".bench-reqs").is_file():
        why = f"no venv at {venv}: run bench/setup_peers.sh {name}"
    elif name == "ray" and not procs.in_private_netns():
        why = "Ray binds every interface: it runs only inside the loopback-only namespace (root + unshare)"
    versions = _freeze_versions(venv, PEER_PACKAGES[name] + ["onnxruntime", "numpy", "pillow"])
    return ServerSpec(name, argv, port, path, protocol, env, PEERS, why, versions)  # type: ignore[arg-type]


class Server:
    """One running server process tree: start, wait until it classifies, measure, stop."""

    def __init__(self, spec: ServerSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started = 0.0
        self._seen: dict[int, str] = {}  # pid -> start time, every process the tree has had

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = {**os.environ, **self.spec.env}
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            self.spec.argv,
            cwd=self.spec.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches every child
        )

    @property
    def pid(self) -> int:
        assert self._proc is not None, "start() first"
        return self._proc.pid

    def wait_ready(self, probe: tuple[bytes, dict[str, str]], timeout: float) -> tuple[float, bytes]:
        """Seconds from start to the first 200 for a real classify request, and that body."""
        body, headers = probe
        deadline = self._started + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"exited with code {self._proc.returncode} before ready")
            try:
                status, answer = post(self.spec.url, body, headers, timeout=10)
                if status == 200:
                    return time.monotonic() - self._started, answer
                last = f"HTTP {status}: {answer[:200]!r}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            self.usage()  # remember the tree's pids while it grows
            time.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout:.0f} s ({last})")

    def usage(self) -> procs.TreeUsage:
        u = procs.usage(self.pid)
        self._remember()
        return u

    def _remember(self) -> None:
        for pid in procs.tree_pids(self.pid):
            if (started := procs.start_time(pid)) is not None:
                self._seen.setdefault(pid, started)

    def stop(self, grace: float = 20.0) -> None:
        if self._proc is None:
            return
        self._remember()
        _signal_group(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(grace)
        _signal_group(self.pid, signal.SIGKILL)
        for pid, started in self._seen.items():  # children that left the group go too, but
            if procs.start_time(pid) == started:  # only if the pid is still that same process
                _kill(pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)
        time.sleep(0.5)
        procs.reap_orphans()
        if self._log is not None:
            self._log.close()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scores_from(answer: bytes, classes: list[str]) -> list[float]:
    """The class scores in any server's answer: ninserve's and the peers' `scores` dict, BentoML's
    one-element list of it, or Triton's `outputs` tensor list."""
    obj: Any = json.loads(answer)
    if isinstance(obj, list):
        obj = obj[0]
    if "outputs" in obj:
        tensor = next(o for o in obj["outputs"] if o["name"] == "scores")
        return [float(v) for v in tensor["data"]]
    return [float(obj["scores"][c]) for c in classes]
