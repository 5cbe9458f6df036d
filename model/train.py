"""Train NiN on CIFAR-10 (or any `<split>/<class>/<image>` set) with a resumable checkpoint.

    ninserve train --data ../shared/data/cifar10-jpeg-train.zip --name cifar   # -> runs/cifar/
    ninserve train --name cifar --resume                     # continue after an interruption

Every epoch appends a line to `metrics.jsonl`, redraws `training_curve.png` and overwrites the one
`checkpoint.pt` (weights, EMA weights, optimiser state, config, data split facts), so a run can
be stopped at any epoch boundary and resumed on another machine with the same result.

Recipe: SGD with Nesterov momentum, linear warm-up then linear decay to zero, label smoothing,
weight decay on conv weights only, an EMA of the weights, random crop (4 px reflect padding) and
horizontal flip (and, with --cutout N, one blanked N x N square per image) done as batched tensor
ops on the training device. On CPU it runs in bf16 autocast
with channels_last (AVX512-BF16); on CUDA in bf16 autocast with the data held on the GPU.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from model.config import TrainConfig
from model.data import channel_stats, load_dataset, split_train_val
from model.errors import DataError
from model.nin import NiN, NiNConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return torch.device(name)


class Normalize(nn.Module):
    """uint8 NHWC RGB -> float NCHW standardised with the training set's channel statistics.

    Part of the exported graph too, so every client gets identical preprocessing."""

    scale: torch.Tensor  # buffers, registered in __init__
    shift: torch.Tensor

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-add
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float()  # [N, H, W, 3] -> [N, 3, H, W]
        return x * self.scale + self.shift


def augment(batch: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with reflect padding and random horizontal flip on a uint8 NHWC batch."""
    n, h, w, _ = batch.shape
    padded = nn.functional.pad(batch.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="reflect")
    padded = padded.permute(0, 2, 3, 1)  # [N, H+2p, W+2p, 3]
    dev = batch.device
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
    rows = oy[:, None] + torch.arange(h, device=dev)  # [N, H]
    cols = ox[:, None] + torch.arange(w, device=dev)  # [N, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.to(torch.uint8)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Blank one size x size square per normalised NCHW image (DeVries & Taylor 2017): 0 after
    normalisation is the mean colour. Centres fall anywhere, so squares are clipped at the edges."""
    n, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (n,), generator=generator).to(dev)
    cx = torch.randint(0, w, (n,), generator=generator).to(dev)
    top = (cy - size // 2)[:, None]
    left = (cx - size // 2)[:, None]
    rows, cols = torch.arange(h, device=dev)[None, :], torch.arange(w, device=dev)[None, :]
    in_rows = (rows >= top) & (rows < top + size)  # [N, H]
    in_cols = (cols >= left) & (cols < left + size)  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for n, p in model.named_parameters() if p.ndim == 4]
    no_decay = [p for n, p in model.named_parameters() if p.ndim != 4]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(
    net: nn.Module,
    norm: Normalize,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of `net` on uint8 NHWC `images`."""
    net.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(labels), batch_size):
        x = norm(images[start : start + batch_size].to(device))
        y = labels[start : start + batch_size].to(device)
        with _autocast(device):
            logits = net(x.contiguous(memory_format=torch.channels_last)).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return correct / len(labels), loss_sum / len(labels)


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def ema_weights(ema_state: dict) -> dict:
    """AveragedModel's state dict ('module.'-prefixed, plus its counter) -> the net's own."""
    prefix = "module."
    return {k[len(prefix) :]: v for k, v in ema_state.items() if k.startswith(prefix)}


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _drop_metrics_after(metrics_path: Path, epoch: int) -> None:
    """Forget log lines of epochs the checkpoint does not hold.

    A run stopped after an epoch's metrics were written but before its checkpoint was would
    otherwise log that epoch twice once resumed."""
    if not metrics_path.exists():
        return
    lines = metrics_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["epoch"] <= epoch]
    if len(kept) < len(lines):
        metrics_path.write_text("".join(kept))


