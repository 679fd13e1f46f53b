"""XResNet1D: a 1-D ResNet with the "Bag of Tricks" ResNet-D tweaks (He et al., CVPR 2019).

The tweaks: a stem of three convolutions instead of one wide one; in a downsampling shortcut an average pool does the
striding so the 1x1 convolution sees every sample; the last BatchNorm of each residual branch starts at gamma = 0, so
every block is the identity (plus its shortcut) at initialisation and a deep net trains like a shallow one at first.
Kernel size 5 and the concat max+avg pooling head follow Strodthoff et al.'s PTB-XL benchmark (xresnet1d50).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from eee_ray.models.base import DownstreamModel


@dataclass(frozen=True)
class XResNetConfig:
    layers: tuple[int, ...] = (3, 4, 6, 3)      # bottleneck blocks per stage (ResNet-50)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # bottleneck width per stage
    stem: tuple[int, ...] = (32, 32, 64)        # channels of the three stem convolutions
    expansion: int = 4
    kernel_size: int = 5
    head_dropout: float = 0.5
    window: int = 250                           # 2.5 s at 100 Hz (paper section 4.3)


PRESETS = {
    "paper": XResNetConfig(),
    "tiny": XResNetConfig(layers=(1, 1, 1, 1), widths=(8, 16, 16, 32), stem=(8, 8, 16)),
}


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, act: bool = True, zero_bn: bool = False) -> nn.Sequential:
    """Conv1d (no bias) + BatchNorm (+ ReLU); ``zero_bn`` starts the BN scale at zero."""
    bn = nn.BatchNorm1d(c_out)
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False), bn]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """1x1 reduce -> k conv (strided) -> 1x1 expand with zero-init BN; ResNet-D shortcut (avg pool, then 1x1 conv)."""

    def __init__(self, c_in: int, width: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        c_out = width * expansion
        self.convs = nn.Sequential(
            conv_bn(c_in, width, 1),
            conv_bn(width, width, kernel, stride=stride),
            conv_bn(width, c_out, 1, act=False, zero_bn=True),
        )
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(stride, ceil_mode=True))
        if c_in != c_out:
            shortcut.append(conv_bn(c_in, c_out, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)  # empty Sequential is the identity
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


class XResNet1D(DownstreamModel):
    """Stem (3 convs, max pool) -> 4 stages of bottlenecks -> concat(max, avg) pool = features -> BN, dropout, linear."""

    def __init__(self, n_leads: int, n_classes: int, cfg: XResNetConfig = XResNetConfig()):
        super().__init__()
        self.n_leads, self.window, self.cfg = n_leads, cfg.window, cfg
        k = cfg.kernel_size
        chans = (n_leads, *cfg.stem)
        stem = [conv_bn(chans[i], chans[i + 1], k, stride=2 if i == 0 else 1) for i in range(len(cfg.stem))]
        self.stem = nn.Sequential(*stem, nn.MaxPool1d(3, stride=2, padding=1))
        blocks: list[nn.Module] = []
        c_in = cfg.stem[-1]
        for stage, (n_blocks, width) in enumerate(zip(cfg.layers, cfg.widths)):
            for b in range(n_blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(Bottleneck(c_in, width, cfg.expansion, k, stride))
                c_in = width * cfg.expansion
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = 2 * c_in
        self.head = nn.Sequential(nn.BatchNorm1d(self.feature_dim), nn.Dropout(cfg.head_dropout),
                                  nn.Linear(self.feature_dim, n_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.blocks(self.stem(x))
        return torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)
