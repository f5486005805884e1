"""Resize/pad policy: PIL image -> float32 array ``[1, H, W]`` in [0, 1].

Policies:

* ``stretch``: resize to exactly H x W (the paper's 64x128 / 224x224 inputs, §4.2).
* ``keep-ratio`` (single rows): scale to height H, width ``min(W, round(w*H/h))``,
  pad on the right to W with the image's own background (median of its border),
  so padding looks like paper, not like ink.
* ``fit`` (multi-row): scale to fit inside H x W keeping the aspect ratio, pad
  right and bottom.

``valid_width`` (pixels of real image before padding) is returned too, so a
recognizer can ignore frames that only see padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

POLICIES = ("stretch", "keep-ratio", "fit")


@dataclass(frozen=True)
class ResizePad:
    height: int
    width: int
    policy: str = "keep-ratio"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy {self.policy!r} not in {POLICIES}")
        if self.height < 1 or self.width < 1:
            raise ValueError("height and width must be positive")

    def __call__(self, image: Image.Image) -> tuple[np.ndarray, int]:
        image = image.convert("L")
        w, h = image.size
        if self.policy == "stretch":
            new_w, new_h = self.width, self.height
        elif self.policy == "keep-ratio":
            new_h = self.height
            new_w = max(1, min(self.width, round(w * self.height / h)))
        else:
            scale = min(self.width / w, self.height / h)
            new_w = max(1, min(self.width, round(w * scale)))
            new_h = max(1, min(self.height, round(h * scale)))
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        arr = np.asarray(image, dtype=np.float32) / 255.0
        if (new_w, new_h) == (self.width, self.height):
            return arr[None], new_w
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        out = np.full((self.height, self.width), float(np.median(border)), dtype=np.float32)
        out[:new_h, :new_w] = arr
        return out[None], new_w
