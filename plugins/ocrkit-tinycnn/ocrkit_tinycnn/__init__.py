"""A tiny depthwise-separable CNN backbone (height /8, width /4) for ocrkit."""

from __future__ import annotations

from torch import nn


def _separable(cin: int, cout: int, stride) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True))


class TinyCNN(nn.Module):
    def __init__(self, *, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            _separable(width, 2 * width, 2),
            _separable(2 * width, 4 * width, (2, 1)))
        self.out_channels = 4 * width

    def forward(self, x):
        return self.features(x)


def tiny_cnn(*, in_channels: int = 1, width: int = 32) -> TinyCNN:
    return TinyCNN(in_channels=in_channels, width=width)
