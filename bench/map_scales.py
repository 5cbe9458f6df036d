"""How often each map normalisation lets a weak class hold the reddest spot, on real images.

    python -m bench.map_scales --data ../shared/data/cifar10-jpeg-train.zip [--images 4000]

Runs the shipped model (ONNX Runtime, CPU) at 32x32 on a random sample of the training images
and counts the misleading cases: the top class scores at least 0.8, and on the shared logit scale
(`normalize=global`) the map with the highest value belongs to a class scored under 0.05. For
those it prints, per bounded scale of app/core/maps.py, how often some class under 0.05 reaches the
top class's highest colour or comes within 0.02 of it. docs/api.md quotes the result.
"""

from __future__ import annotations

import argparse
import zipfile

import numpy as np
import onnxruntime as ort

from app.config import DEFAULT_MODEL_PATH
from app.core.decode import decode_rgb
from app.core.maps import map_values

TOP, WEAK, TIE = 0.8, 0.05, 0.02
CHUNK = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a zip of <split>/<class>/<image> files")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    session = ort.InferenceSession(str(DEFAULT_MODEL_PATH), providers=["CPUExecutionProvider"])
    archive = zipfile.ZipFile(args.data)
    names = [n for n in archive.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png"))]
    picked = np.random.default_rng(args.seed).choice(len(names), min(args.images, len(names)), replace=False)
    names = [names[i] for i in picked]
    outshone = {"posterior": 0, "weighted": 0}
    cases = 0
    for start in range(0, len(names), CHUNK):
        chunk = names[start : start + CHUNK]
        batch = np.stack([decode_rgb(archive.read(name), 32) for name in chunk])
        all_scores, all_maps = session.run(["scores", "confidence_maps"], {"image": batch})
        for scores, maps in zip(all_scores, all_maps, strict=True):
            top = int(scores.argmax())
            reddest = int(maps.reshape(len(scores), -1).max(axis=1).argmax())
            if scores[top] < TOP or scores[reddest] >= WEAK:
                continue
            cases += 1
            weak = scores < WEAK
            for scale in outshone:
                peaks = map_values(maps, scale).reshape(len(scores), -1).max(axis=1)
                outshone[scale] += bool(peaks[weak].max() >= peaks[top] - TIE)
    print(f"{len(names)} images, {cases} misleading on the logit scale ({100 * cases / len(names):.1f} %)")
    for scale, count in outshone.items():
        share = 100 * count / cases if cases else 0.0
        print(f"  {scale:9s}: a class under {WEAK} reaches the top colour in {count} ({share:.1f} %)")


if __name__ == "__main__":
    main()
