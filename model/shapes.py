"""A tiny dataset to try training on your own folders: filled circles and squares of random
colours on dark backgrounds, as `<split>/<class>/<image>.png` (what `ninserve train --data` reads).

    python -m model.shapes /tmp/ex/data              # 12 circles and 12 squares, 32x32, in train/
    python -m model.shapes DIR --per-class 100 --size 48

Deterministic for a seed, Pillow only (no torch), so the worked example in docs/repository.md
and its test (tests/model/test_worked_example.py) run from a fresh clone without any download.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square")


def draw(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape of a random bright colour, random size and place, on a random dark background."""
    background = tuple(int(v) for v in rng.integers(0, 80, 3))
    colour = tuple(int(v) for v in rng.integers(140, 256, 3))
    img = Image.new("RGB", (size, size), background)
    side = int(rng.integers(size // 3, size * 3 // 4))
    x, y = (int(v) for v in rng.integers(0, size - side, 2))
    box = (x, y, x + side, y + side)
    pen = ImageDraw.Draw(img)
    if kind == "circle":
        pen.ellipse(box, fill=colour)
    else:
        pen.rectangle(box, fill=colour)
    return img


def make(root: Path, per_class: int = 12, size: int = 32, split: str = "train", seed: int = 0) -> int:
    """Write `per_class` images of each class under root/split/<class>/; returns how many."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = root / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(kind, size, rng).save(folder / f"{kind}-{i:02d}.png")
    return per_class * len(CLASSES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="where to write <split>/<class>/<image>.png")
    parser.add_argument("--per-class", type=int, default=12, help="images of each class")
    parser.add_argument("--size", type=int, default=32, help="side of each image in pixels")
    parser.add_argument("--seed", type=int, default=0, help="the same images for the same seed")
    args = parser.parse_args(argv)
    count = make(args.root, args.per_class, args.size, seed=args.seed)
    print(f"{count} images in {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
