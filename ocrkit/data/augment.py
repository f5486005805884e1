"""Training-time augmentation that keeps a text line a text line.

A share ``p`` of the samples (half by default) is augmented at all, so a model
still sees the text as rendered; in those, each transform fires with its own
probability, on the decoded image, in the data
loader's worker processes (off the training step's critical path). Nothing flips
or reorders characters; rotations stay within a few degrees.

==================  =================================================================
margins             crop or pad each side by up to ``margin`` x the height of a text
                    row (position and scale of the text in its box, as a detector's
                    crops vary; ``rows`` of a multi-row image share the height, so
                    a crop never takes a whole row away)
width               stretch the width by a factor in ``width`` (letter-spacing and
                    aspect ratio as other fonts and cameras give them)
rotate, shear       up to ``rotate`` degrees, shear up to ``shear`` (slanted lines)
stroke              thicken the strokes by one pixel or thin them by half of one:
                    bold and light weights of unseen font designs; or change the
                    stroke *contrast* (thicker vertical or thinner horizontal
                    strokes only), the axis along which Song/Ming and Kai designs
                    differ most from the even strokes of sans (Hei) designs
blur                Gaussian blur up to ``blur`` pixels (focus, low resolution)
levels              random ink and paper grey levels (contrast, exposure)
noise               Gaussian noise up to ``noise`` grey levels (sensors)
jpeg                JPEG re-encoding at quality 25-90 (compressed photos)
invert              light text on a dark background
==================  =================================================================

The transforms are written here with Pillow and NumPy (a dozen lines each):
libraries such as albumentations would bring OpenCV and its wheels for no
transform this needs. Randomness is drawn from a generator seeded by (run seed,
epoch, sample index), so a run's augmented images are the same for any number of
loader workers and after ``--resume``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ocrkit.data.transforms import border_median


@dataclass(frozen=True)
class Augment:
    """Probabilities and ranges of the text-safe transforms (see the module doc)."""

    rows: int = 1  # text rows per image: margins scale with one row's height
    p: float = 0.5  # share of samples augmented at all; the rest train as rendered
    margin: float = 0.12
    p_margin: float = 0.5
    width: tuple[float, float] = (0.75, 1.3)
    p_width: float = 0.5
    rotate: float = 2.0
    shear: float = 0.25
    p_affine: float = 0.4
    p_stroke: float = 0.3
    stroke_contrast: float = 0.5  # share of stroke changes that change contrast, not weight
    blur: float = 1.2
    p_blur: float = 0.3
    p_levels: float = 0.5
    noise: float = 10.0
    p_noise: float = 0.3
    p_jpeg: float = 0.2
    p_invert: float = 0.05

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.random() >= self.p:
            return image
        if image.mode == "RGB":  # the same draws for each channel: one geometry, one noise
            state = rng.bit_generator.state
            bands = []
            for band in image.split():
                rng.bit_generator.state = state
                bands.append(self._grey(band, rng))
            return Image.merge("RGB", bands)
        return self._grey(image, rng)

    def _grey(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        im = image.convert("L")
        paper = _paper(im)
        if rng.random() < self.p_margin:
            im = _margins(im, rng, self.margin / max(1, self.rows), paper)
        if rng.random() < self.p_width:
            w = max(1, round(im.width * rng.uniform(*self.width)))
            im = im.resize((w, im.height), Image.Resampling.BILINEAR)
        if rng.random() < self.p_affine:
            im = _affine(im, rng.uniform(-self.rotate, self.rotate),
                         rng.uniform(-self.shear, self.shear), paper)
        if rng.random() < self.p_stroke and min(im.size) >= 16:
            if rng.random() < self.stroke_contrast:
                im = _contrast(im, horizontal=bool(rng.random() < 0.5), paper=paper)
            elif rng.random() < 0.6:  # MinFilter spreads dark ink: bolder
                im = im.filter(ImageFilter.MinFilter(3))
            else:  # lighter: half an erosion (a whole one erases 1-2 px strokes)
                im = Image.blend(im, im.filter(ImageFilter.MaxFilter(3)), 0.5)
        if rng.random() < self.p_blur:
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, self.blur)))
        arr = None
        if rng.random() < self.p_levels:
            arr = _levels(np.asarray(im, dtype=np.float32), rng)
        if rng.random() < self.p_noise:
            arr = np.asarray(im, dtype=np.float32) if arr is None else arr
            arr = arr + rng.normal(0.0, rng.uniform(2.0, self.noise), arr.shape)
        if rng.random() < self.p_invert:
            arr = np.asarray(im, dtype=np.float32) if arr is None else arr
            arr = 255.0 - arr
        if arr is not None:
            im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
        if rng.random() < self.p_jpeg:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=int(rng.integers(25, 91)))
            im = Image.open(io.BytesIO(buf.getvalue())).convert("L")
        return im


def _contrast(im: Image.Image, horizontal: bool, paper: int | None = None) -> Image.Image:
    """Stroke contrast: ``horizontal`` spreads dark ink one pixel sideways (vertical
    strokes thicken, horizontal ones keep their height); otherwise ink is eroded
    one pixel vertically at half strength (horizontal strokes turn thinner and
    lighter without vanishing at small sizes; vertical ones keep their width).
    Dark-on-light only: light text is left to the inversion transform."""
    arr = np.asarray(im)
    if (_paper(im) if paper is None else paper) < 128:
        return im
    if horizontal:
        out = arr.copy()
        np.minimum(out[:, 1:], arr[:, :-1], out=out[:, 1:])
        np.minimum(out[:, :-1], arr[:, 1:], out=out[:, :-1])
    else:
        out = arr.copy()
        np.maximum(out[1:], arr[:-1], out=out[1:])
        np.maximum(out[:-1], arr[1:], out=out[:-1])
        out = ((arr.astype(np.uint16) + out) // 2).astype(np.uint8)
    return Image.fromarray(out, "L")


def _paper(im: Image.Image) -> int:
    return int(border_median(np.asarray(im)))


def _margins(im: Image.Image, rng: np.random.Generator, margin: float, paper: int) -> Image.Image:
    """Move each side in (crop) or out (pad with paper) by up to ``margin`` x height."""
    w, h = im.size
    d = [int(round(rng.uniform(-margin, margin) * h)) for _ in range(4)]  # l, t, r, b
    left, top, right, bottom = -d[0], -d[1], w + d[2], h + d[3]
    if right - left < 4 or bottom - top < 4:
        return im
    return _crop_pad(im, (left, top, right, bottom), paper)


def _crop_pad(im: Image.Image, box: tuple[int, int, int, int], fill: int) -> Image.Image:
    left, top, right, bottom = box
    out = Image.new("L", (right - left, bottom - top), fill)
    out.paste(im, (-left, -top))
    return out


def _affine(im: Image.Image, degrees: float, shear: float, paper: int) -> Image.Image:
    """Rotate by ``degrees`` and shear horizontally, keeping the whole line in view."""
    w, h = im.size
    if shear:
        extra = int(abs(shear) * h) + 2
        canvas = Image.new("L", (w + extra, h), paper)
        canvas.paste(im, (extra // 2, 0))
        # x_in = x_out + shear * (y - h/2): a slant about the middle row; the margin of
        # |shear| * h / 2 on each side keeps every shifted row inside the canvas
        im = canvas.transform(canvas.size, Image.Transform.AFFINE,
                              (1, shear, -shear * h / 2, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR, fillcolor=paper)
    if degrees:
        im = im.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=paper)
    return im


def _levels(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map the image's own ink..paper range to a random one (contrast, exposure)."""
    lo, hi = np.percentile(arr, 2), np.percentile(arr, 98)
    if hi - lo < 8:
        return arr
    ink = rng.uniform(0, 110)
    paper = rng.uniform(max(ink + 60, 150), 255)
    return (arr - lo) / (hi - lo) * (paper - ink) + ink


def augmented(dataset, opts: dict, rows: int = 1):
    """``dataset`` augmented when the command's ``--augment`` is on (the one place
    training commands wrap their training set)."""
    if not opts.get("augment"):
        return dataset
    return AugmentedDataset(dataset, Augment(rows=max(1, rows)), opts["seed"])


class EpochSeeded:
    """A dataset wrapper whose items are drawn per (seed, epoch, index).

    The training loop calls :meth:`set_epoch` before each epoch's loader starts (its
    workers are forked after it), so an item depends on nothing but the run's seed,
    the epoch and the sample."""

    def __init__(self, dataset, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed
        self.epoch = 0
        self.issues = getattr(dataset, "issues", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)


class AugmentedDataset(EpochSeeded):
    """A dataset whose images are augmented per (seed, epoch, index)."""

    def __init__(self, dataset, augment: Augment, seed: int = 0) -> None:
        super().__init__(dataset, seed)
        self.augment = augment

    def labels(self) -> list[str]:
        return self.dataset.labels()

    def __getitem__(self, index: int):
        sample = self.dataset[index]
        if sample.image is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            sample.image = self.augment(sample.image, rng)
        return sample
