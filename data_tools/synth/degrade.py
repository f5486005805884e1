"""Degradations applied identically to a sample and its clean twin.

The twin (box-line samples) goes through the same geometry, blur and noise
realisation as the input, so ``clean - input`` is non-zero only where lines are
(up to blur spreading them): exactly the Line-DDeCAE target of issue 4. The
line mask gets the geometry only, and stays binary.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from data_tools.synth.look import Appearance

_BINARY = [0] + [255] * 255


@dataclass(frozen=True)
class Degradation:
    angle: float  # degrees, counter-clockwise
    shear: float  # x += shear * (y - centre)
    blur: float  # Gaussian radius, px
    noise: float  # Gaussian sigma, grey levels
    noise_seed: int
    fill: int  # background grey for uncovered corners

    @classmethod
    def sample(cls, rng: random.Random, look: Appearance, fill: int) -> Degradation:
        angle = rng.uniform(-look.rotate, look.rotate) if look.rotate else 0.0
        shear = rng.uniform(-look.skew, look.skew) if look.skew else 0.0
        blur = rng.uniform(0.0, look.blur) if look.blur else 0.0
        noise = rng.uniform(0.0, look.noise) if look.noise else 0.0
        return cls(angle, shear, blur, noise, rng.getrandbits(32), fill)


def _affine(image: Image.Image, deg: Degradation, fill: int, resample) -> Image.Image:
    """Rotate by ``deg.angle`` and shear by ``deg.shear`` about the image centre."""
    w, h = image.size
    cx, cy = w / 2, h / 2
    a = math.radians(deg.angle)
    cos, sin = math.cos(a), math.sin(a)
    # Output->input mapping: inverse rotation after inverse shear.
    # Forward: p' = R (S p); inverse: p = S^-1 R^-1 p'.
    r00, r01, r10, r11 = cos, sin, -sin, cos  # R^-1 for a counter-clockwise rotation
    s = deg.shear
    m00, m01 = r00 - s * r10, r01 - s * r11
    m10, m11 = r10, r11
    c = cx - m00 * cx - m01 * cy
    f = cy - m10 * cx - m11 * cy
    return image.transform((w, h), Image.Transform.AFFINE, (m00, m01, c, m10, m11, f),
                           resample=resample, fillcolor=fill)


def apply_degradation(deg: Degradation, image: Image.Image, clean: Image.Image | None,
                      mask: Image.Image | None):
    """Apply ``deg`` to the image and its twin alike; geometry only to the mask."""
    if deg.angle or deg.shear:
        image = _affine(image, deg, deg.fill, Image.Resampling.BILINEAR)
        if clean is not None:
            clean = _affine(clean, deg, deg.fill, Image.Resampling.BILINEAR)
        if mask is not None:
            # Any pixel a line touches after resampling belongs to the mask.
            mask = _affine(mask.convert("L"), deg, 0, Image.Resampling.BILINEAR).point(_BINARY, "1")
    if deg.blur > 0.05:
        blur = ImageFilter.GaussianBlur(deg.blur)
        image = image.filter(blur)
        if clean is not None:
            clean = clean.filter(blur)
    if deg.noise > 0.05:
        rng = np.random.Generator(np.random.PCG64(deg.noise_seed))
        noise = rng.normal(0.0, deg.noise, size=(image.height, image.width)).astype(np.float32)
        image = _add_noise(image, noise)
        if clean is not None:
            clean = _add_noise(clean, noise)
    return image, clean, mask


def _add_noise(image: Image.Image, noise: np.ndarray) -> Image.Image:
    arr = np.asarray(image, dtype=np.float32) + noise
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
