"""Modified MobileNetV3-small / -large (Li et al., EMU / Light-Former, Tables I-II).

Changes from the original MobileNetV3, as in the tables: different bottleneck
counts, (2, 1) strides that keep the width (the sequence axis), and a
multi-aspect GCAttention block (MASTER, ref. [17] of the paper) in the marked
bottlenecks. For a 48x160 input both give a 6x40x256 feature map.

The tables do not give MAGC's hyper-parameters; we use MASTER's: 8 heads
("aspects"), bottleneck ratio 1/16, fusion by addition.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# (kernel, expansion, out, SE, nonlinearity, stride, MAGC)
SMALL = (
    (3, 16, 16, True, "RE", 1, False),
    (3, 72, 24, False, "RE", 1, False),
    (3, 88, 24, False, "RE", 1, False),
    (5, 96, 40, True, "HS", 2, True),
    (5, 240, 40, True, "HS", 1, True),
    (5, 240, 40, True, "HS", 1, True),
    (5, 120, 48, True, "HS", 1, True),
    (5, 144, 48, True, "HS", 1, True),
    (5, 144, 48, True, "HS", 1, True),
    (5, 144, 48, True, "HS", 1, True),
    (5, 144, 48, True, "HS", 1, True),
    (5, 144, 48, True, "HS", 1, True),
    (5, 288, 96, True, "HS", (2, 1), True),
    (5, 576, 96, True, "HS", 1, False),
)
LARGE = (
    (3, 16, 16, False, "RE", 1, False),
    (3, 64, 24, False, "RE", 1, False),
    (3, 72, 24, False, "RE", 1, False),
    (5, 72, 40, True, "RE", (2, 1), True),
    (5, 120, 40, True, "RE", 1, True),
    (5, 120, 40, True, "RE", 1, True),
    (3, 240, 80, False, "HS", 1, True),
    (3, 200, 80, False, "HS", 1, True),
    (3, 184, 80, False, "HS", 1, True),
    (3, 184, 80, False, "HS", 1, True),
    (3, 184, 80, False, "HS", 1, True),
    (3, 184, 80, False, "HS", 1, True),
    (3, 184, 80, False, "HS", 1, True),
    (3, 184, 80, False, "HS", 1, True),
    (3, 480, 112, True, "HS", 2, True),
    (3, 672, 112, True, "HS", 1, True),
    (5, 672, 160, True, "HS", 1, True),
    (5, 960, 160, True, "HS", 1, False),
)


def _act(kind: str) -> nn.Module:
    return nn.Hardswish(inplace=True) if kind == "HS" else nn.ReLU(inplace=True)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s), inplace=True)))


class MultiAspectGCAttention(nn.Module):
    """Global-context attention with several heads ("aspects"), fused by addition."""

    def __init__(self, channels: int, *, heads: int = 8, ratio: float = 1 / 16) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} not divisible by heads {heads}")
        self.heads = heads
        self.key = nn.Conv2d(channels // heads, 1, 1)
        hidden = max(4, int(channels * ratio))
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.LayerNorm([hidden, 1, 1]), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b * self.heads, c // self.heads, h, w)
        attn = self.key(g).reshape(b * self.heads, 1, h * w).softmax(-1)  # where to look
        context = torch.bmm(g.reshape(b * self.heads, c // self.heads, h * w), attn.transpose(1, 2))
        context = context.reshape(b, c, 1, 1)
        return x + self.transform(context)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, kernel: int, exp: int, cout: int, se: bool, nl: str,
                 stride, magc: bool) -> None:
        super().__init__()
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers += [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), _act(nl)]
        layers += [nn.Conv2d(exp, exp, kernel, stride, kernel // 2, groups=exp, bias=False),
                   nn.BatchNorm2d(exp), _act(nl)]
        if se:
            layers.append(SqueezeExcite(exp))
        layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.gc = MultiAspectGCAttention(cout) if magc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.gc is not None:
            out = self.gc(out)
        return x + out if self.residual else out


class MobileNetV3(nn.Module):
    """Modified MobileNetV3 backbone from a table of bottleneck specs.

    Args:
        spec: rows of (kernel, expansion, out, SE, nonlinearity, stride, MAGC).
        in_channels: image channels (the paper uses RGB; ocrkit defaults to gray).
        out_channels: width of the final 1x1 conv (paper: 256).
        magc: enable the multi-aspect GCAttention blocks where the table marks them.
    """

    def __init__(self, *, spec, in_channels: int = 1, out_channels: int = 256,
                 magc: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 2, 1, bias=False),
                                   nn.BatchNorm2d(16), nn.Hardswish(inplace=True)]
        cin = 16
        for kernel, exp, cout, se, nl, stride, gc in spec:
            layers.append(Bottleneck(cin, kernel, exp, cout, se, nl, stride, gc and magc))
            cin = cout
        layers += [nn.Conv2d(cin, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
                   nn.Hardswish(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out_channels = out_channels
        # Tap points: the stem, the last bottleneck before each downsampling, the output.
        strides = [row[5] for row in spec]
        ends = [3 + i for i in range(len(spec)) if i + 1 < len(spec) and strides[i + 1] != 1]
        self.tap_points = {"stem": "features.2",
                           **{f"stage{k + 1}": f"features.{i}" for k, i in enumerate(ends)},
                           f"stage{len(ends) + 1}": f"features.{len(layers) - 1}"}
        self.channels_last = True  # runs on NHWC tensors (see Recognizer.forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def mobilenetv3_small(**kwargs) -> MobileNetV3:
    """Table I: 48x160 input -> 6x40x256."""
    return MobileNetV3(spec=SMALL, **kwargs)


def mobilenetv3_large(**kwargs) -> MobileNetV3:
    """Table II: 48x160 input -> 6x40x256."""
    return MobileNetV3(spec=LARGE, **kwargs)
