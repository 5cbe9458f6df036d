"""Talk to a running ninserve like a client would: wait for /readyz, classify a PNG, fetch a map.

Standard library only, so it runs on any host python3 next to a container. Prints one JSON line
with what it measured; exits non-zero on the first thing that is wrong.

    python3 scripts/smoke_client.py http://127.0.0.1:8000 [--ready-timeout 180] [--since UNIXTIME]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_png(size: int = 32) -> bytes:
    """An RGB gradient PNG, built by hand so no imaging library is needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + bytes(v for x in range(size) for v in (x * 255 // size, y * 255 // size, 128))
        for y in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(base: str, timeout_s: float, since: float) -> float:
    """Seconds from `since` (unix time) until /readyz answered 200; raises after `timeout_s`."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout_s:
        try:
            status, body = request(f"{base}/readyz")
            if status == 200:
                return time.time() - since
            last = f"{status} {body[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise SystemExit(f"not ready after {timeout_s:.0f}s: {last}")


def classify(base: str, png: bytes) -> dict[str, Any]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="smoke.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, raw = request(
        f"{base}/v1/classify", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    if status != 200:
        raise SystemExit(f"classify: HTTP {status}: {raw[:500]!r}")
    return json.loads(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--since", type=float, default=None, help="unix time the server was started")
    args = parser.parse_args(argv)
    base = args.base_url.rstrip("/")

    ready_s = wait_ready(base, args.ready_timeout, args.since or time.time())
    status, _ = request(f"{base}/healthz")
    if status != 200:
        raise SystemExit(f"/healthz: HTTP {status}")

    start = time.monotonic()
    result = classify(base, make_png())
    classify_ms = (time.monotonic() - start) * 1000
    top = result["top"][0]["label"]
    map_url = result["maps"]["png_url_template"].replace("{label}", top)
    status, png = request(base + map_url if map_url.startswith("/") else map_url)
    if status != 200 or not png.startswith(PNG_SIGNATURE):
        raise SystemExit(f"map {map_url}: HTTP {status}, {len(png)} bytes, starts {png[:8]!r}")

    print(
        json.dumps(
            {
                "ready_s": round(ready_s, 2),
                "classify_ms": round(classify_ms, 1),
                "id": result["id"],
                "top": top,
                "score": result["top"][0]["score"],
                "map_url": map_url,
                "map_bytes": len(png),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
