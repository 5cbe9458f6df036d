"""What every peer server shares: the ONNX Runtime session options, the preprocessing and the
result shape. Each peer imports this file, so the servers differ only in the framework around it.

It mirrors ninserve's policy (app/core/decode.py, app/core/engine.py) on purpose rather than importing it:
the peers run in their own venvs without ninserve installed, and a peer must not get ninserve's
code paths for free. Preprocessing: Pillow decode -> first frame -> EXIF transpose -> RGB (alpha
over white) -> bicubic resize (reducing_gap 3) to 32x32 unless already 32x32 -> uint8 HWC; a large
JPEG is decoded at reduced scale (Pillow's `draft`, to >= 3x the target). Session: full graph
optimisation, `BENCH_THREADS` intra-op threads, one inter-op thread, no spinning (as ninserve).

Settings come from the environment so that bench/run.py configures every peer the same way:
BENCH_MODEL, BENCH_PORT, BENCH_THREADS, BENCH_MAX_BATCH, BENCH_MAX_WAIT_MS.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]
MODEL = Path(os.environ.get("BENCH_MODEL", ROOT / "model" / "artifacts" / "nin-cifar10.onnx"))
PORT = int(os.environ.get("BENCH_PORT", "8101"))
THREADS = int(os.environ.get("BENCH_THREADS", "0"))  # 0: ORT's default, one per physical core
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "32"))  # ninserve's default max_batch_size
MAX_WAIT_MS = float(os.environ.get("BENCH_MAX_WAIT_MS", "0"))  # ninserve's default max_batch_wait_ms
HOST = "127.0.0.1"
SIZE = 32
TOP_K = 5


def make_session(path: Path = MODEL, threads: int = THREADS) -> ort.InferenceSession:
    """The same session options as ninserve's Engine (CPU)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def class_names(session: ort.InferenceSession) -> list[str]:
    return [str(c) for c in json.loads(session.get_modelmeta().custom_metadata_map["classes"])]


def preprocess(data: bytes) -> np.ndarray:
    """Image bytes -> uint8 [32, 32, 3] RGB, the ninserve policy for ordinary 8-bit images."""
    with Image.open(io.BytesIO(data)) as img:
        return preprocess_image(img)


def preprocess_image(img: Image.Image) -> np.ndarray:
    """An opened (lazy) Pillow image -> uint8 [32, 32, 3]: for frameworks that open it themselves."""
    if img.format == "JPEG":
        img.draft(None, (3 * SIZE, 3 * SIZE))
    img.seek(0)
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and img.has_transparency_data):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    rgb = img.convert("RGB")
    if rgb.size != (SIZE, SIZE):
        rgb = rgb.resize((SIZE, SIZE), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(rgb, dtype=np.uint8)


def run_batch(session: ort.InferenceSession, pixels: list[np.ndarray]) -> np.ndarray:
    """[N] x uint8 [32, 32, 3] -> scores float32 [N, K]; the maps are computed but not returned
    (ninserve computes them too: one graph, both outputs)."""
    scores, _maps = session.run(None, {"image": np.stack(pixels)})
    _STATS.add(len(pixels))
    return scores


class _BatchStats:
    """Prints `bench-batches calls=.. images=.. max=..` to stderr at most once a second, so the
    log shows whether the framework's batching actually formed batches (bench/run.py reads it)."""

    def __init__(self) -> None:
        self.calls = self.images = self.largest = 0
        self._last = 0.0

    def add(self, n: int) -> None:
        self.calls, self.images, self.largest = self.calls + 1, self.images + n, max(self.largest, n)
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            print(
                f"bench-batches calls={self.calls} images={self.images} max={self.largest}", file=sys.stderr
            )


_STATS = _BatchStats()


def result(scores: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """One image's scores [K] -> {"scores": {label: p}, "top": [{label, index, score}] x 5}."""
    values = [float(v) for v in scores]
    order = np.argsort(scores)[::-1][:TOP_K]
    return {
        "scores": dict(zip(classes, values, strict=True)),
        "top": [{"label": classes[i], "index": int(i), "score": values[i]} for i in order],
    }