def plot_curves(metrics_path: Path, out_path: Path) -> None:
    """Loss and accuracy per epoch as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train (smoothed targets)")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], label="val")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], label="train (augmented)")
    ax_acc.plot(epochs, [r["val_acc"] for r in rows], label="val")
    ax_acc.plot(epochs, [r["val_acc_ema"] for r in rows], label="val (EMA weights)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def _check_split(config: TrainConfig, images: int, left: int | None = None) -> None:
    """Nothing left to train on is a clear error naming the flags, not a ZeroDivisionError later."""
    if config.val_size >= images or left == 0:
        limit = f" (--max-images {config.max_images})" if config.max_images else ""
        raise DataError(
            f"--val-size {config.val_size} holds out all {images} training images{limit}: "
            f"give --val-size below {images} (one per class at least) or more images"
        )


def train(config: TrainConfig, resume: bool = False, stop_after: int | None = None) -> dict:
    """Run (or continue) training; returns the last epoch's metrics.

    `stop_after` ends the run after that epoch with the checkpoint ready for `--resume`, to fit a
    long schedule into several shorter sittings."""
    if not config.run_dir:  # never the shipped model/training: a new untracked run
        from model.places import RUNS, run_name

        config.run_dir = str(RUNS / run_name())
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    metrics_path = run_dir / "metrics.jsonl"
    state = None
    if resume:
        if not ckpt_path.exists():
            raise SystemExit(f"--resume: no checkpoint at {ckpt_path}")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        config = TrainConfig(
            **{
                **state["config"],
                "run_dir": config.run_dir,
                "device": config.device,
                "data": config.data or state["config"]["data"],
            }
        )
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)

    if config.max_images:
        _check_split(config, config.max_images)  # before minutes of decoding, where it can be known
    t0 = time.perf_counter()
    data = load_dataset(Path(config.data), "train", config.image_size)
    if config.max_images and config.max_images < len(data):
        keep = np.random.default_rng(config.seed).permutation(len(data))[: config.max_images]
        data = data.subset(np.sort(keep))
    _check_split(config, len(data))
    train_idx, val_idx = split_train_val(data.labels, config.val_size, config.seed)
    _check_split(config, len(data), left=len(train_idx))
    config.classes = data.classes
    # A warm restart reads its starting weights once; on --resume the checkpoint has them already.
    prior = None
    if config.init_from and not state:
        prior = torch.load(config.init_from, map_location="cpu", weights_only=False)
    if start := state or prior:
        mean, std = start["mean"], start["std"]
    else:
        mean, std = channel_stats(data.images[train_idx])
    # Epochs of earlier cycles this run builds on (init_from), so logs and metadata count on.
    if state:
        prior_epochs = state.get("prior_epochs", 0)
    else:
        prior_epochs = prior.get("prior_epochs", 0) + prior["epoch"] if prior else 0
    print(
        f"data: {len(train_idx)} train / {len(val_idx)} val images, {len(data.classes)} classes, "
        f"loaded in {time.perf_counter() - t0:.1f}s; device {device}"
    )

    # Everything lives on the training device as uint8: ~140 MB for CIFAR-10.
    train_x = torch.from_numpy(data.images[train_idx]).to(device)
    train_y = torch.from_numpy(data.labels[train_idx]).to(device)
    val_x = torch.from_numpy(data.images[val_idx])
    val_y = torch.from_numpy(data.labels[val_idx])

    net = NiN(NiNConfig(num_classes=len(data.classes), dropout=config.dropout)).to(device)
    if prior:
        net.load_state_dict(ema_weights(prior["ema"]))
        print(f"initialised from {config.init_from} (EMA weights after {prior_epochs} epochs)")
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub omits it
    norm = Normalize(mean, std).to(device)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    optimizer = torch.optim.SGD(
        _param_groups(net, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=True
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    generator = torch.Generator().manual_seed(config.seed)
    start_epoch = 0
    if state:
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])  # dropout masks continue as if never stopped
        start_epoch = state["epoch"]
        _drop_metrics_after(metrics_path, state["metrics"]["epoch"])
        print(f"resumed from {ckpt_path} at epoch {start_epoch}/{config.epochs}")
    elif metrics_path.exists() and not prior:
        metrics_path.unlink()  # a new run; a warm restart appends to the log it continues

    steps_per_epoch = math.ceil(len(train_y) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(config.warmup_epochs * steps_per_epoch)
    last: dict = state["metrics"] if state else {}
    last_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    for epoch in range(start_epoch, last_epoch):
        net.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(len(train_y), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for i in bar:
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup_steps, config.lr)
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            x = norm(augment(train_x[idx], generator))
            if config.cutout:
                x = cutout(x, config.cutout, generator)
            x = x.contiguous(memory_format=torch.channels_last)
            y = train_y[idx]
            with _autocast(device):
                logits = net(x)
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update_parameters(net)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4f}")
        train_seconds = time.perf_counter() - epoch_start
        val_acc, val_loss = evaluate(net, norm, val_x, val_y, device)
        val_acc_ema, val_loss_ema = evaluate(ema.module, norm, val_x, val_y, device)
        last = {
            "epoch": prior_epochs + epoch + 1,
            "train_loss": loss_sum.item() / len(train_y),
            "train_acc": correct.item() / len(train_y),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "val_loss_ema": val_loss_ema,
            "val_acc_ema": val_acc_ema,
            "lr_end": optimizer.param_groups[0]["lr"],
            "epoch_seconds": round(train_seconds, 1),
        }
        print(json.dumps(last), flush=True)
        with metrics_path.open("a") as f:
            f.write(json.dumps(last) + "\n")
        _save_atomic(
            {
                "config": asdict(config),
                "epoch": epoch + 1,
                "prior_epochs": prior_epochs,
                "mean": mean,
                "std": std,
                "model": net.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "metrics": last,
            },
            ckpt_path,
        )
        plot_curves(metrics_path, run_dir / "training_curve.png")
    return last
