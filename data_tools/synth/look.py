"""The look of the samples: per-image random appearance settings.

Both the renderer (size, spacing, grey levels, weight, paper, box lines) and the
degradations (rotation, skew, blur, noise) draw from these ranges; they live here,
below both, so neither has to reach into the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]


@dataclass(frozen=True)
class Appearance:
    """Per-image random appearance; each range is sampled uniformly per image."""

    size_jitter: float = 0.15  # font size shrinks by up to this fraction
    spacing: Range = (0.0, 0.0)  # extra space between characters, x font size
    background: Range = (200, 255)  # paper grey level
    ink: Range = (0, 70)  # text grey level
    y_jitter: float = 0.5  # vertical jitter, fraction of the free space in a row
    rotate: float = 0.0  # max |degrees|
    skew: float = 0.0  # max |horizontal shear|
    blur: float = 0.0  # max Gaussian blur radius (px)
    noise: float = 0.0  # max Gaussian noise sigma (grey levels)
    line_width: Range = (1, 2)  # box-line thickness (px)
    line_ink: Range = (0, 90)  # box-line grey level
    weight: Range = (-0.5, 0.7)  # stroke weight change in px: <0 lighter, >0 bolder
    texture: float = 0.3  # share of images on uneven paper (a gradient and soft blotches)
