"""Export a trained checkpoint to the self-contained ONNX artifact the server loads.

    ninserve export --checkpoint runs/c10/checkpoint.pt --out /tmp/nin.onnx   # one file
    ninserve export --int8        # the latest run -> repository/<run>/<next version>/ (model/publish.py)

The graph takes uint8 RGB pixels [N, H, W, 3] and returns `scores` (softmax) and
`confidence_maps` (the last mlpconv's per-class maps), with BatchNorm folded into the convs and
normalisation inside, so any client that can send pixels gets identical results. Export checks
the graph with `onnx.checker`, compares ONNX Runtime against PyTorch and refuses to write an
artifact that does not match. Each step prints a line as it starts: the whole takes tens of seconds.

`val_top1` here is the training loop's figure (PyTorch, bf16); `ninserve eval --write-metadata`
replaces it with the ONNX Runtime figure it reproduces, as `make artifacts` does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from model.nin import NiN, NiNConfig, count_parameters, fold_batchnorm
from model.train import Normalize, ema_weights

INPUT_NAME = "image"
OUTPUT_NAMES = ("scores", "confidence_maps")
OPSET = 18
PARITY_ATOL = 1e-4  # ORT vs PyTorch, fp32, on scores and on maps


class ServedNiN(nn.Module):
    """uint8 NHWC pixels -> (softmax scores [N, K], confidence maps [N, K, H/4, W/4]).

    With `flip_tta` the maps are the average of the maps of the image and of its mirror image
    (mirrored back), so logits = mean(maps) stays exact and maps still line up with the input.
    """

    def __init__(self, net: NiN, normalize: Normalize, flip_tta: bool = False) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.flip_tta = flip_tta

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(image)
        maps = self.net.forward_features(x)  # [N, K, h, w]
        if self.flip_tta:
            maps = 0.5 * (maps + self.net.forward_features(x.flip(3)).flip(3))
        scores = torch.softmax(self.net.forward_head(maps), dim=1)
        return scores, maps


@dataclass
class ExportResult:
    path: Path
    model_version: str
    max_abs_diff_scores: float
    max_abs_diff_maps: float


def load_checkpoint(path: Path, weights: str = "ema") -> tuple[NiN, dict]:
    """Rebuild the trained NiN (BN folded) from a training checkpoint; `weights` is ema or raw."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = state["config"]
    net = NiN(NiNConfig(num_classes=len(cfg["classes"]), dropout=cfg["dropout"]))
    net.load_state_dict(ema_weights(state["ema"]) if weights == "ema" else state["model"])
    return fold_batchnorm(net.eval()), state


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parity(model: ServedNiN, onnx_path: Path, seed: int = 0) -> tuple[float, float]:
    """Max abs difference between PyTorch and ONNX Runtime on random pixels at two shapes."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst_scores, worst_maps = 0.0, 0.0
    for shape in [(3, 32, 32, 3), (2, 48, 64, 3), (1, 32, 32, 3)]:
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        with torch.no_grad():
            ref_scores, ref_maps = (t.numpy() for t in model(torch.from_numpy(pixels)))
        scores, maps = session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixels})
        worst_scores = max(worst_scores, float(np.abs(scores - ref_scores).max()))
        worst_maps = max(worst_maps, float(np.abs(maps - ref_maps).max()))
    return worst_scores, worst_maps


def _step(what: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:5.1f}s] {what}", flush=True)


def export(
    checkpoint: Path, out: Path, weights: str = "ema", flip_tta: bool = False, val_top1: float | None = None
) -> ExportResult:
    started = time.perf_counter()
    _step(f"loading {checkpoint} ({weights} weights)", started)
    net, state = load_checkpoint(checkpoint, weights)
    cfg = state["config"]
    model = ServedNiN(net, Normalize(state["mean"], state["std"]), flip_tta).eval()
    example = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    batch, height, width = torch.export.Dim("batch"), torch.export.Dim("height"), torch.export.Dim("width")

    _step(f"tracing and converting to ONNX (torch.export, opset {OPSET})", started)
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.onnx"
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"image": {0: batch, 1: height, 2: width}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        assert program is not None  # dynamo=True always returns the program
        program.save(str(raw_path), external_data=False)
        proto = onnx.load(str(raw_path))
    # torch.onnx annotates every node with its Python stack trace (file paths, line numbers): drop
    # them, so model_version (a hash of the graph) depends on the model, not on the checkout.
    for node in proto.graph.node:
        del node.metadata_props[:]

    metrics = state.get("metrics", {})
    source = "given to export"
    if val_top1 is None:
        val_top1 = metrics.get("val_acc_ema" if weights == "ema" else "val_acc")
        source = "ninserve train: PyTorch bf16 evaluation"
    model_version = hashlib.sha256(proto.graph.SerializeToString()).hexdigest()[:12]
    meta = {
        "classes": json.dumps(cfg["classes"]),
        "native_size": str(cfg["image_size"]),
        "dataset": Path(cfg["data"]).name,
        "val_top1": f"{val_top1:.4f}" if val_top1 is not None else "",
        "val_top1_source": source if val_top1 is not None else "",
        "val_split": json.dumps({"val_size": cfg["val_size"], "seed": cfg["seed"]}),
        "model_version": model_version,
        "mean": json.dumps(state["mean"]),
        "std": json.dumps(state["std"]),
        "architecture": "NiN (Lin et al. 2013), CIFAR-10 variant, BatchNorm folded",
        "parameters": str(count_parameters(net)),
        "epochs": str(state.get("prior_epochs", 0) + state["epoch"]),
        "weights": weights,
        "flip_tta": str(flip_tta).lower(),
        "producer_command": " ".join(["ninserve", *sys.argv[1:]]) if sys.argv else "",
        "export_date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_commit": _git_commit(),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "ninserve NiN: uint8 RGB [N,H,W,3] -> scores [N,K], confidence_maps [N,K,H/4,W/4]"
    _step("checking the graph (onnx.checker)", started)
    onnx.checker.check_model(proto, full_check=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_suffix(".onnx.tmp")
    onnx.save(proto, str(staged))
    _step("comparing ONNX Runtime with PyTorch", started)
    diff_scores, diff_maps = parity(model, staged)
    print(f"parity vs PyTorch: max|d scores| = {diff_scores:.2e}, max|d maps| = {diff_maps:.2e}")
    if diff_scores > PARITY_ATOL or diff_maps > PARITY_ATOL:
        staged.unlink()
        raise SystemExit(f"export refused: ONNX Runtime differs from PyTorch by more than {PARITY_ATOL}")
    os.replace(staged, out)
    _step(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), model_version {model_version}", started)
    return ExportResult(out, model_version, diff_scores, diff_maps)
