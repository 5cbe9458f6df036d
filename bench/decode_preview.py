"""Per-request decode cost of the benchmark images, with the overlay preview every request keeps.

    python -m bench.decode_preview [--calls 300] [--rounds 7]

Times `app.core.decode.decode_image` as the server calls it (model input 32x32, the preview settings
at their defaults) on `bench/images.py`'s 32x32 PNG and 640x480 JPEG, in this process, one
thread: the median over rounds of the mean per call, and the stored preview's size. Run it from
two checkouts (PYTHONPATH=<checkout>) to compare a change to the preview policy.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import numpy as np

from app.config import Settings
from app.core.decode import decode_image
from bench.images import make

MAX_PIXELS = 40_000_000


def server_options() -> dict[str, int]:
    """decode_image's preview arguments as the server passes them (older checkouts have fewer)."""
    defaults = Settings.model_fields
    options = {"preview_size": defaults["preview_size"].default}
    if "keep_bytes" in inspect.signature(decode_image).parameters:
        options["keep_bytes"] = defaults["preview_keep_bytes"].default
    return options


def per_call_ms(data: bytes, options: dict[str, int], calls: int, rounds: int) -> float:
    decode_image(data, 32, max_pixels=MAX_PIXELS, **options)  # warm caches
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            decode_image(data, 32, max_pixels=MAX_PIXELS, **options)
        means.append((time.perf_counter() - start) * 1000.0 / calls)
    return statistics.median(means)


def preview_bytes(data: bytes, options: dict[str, int]) -> tuple[str, int]:
    preview = decode_image(data, 32, max_pixels=MAX_PIXELS, **options).preview
    if isinstance(preview, np.ndarray):
        return "x".join(map(str, preview.shape)) + " raw", preview.nbytes
    return ("as uploaded" if preview == data else "JPEG"), len(preview)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    options = server_options()
    print(", ".join(f"{key}={value}" for key, value in options.items()))
    for name in ("png32", "jpeg"):
        data = make(name)
        ms = per_call_ms(data, options, args.calls, args.rounds)
        kind, size = preview_bytes(data, options)
        print(f"{name:6s} decode_image {ms:.3f} ms/call   preview {kind}, {size} bytes")


if __name__ == "__main__":
    main()
