"""Training hyperparameters in one place, with units and reasons.

Kept apart from the training code so the `ninserve` parser can offer them as flags without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    data: str = "../shared/data/cifar10-jpeg-train.zip"  # CIFAR python dir, image folder or zip
    run_dir: str = "model/training"  # checkpoint.pt, metrics.jsonl, training_curve.png
    epochs: int = 40  # total schedule; the LR reaches zero at the end of the last one
    batch_size: int = 128
    lr: float = 0.1  # peak LR after warm-up, for batch_size 128 (scale linearly)
    warmup_epochs: float = 2.0  # linear ramp from 0 avoids early BN/large-LR blow-ups
    momentum: float = 0.9
    weight_decay: float = 5e-4  # conv weights only; BN affine params and biases are exempt
    label_smoothing: float = 0.1
    dropout: float = 0.5  # paper's value, after mlpconv blocks 1 and 2
    cutout: int = 0  # >0: blank one square of this side per training image (regularises; 0: off)
    ema_decay: float = 0.999  # per step; ~1000-step (~3 epoch) horizon
    val_size: int = 5000  # held out from the training data, stratified, fixed by seed
    seed: int = 0
    image_size: int = 32  # native training resolution
    device: str = "auto"  # auto | cpu | cuda
    # A checkpoint whose EMA weights start this run's schedule instead of random init: a second
    # warm-restart cycle that builds on a finished run (its epochs are counted on from there).
    init_from: str = ""
    max_images: int = 0  # >0: train on a fixed random subset of N images (smoke tests)
    classes: list[str] = field(default_factory=list)  # filled from the data
