"""Coverage-guided fuzzing (atheris) of the code that reads client bytes: image decoding, multipart
bodies and the KServe V2 codec (with Content-Encoding). A finding is any exception other than
the domain errors (app/core/errors.py) that the HTTP layer turns into a 4xx, and any 5xx-class one.

    python scripts/fuzz.py decode --runs 20000            # one target, N inputs
    python scripts/fuzz.py all --runs 2000                # each target in turn (tests do this)
    python scripts/fuzz.py codec -seed=1 -max_len=4096    # any other flag goes to libFuzzer

Exit status 0: no finding; otherwise libFuzzer's, with the input written to crash-<sha1>.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris
import fastapi  # noqa: F401  (libraries load uninstrumented: instrumenting them all takes a minute)
import numpy  # noqa: F401
from starlette.requests import Request

with atheris.instrument_imports(include=["app", "PIL"]):  # coverage feedback from our code and Pillow's
    from PIL import Image

    import app.core.decode
    import app.http.body
    import app.http.multipart
    import app.http.v2.codec
    from app.core.errors import NinServeError

MAX_PIXELS = 1_000_000  # small, so bombs are refused fast instead of decoded
BOUNDARY = b"fuzzboundary"
ROOT = Path(__file__).resolve().parent.parent


def _expected(exc: BaseException) -> bool:
    return isinstance(exc, NinServeError) and exc.status < 500


def fuzz_decode(data: bytes) -> None:
    try:
        app.core.decode.decode_image(data, 32, max_pixels=MAX_PIXELS, preview_size=32)
    except Exception as exc:
        if not _expected(exc):
            raise


def fuzz_multipart(data: bytes) -> None:
    # Byte 0: even, the usual Content-Type with BOUNDARY; odd, its upper bits give the length of
    # a Content-Type taken from the input. The body arrives in chunks of 1 to 64 bytes.
    mode = data[0] if data else 0
    content_type = b"multipart/form-data; boundary=" + BOUNDARY
    rest = data[1:]
    if mode & 1:
        size = mode >> 1
        content_type, rest = rest[:size], rest[size:]
    step = 1 + (len(rest) % 64)
    chunks = [rest[i : i + step] for i in range(0, len(rest), step)] or [b""]

    async def receive() -> dict:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", content_type)]}
    try:
        asyncio.run(app.http.multipart.read_parts(Request(scope, receive), max_files=4))
    except Exception as exc:
        if not _expected(exc):
            raise


def fuzz_codec(data: bytes) -> None:
    # Byte 0 picks the Content-Encoding and whether Inference-Header-Content-Length is sent; bytes
    # 1-2 give its value (as a number, or as raw text when bit 3 is set); the rest is the body.
    flags, length_bytes, body = data[:1], data[1:3], data[3:]
    mode = flags[0] if flags else 0
    encoding = (None, "gzip", "deflate", "identity")[mode & 3]
    length = None
    if mode & 4:
        raw = int.from_bytes(length_bytes, "little")
        length = length_bytes.decode("latin-1") if mode & 8 else str(raw)
    try:
        inflated = app.http.body.decompress(body, encoding, 1 << 20)
        app.http.v2.codec.parse_infer_request(inflated, length)
    except Exception as exc:
        if not _expected(exc):
            raise


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decode": fuzz_decode,
    "multipart": fuzz_multipart,
    "codec": fuzz_codec,
}


def seeds(target: str) -> list[bytes]:
    """Valid inputs to start from, so mutations reach past the first format check."""
    if target == "decode":
        out = []
        for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (200, 30, 90)).save(buffer, format=fmt)
            out.append(buffer.getvalue())
        return out
    if target == "multipart":
        part = (
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--" + BOUNDARY + b"--\r\n"
        )
        return [b"\x00" + part]
    doc = (
        b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[1,2,2,3],"data":[1,2,3,4,5,6,7,8,9,1,2,3]}]}'
    )
    binary = b'{"inputs":[{"name":"i","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":7}}]}'
    tail = b"\x03\x00\x00\x00abc"
    return [b"\x00\x00\x00" + doc, b"\x04" + len(binary).to_bytes(2, "little") + binary + tail]


def run_one(target: str, runs: int, extra: list[str]) -> int:
    corpus = Path(tempfile.mkdtemp(prefix=f"ninserve-fuzz-{target}-"))  # libFuzzer adds what it finds
    for i, seed in enumerate(seeds(target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=8192", *extra, str(corpus)], TARGETS[target])
    atheris.Fuzz()  # exits the process
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=[*TARGETS, "all"])
    parser.add_argument("--runs", type=int, default=10_000, help="inputs per target")
    args, extra = parser.parse_known_args()  # the rest are libFuzzer flags (-seed=1, -max_len=...)
    if args.target != "all":
        return run_one(args.target, args.runs, extra)
    for target in TARGETS:  # one process each: atheris.Fuzz() exits when done
        cmd = [sys.executable, __file__, target, "--runs", str(args.runs), *extra]
        result = subprocess.run(cmd, cwd=ROOT, check=False)
        print(f"{target}: exit {result.returncode}", flush=True)
        if result.returncode:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
