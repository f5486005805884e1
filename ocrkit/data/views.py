"""Two augmented views of every image, batched for contrastive pre-training (SeqCLR).

Each image is first resized to the model's input height (``keep-ratio``: its width
follows, at most the input width; ``stretch``: exactly height x width, the paper's
fixed 32 x 100), then augmented twice, independently, by
:class:`ocrkit.data.seq_augment.SeqAugment`, at that size: the augmentation ranges
are in pixels of the image the encoder reads, as the paper's were (it pre-resized
every image to 32 x 100). Augmentations keep the size, so both views of an image
have the same width and their frames stay aligned.

A batch holds the ``N`` first views, then the ``N`` second views (``images``
``[2N, C, H, W]``), right-padded to the batch's widest image; ``widths`` ``[N]`` is
each image's width before padding (the same for both of its views).
:mod:`ocrkit.methods.seqclr` excludes the frames that see only padding from every
instance. Unreadable images are dropped and counted (``broken``), as in every
ocrkit batch.

Randomness comes from a generator seeded by (seed, epoch, index), so a run's views
are the same for any number of loader workers and after ``--resume``; validation
views (epoch 0, never advanced) are the same at every validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ocrkit.data.augment import EpochSeeded
from ocrkit.data.batch import InputSpec
from ocrkit.data.seq_augment import SeqAugment

POLICIES = ("keep-ratio", "stretch")


@dataclass
class ViewPair:
    """Two views of one image, or ``a = b = None`` and why."""

    a: Image.Image | None
    b: Image.Image | None
    key: str
    error: str | None = None


def input_sized(image: Image.Image, spec: InputSpec) -> Image.Image:
    """``image`` in the spec's mode at its height: keep-ratio (width up to the spec's)
    or stretched to height x width."""
    image = image.convert(spec.mode)
    w, h = image.size
    if spec.policy == "stretch":
        size = (spec.width, spec.height)
    else:
        size = (max(1, min(spec.width, round(w * spec.height / h))), spec.height)
    return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)


class TwoViews(EpochSeeded):
    """A dataset of unlabelled samples as :class:`ViewPair` items (two views drawn per
    seed, epoch and index)."""

    def __init__(self, dataset, spec: InputSpec, augment: SeqAugment, seed: int = 0) -> None:
        if spec.policy not in POLICIES:
            raise ValueError(f"policy {spec.policy!r}: one of {POLICIES}")
        super().__init__(dataset, seed)
        self.spec, self.augment = spec, augment

    def __getitem__(self, index: int) -> ViewPair:
        sample = self.dataset[index]
        if sample.image is None:
            return ViewPair(None, None, sample.key, sample.error or "unreadable")
        image = input_sized(sample.image, self.spec)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return ViewPair(self.augment(image, rng), self.augment(image, rng), sample.key)


def _array(image: Image.Image) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # [C, H, W]


class ViewCollate:
    """ViewPairs -> {"images" [2N, C, H, W], "widths" [N], "keys", "broken",
    "broken_items"} (see the module doc)."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def __call__(self, pairs) -> dict:
        first, second, widths, keys, dropped = [], [], [], [], []
        for pair in pairs:
            if pair.a is None:
                dropped.append((pair.key, pair.error or "unreadable"))
                continue
            first.append(_array(pair.a))
            second.append(_array(pair.b))
            widths.append(first[-1].shape[-1])
            keys.append(pair.key)
        spec = self.spec
        images = (spec.to_tensor(first + second) if first
                  else torch.empty(0, spec.channels, spec.height, spec.width))
        return {"images": images, "widths": torch.tensor(widths, dtype=torch.long),
                "keys": keys, "broken": len(dropped), "broken_items": dropped}
