"""VGG backbones: the paper's cut VGG16 (Yu & Zhang §4.2) and a fast small VGG.

The paper keeps VGG16's hyper-parameters but cuts layers off "to avoid
overfitting", and uses a pool of size (2, 3) as the last pooling layer for
single-row images. It does not say where the cut is or the pool's stride. We
read it as: keep the first ``cut`` conv layers (default 10, i.e. through the
fourth block), then a max-pool of kernel ``last_pool`` (default (2, 3)) with
stride (2, 1) and width padding, so the height halves and the width (the CTC
time axis) is kept. Both are options.
"""

from __future__ import annotations

import torch
from torch import nn

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _conv(cin: int, cout: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


class VGG(nn.Module):
    """A VGG stack: conv3x3(-BN)-ReLU layers and max-pools from a plain config.

    Args:
        config: channel counts and pools; a pool is ``"M"`` (2x2) or a tuple
            ``(kernel_h, kernel_w, stride_h, stride_w)``.
        in_channels: image channels (1 for grayscale).
        batch_norm: BatchNorm after every conv (the paper's VGG16 has none; BN
            makes small-data CPU training far more stable, so it is the default).
    """

    def __init__(self, *, config, in_channels: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            elif isinstance(item, (tuple, list)):
                kh, kw, sh, sw = item
                layers.append(nn.MaxPool2d((kh, kw), (sh, sw), padding=(0, (kw - 1) // 2)))
            else:
                layers += _conv(cin, int(item), batch_norm)
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        # Named tap points (ocrkit.models.recognizer): a VGG block ends at its pool.
        self.tap_points = {f"stage{k + 1}": f"features.{i}" for k, i in enumerate(pools)}
        if layers and not isinstance(layers[-1], nn.MaxPool2d):  # a last block with no pool
            self.tap_points[f"stage{len(pools) + 1}"] = f"features.{len(layers) - 1}"
        self.channels_last = True  # runs on NHWC tensors (see Recognizer.forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _channels(channels, count: int) -> tuple[int, ...]:
    """``channels`` as ``count`` positive ints, or a ValueError saying what is expected."""
    ok = (isinstance(channels, (tuple, list)) and len(channels) == count
          and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels))
    if not ok:
        raise ValueError(f"channels must be {count} positive integers like "
                         f"{(32, 64, 128, 256)[:count]}, not {channels!r}")
    return tuple(channels)


def vgg16_cut(*, in_channels: int = 1, cut: int = 10, last_pool=(2, 3),
              batch_norm: bool = True, width: float = 1.0) -> VGG:
    """The paper's VGG16 with only its first ``cut`` conv layers and a final
    ``last_pool`` max-pool (stride (2, 1): the width is kept). ``width`` scales
    every layer's channels (0.5: a half-width student for distillation)."""
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"width must be a number in (0, 4], not {width!r}")
    config: list = []
    convs = 0
    for item in VGG16:
        if item != "M":
            if convs == cut:
                break
            convs += 1
            item = max(1, round(item * width))
        config.append(item)
    while config and config[-1] == "M":
        config.pop()
    kh, kw = last_pool
    config.append((kh, kw, 2, 1))
    return VGG(config=config, in_channels=in_channels, batch_norm=batch_norm)


def vgg_small(*, in_channels: int = 1, channels=(32, 64, 128, 256), width_stride: int = 4,
              last_pool_height: int = 2, height_stride: int = 16,
              batch_norm: bool = True) -> VGG:
    """A fast small VGG: height /16; width /4 (default) or /8 (``width_stride=8``:
    half the frames and half the compute of the last block, for short texts).

    ``last_pool_height`` is the last max-pool's kernel height (stride 2): 4 on a
    32-px input leaves a feature map of height 1, the classic CRNN design that
    CAP replaces (bench/paper_tables.py's Table 2 baseline). ``height_stride=8``
    drops that pool: two feature rows per text row of a multi-row image, the
    geometry of the paper's VGG16 at 224 px (14 rows for 7), which row attention's
    height convolution needs (at one feature row per text row its kernel is 1).
    """
    if width_stride not in (4, 8):
        raise ValueError(f"width_stride must be 4 or 8, not {width_stride}")
    if height_stride not in (8, 16):
        raise ValueError(f"height_stride must be 8 or 16, not {height_stride}")
    c1, c2, c3, c4 = _channels(channels, 4)
    third = "M" if width_stride == 8 else (2, 1, 2, 1)
    config = [c1, "M", c2, "M", c3, c3, third, c4, c4]
    if height_stride == 16:
        config.append((last_pool_height, 1, 2, 1))
    return VGG(config=config, in_channels=in_channels, batch_norm=batch_norm)
