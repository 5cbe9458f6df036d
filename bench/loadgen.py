"""Request bodies and the load generators: wrk (default) and hey.

Both keep `c` connections busy for a fixed time (closed loop), so a point is "c clients that
send the next request as soon as the last one answers". wrk is the default: one C thread with
epoll costs the 2-core machine the least CPU, so more of it is left to the server; it records
every request's latency (microsecond resolution) and its Lua `done` hook prints the exact
percentiles as JSON. hey records each request to CSV; its percentiles are computed here, but its
Go client needs several times wrk's CPU per request. Timeouts (10 s) count as errors, never as
latency, so a point with errors is flagged, not trusted.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.servers import Protocol

BOUNDARY = "ninbench0f8e3c1a"
TIMEOUT_S = 10

_LUA = """
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"mean_us":%.1f,"max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
"""


def request_for(protocol: Protocol, image: bytes, content_type: str, filename: str) -> tuple[bytes, dict]:
    """The HTTP body and headers that carry one image to a server of this protocol."""
    if protocol in ("triton", "grpc"):  # grpc: readiness and parity go over the HTTP V2 route
        # KServe v2 + Triton's binary extension: JSON header, then the BYTES tensor (length-prefixed).
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, 1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(image) + 4},
                    }
                ]
            },
            separators=(",", ":"),
        ).encode()
        body = header + len(image).to_bytes(4, "little") + image
        return body, {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        }
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + image + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    rps: float  # successful (2xx) answers per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int  # connect + read + write + timeout + non-2xx
    error_detail: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


def version(tool: str) -> str:
    if tool == "wrk":
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
        return f"wrk {match.group(1) if match else '?'}"
    return "hey (Debian package)"  # hey has no version flag


def available(tool: str) -> bool:
    return shutil.which(tool) is not None


def run(
    tool: str, url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="ninbench-") as tmp:
        body_path = Path(tmp) / "body.bin"
        body_path.write_bytes(body)
        if tool == "wrk":
            return _wrk(url, body_path, headers, concurrency, seconds, Path(tmp))
        return _hey(url, body_path, headers, concurrency, seconds)


def _wrk(url: str, body: Path, headers: dict[str, str], c: int, seconds: float, tmp: Path) -> LoadResult:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script = tmp / "post.lua"
    script.write_text(_LUA.format(body=body, headers=lines))
    # wrk takes whole seconds only.
    cmd = [
        "wrk",
        "-t1",
        f"-c{c}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={TIMEOUT_S}s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk printed no result (rc {out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}"
        )
    r = json.loads(line.removeprefix("BENCH_JSON "))
    detail = {k: int(r[k]) for k in ("connect", "read", "write", "status", "timeout")}
    duration = r["duration_us"] / 1e6
    return LoadResult(
        concurrency=c,
        seconds=duration,
        requests=int(r["requests"]),
        rps=(r["requests"] - r["status"]) / duration if duration else 0.0,  # answered with 2xx
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        mean_ms=r["mean_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        errors=sum(detail.values()),
        error_detail=detail,
    )


def _hey(url: str, body: Path, headers: dict[str, str], c: int, seconds: float) -> LoadResult:
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(c), "-t", str(TIMEOUT_S), "-m", "POST", "-D", str(body)]
    for key, value in headers.items():
        cmd += ["-T", value] if key == "Content-Type" else ["-H", f"{key}: {value}"]
    out = subprocess.run([*cmd, "-o", "csv", url], capture_output=True, text=True, timeout=seconds + 60)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    if not rows:
        raise RuntimeError(f"hey printed no result (rc {out.returncode}): {out.stderr[-500:]}")
    ms = np.array([float(r["response-time"]) * 1000 for r in rows])
    ok = np.array([r["status-code"] == "200" for r in rows])
    duration = max(float(r["offset"]) + float(r["response-time"]) for r in rows)
    return LoadResult(
        concurrency=c,
        seconds=duration,
        requests=len(rows),
        rps=int(ok.sum()) / duration,
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        max_ms=float(ms.max()),
        errors=int((~ok).sum()),
        error_detail={"status": int((~ok).sum())},
    )
