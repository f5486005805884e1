"""ResNet-31 as used by SAR / MASTER-style recognizers (layers 1, 2, 5, 3).

Height /8 and width /4: two 2x2 pools, then a (2, 1) pool, so the CTC time axis
keeps a quarter of the input width.
"""

from __future__ import annotations

import torch
from torch import nn


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.down is None else self.down(x)))


class ResNet31(nn.Module):
    """ResNet-31 backbone.

    Args:
        in_channels: image channels.
        channels: widths of the stem (2) and of the four stages.
        layers: residual blocks per stage.
    """

    def __init__(self, *, in_channels: int = 1, channels=(64, 128, 256, 256, 512, 512),
                 layers=(1, 2, 5, 3)) -> None:
        super().__init__()
        s1, s2, c1, c2, c3, c4 = channels
        self.stem = nn.Sequential(_cbr(in_channels, s1), _cbr(s1, s2))
        stages, cin = [], s2
        pools = [nn.MaxPool2d(2, 2), nn.MaxPool2d(2, 2), nn.MaxPool2d((2, 1), (2, 1)), None]
        for width, count, pool in zip((c1, c2, c3, c4), layers, pools):
            blocks: list[nn.Module] = [] if pool is None else [pool]
            for _ in range(count):
                blocks.append(BasicBlock(cin, width))
                cin = width
            blocks.append(_cbr(width, width))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        self.tap_points = {"stem": "stem", **{f"stage{k + 1}": f"stages.{k}" for k in range(4)}}
        self.channels_last = True  # runs on NHWC tensors (see Recognizer.forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def resnet31(**kwargs) -> ResNet31:
    return ResNet31(**kwargs)
