"""Network-in-Network (Lin, Chen, Yan 2013), the CIFAR-10 variant.

Three mlpconv blocks (a spatial conv followed by two 1x1 convs, ReLU after each) with max-pooling
and dropout between them. The last block emits one map per class and global average pooling of
each map is that class's logit, so the model is split timm-style into ``forward_features``
(the per-class confidence maps) and ``forward_head`` (GAP).

BatchNorm follows every conv during training for speed; ``fold_batchnorm`` merges it into the
convs so the exported graph is plain NiN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NiNConfig:
    num_classes: int = 10  # K: maps emitted by the last mlpconv, one per class
    in_channels: int = 3  # RGB
    dropout: float = 0.5  # after blocks 1 and 2, as in the paper
    batchnorm: bool = True  # BN after each conv for training; folded away at export


# (kernel, out_channels) of each conv in each mlpconv block; the last 1x1 of block 3 is K.
_BLOCKS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((5, 192), (1, 160), (1, 96)),
    ((5, 192), (1, 192), (1, 192)),
    ((3, 192), (1, 192)),
)


def _conv_unit(in_ch: int, out_ch: int, kernel: int, batchnorm: bool) -> list[nn.Module]:
    """conv (same padding) -> [BN] -> ReLU."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=not batchnorm)
    layers: list[nn.Module] = [conv]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return layers


class NiN(nn.Module):
    """Fully convolutional NiN: any input of H, W >= 32 gives maps of H/4 x W/4."""

    def __init__(self, config: NiNConfig = NiNConfig()) -> None:
        super().__init__()
        self.config = config
        bn = config.batchnorm
        layers: list[nn.Module] = []
        ch = config.in_channels
        for block_index, block in enumerate(_BLOCKS):
            for kernel, out_ch in block:
                layers += _conv_unit(ch, out_ch, kernel, bn)
                ch = out_ch
            if block_index < 2:
                # 3x3/2 max-pool halves H and W: 32 -> 16 -> 8.
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
                layers.append(nn.Dropout(config.dropout))
        layers += _conv_unit(ch, config.num_classes, 1, bn)  # one map per class
        self.features = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW images [N, 3, H, W] -> per-class confidence maps [N, K, H/4, W/4]."""
        return self.features(x)

    def forward_head(self, maps: torch.Tensor) -> torch.Tensor:
        """Global average pooling: maps [N, K, h, w] -> logits [N, K]."""
        return maps.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def fold_batchnorm(model: NiN) -> NiN:
    """Return an eval-mode copy of ``model`` with every BatchNorm merged into the conv before it.

    y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta is again a conv with
    W' = W * s and b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
    """
    folded = NiN(NiNConfig(**{**model.config.__dict__, "batchnorm": False}))
    src = list(model.features)
    dst_convs = [m for m in folded.features if isinstance(m, nn.Conv2d)]
    conv_index = 0
    for i, layer in enumerate(src):
        if not isinstance(layer, nn.Conv2d):
            continue
        weight = layer.weight.detach().clone()
        bias = layer.bias.detach().clone() if layer.bias is not None else torch.zeros(weight.shape[0])
        nxt = src[i + 1] if i + 1 < len(src) else None
        if isinstance(nxt, nn.BatchNorm2d):
            # NiN's BatchNorms track running statistics (the default), so the folding has them.
            assert nxt.running_mean is not None and nxt.running_var is not None
            scale = nxt.weight / torch.sqrt(nxt.running_var + nxt.eps)
            weight = weight * scale[:, None, None, None]
            bias = (bias - nxt.running_mean) * scale + nxt.bias
        dst = dst_convs[conv_index]
        assert dst.bias is not None  # the folded NiN's convs have biases (batchnorm=False)
        dst.weight.copy_(weight)
        dst.bias.copy_(bias)
        conv_index += 1
    return folded.eval()
