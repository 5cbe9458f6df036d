"""Figures for the model card: a confusion matrix and confidence maps of validation images.

Written by `ninserve eval --report-dir DIR` next to `eval.json`; matplotlib is a `train` extra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.evaluate import EvalReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(report: EvalReport, out: Path) -> None:
    plt = _pyplot()
    matrix = np.asarray(report.confusion, dtype=np.float64)
    normalised = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    k = len(report.classes)
    ax.set_xticks(range(k), report.classes, rotation=45, ha="right")
    ax.set_yticks(range(k), report.classes)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Validation confusion matrix (top-1 {report.top1:.2%}, n={report.count})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_confidence_maps(
    session: ort.InferenceSession,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    out: Path,
    upscale: int = 4,
) -> None:
    """One row per image: the input, then each class's map (shared colour scale per row), with
    the class score in the title, so it shows where in the image each class is seen."""
    plt = _pyplot()
    scores, maps = session.run(["scores", "confidence_maps"], {"image": images})
    k = len(classes)
    fig, axes = plt.subplots(len(images), k + 1, figsize=(1.45 * (k + 1), 1.6 * len(images)))
    for row, (img, label) in enumerate(zip(images, labels, strict=True)):
        axes[row, 0].imshow(img)
        axes[row, 0].set_title(f"true: {classes[label]}", fontsize=7)
        vmax = maps[row].max()
        for c in range(k):
            ax = axes[row, c + 1]
            # 8x8 maps drawn bilinearly over the image's extent, as the API's heatmaps are.
            ax.imshow(maps[row, c], cmap="jet", vmin=0, vmax=vmax, interpolation="bilinear")
            best = c == int(scores[row].argmax())
            ax.set_title(
                f"{classes[c]} {scores[row, c]:.2f}", fontsize=7, fontweight="bold" if best else "normal"
            )
    for ax in axes.flat:
        ax.axis("off")
    h, w = maps.shape[2:]
    fig.suptitle(
        f"Per-class confidence maps ({h}x{w}) of validation images at native size; bold: predicted class",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
