"""Training hyperparameters in one place, with units and reasons.

Kept apart from the training code so the `ninserve` parser can offer them as flags without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    data: str = "../shared/data/cifar10-jpeg-train.zip"  # CIFAR python dir, image folder or zip
    # checkpoint.pt, metrics.jsonl, training_curve.png; "": runs/<name>/, untracked (.gitignore),
    # so a run never replaces the shipped model/training files unless it is asked to
    run_dir: str = ""
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


# `ninserve train --help`: one line per flag (the field comments above say why).
HELP = {
    "data": "training data: a CIFAR-10 python folder, or a folder or zip of <split>/<class>/<image>",
    "run_dir": "where checkpoint.pt, metrics.jsonl and training_curve.png go (default: runs/NAME/)",
    "epochs": "epochs in the whole schedule; the learning rate reaches zero at the end of the last",
    "batch_size": "images per step",
    "lr": "peak learning rate after warm-up, for --batch-size 128 (scale it linearly)",
    "warmup_epochs": "epochs of linear learning-rate ramp from 0",
    "momentum": "SGD momentum",
    "weight_decay": "L2 on conv weights (BatchNorm parameters and biases are exempt)",
    "label_smoothing": "cross-entropy label smoothing",
    "dropout": "dropout after mlpconv blocks 1 and 2",
    "cutout": "blank one square of this side per training image (0: off)",
    "ema_decay": "decay per step of the weights' exponential moving average (exported by default)",
    "val_size": "images held out from the training data for validation, stratified, fixed by --seed",
    "seed": "seed of the split, the initialisation and the data order",
    "image_size": "training resolution (the model's native size)",
    "device": "auto, cpu or cuda",
    "init_from": "a checkpoint whose EMA weights start this run (a warm restart)",
    "max_images": "train on a fixed random subset of this many images (0: all)",
}
