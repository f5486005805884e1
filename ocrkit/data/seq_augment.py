"""Sequence-preserving augmentations for contrastive pre-training (SeqCLR, Aberdam et
al. 2021, Appendix B).

SeqCLR's positive pairs are *aligned frames* of two views of one image, so a view may
change how the text looks but must not move it along the line: no flips, no large
rotations, no large horizontal shifts; every crop is resized back to the image's size,
so frame ``t`` of one view still sees the same characters as frame ``t`` of the other.
Each view applies a random subset of the operations below, in random order (imgaug's
``SomeOf(..., random_order=True)``); how many is ``ops`` (``LO:HI``, drawn uniformly
per view). The paper's pseudo-code loses the subset size; the authors' later code
(SemiMTR) draws 1 to all of them, our default.

==================  ================================================================
contrast            ``127 + a (v - 127)``, a ~ U[0.5, 1.0]
blur                Gaussian, sigma ~ U(0.5, 1.0) pixels
sharpen             imgaug's Sharpen: the 3x3 kernel ``(1 - alpha) I + alpha K`` with
                    ``K = [[-1,-1,-1],[-1, 8 + L, -1],[-1,-1,-1]]``, alpha and L ~
                    U[0, 0.5]. With L < 1 the kernel sums to less than 1, so it also
                    darkens the image; that is what the paper's ranges do in imgaug
vertical crop       top and bottom each lose U[0, 40 %] of the height (per side, as
                    the pseudo-code's ``Crop(percent=((0, .4), 0, (0, .4), 0))`` reads
                    in imgaug), then the crop is resized back to the original size
horizontal crop     left and right each lose U[0, 2 %] of the width, resized back
perspective         each corner moves inwards by ``|N(0, s)|`` x (width, height),
                    s ~ U[0.01, 0.02]; the quadrilateral is mapped back onto the whole
                    image (imgaug's ``PerspectiveTransform(keep_size=True)``)
piecewise affine    a 4 x 4 grid of control points, each moved by ``N(0, s)`` x
                    (reference width, height), s ~ U[0.02, 0.03], edge pixels repeated
                    outside (imgaug's ``PiecewiseAffine(mode="edge")``). The
                    displacement is interpolated bilinearly between the control points
                    instead of affinely inside triangles: the same smooth local jitter,
                    in a few lines of NumPy without scikit-image
==================  ================================================================

The *reference width* of the piecewise jitter is the image's width, but at most that
of the paper's 32 x 100 input at this height (``3.125 h``). imgaug scales the
horizontal jitter by the width, while its grid rows stay ``h / 3`` apart, so the
shear between rows grows with the aspect ratio: a 32 x 256 line (ocrkit's default
input) would be slanted about 2.5 times as much as the paper's images were. Capping
the width keeps the paper's warp on lines of any length (and is imgaug's exactly on
images no wider than 100:32).

**Colour distortion** (``colour``, off by default: not in the paper) is SimCLR's
(Chen et al. 2020, Appendix A) at strength ``s``, applied after the subset: with
probability 0.8 brightness, contrast and saturation factors ~ U[1 - 0.8 s, 1 + 0.8 s]
and a hue shift ~ U[-0.2 s, 0.2 s] of a turn, in random order; then with probability
0.2 the view becomes grey. SimCLR found that without it two crops of one image are
told apart by their colour histograms alone. Synthetic RGB text has the same shortcut:
every image has its own paper and ink colour, so two views' instances can be matched
by colour without reading anything. It changes no pixel's position, so frames stay
aligned. On grey (L) images only brightness and contrast act.

Crops are sub-pixel (Pillow's ``resize(box=...)``), so a 1 % crop of a 100-pixel line is
a 1 % crop, not a rounded zero. Everything is Pillow and NumPy (no imgaug, no OpenCV):
the operations are a few lines each, and the data-loader workers stay light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# The paper's input (Appendix D: every image pre-resized to 32 x 100): width / height.
PAPER_ASPECT = 100 / 32

OPS = ("contrast", "blur", "sharpen", "vertical_crop", "horizontal_crop", "perspective",
       "piecewise_affine")


@dataclass(frozen=True)
class SeqAugment:
    """Appendix B's pipeline: ``ops = (lo, hi)`` operations per call (a random subset
    in random order; ``(0, 0)`` returns the image unchanged). The ranges default to
    the paper's."""

    ops: tuple[int, int] = (1, len(OPS))
    contrast: tuple[float, float] = (0.5, 1.0)
    blur: tuple[float, float] = (0.5, 1.0)
    sharpen_alpha: tuple[float, float] = (0.0, 0.5)
    sharpen_lightness: tuple[float, float] = (0.0, 0.5)
    vertical_crop: float = 0.4  # per side (top, bottom)
    horizontal_crop: float = 0.02  # per side (left, right)
    perspective: tuple[float, float] = (0.01, 0.02)
    piecewise: tuple[float, float] = (0.02, 0.03)
    grid: int = 4  # control points per side of the piecewise grid (imgaug's default)
    colour: float = 0.0  # SimCLR's colour distortion strength s (0: off, the paper)

    def __post_init__(self) -> None:
        lo, hi = self.ops
        if not 0 <= lo <= hi <= len(OPS):
            raise ValueError(f"ops {self.ops}: 0 <= lo <= hi <= {len(OPS)}")
        if not 0 <= self.colour <= 1.25:  # brightness factors must stay positive
            raise ValueError(f"colour {self.colour}: 0 <= s <= 1.25")

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """``image`` (L or RGB) augmented; the same size and mode."""
        count = int(rng.integers(self.ops[0], self.ops[1] + 1))
        for index in rng.permutation(len(OPS))[:count]:
            image = getattr(self, f"_{OPS[index]}")(image, rng)
        if self.colour > 0:
            image = self._colour(image, rng)
        return image

    def _colour(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        """SimCLR's colour distortion at strength ``self.colour`` (see the module doc)."""
        s = self.colour
        if rng.random() < 0.8:
            jitters = ["brightness", "contrast"] + (["saturation", "hue"] if im.mode == "RGB"
                                                    else [])
            for index in rng.permutation(len(jitters)):
                kind = jitters[index]
                if kind == "hue":
                    im = _shift_hue(im, rng.uniform(-0.2 * s, 0.2 * s))
                    continue
                enhance = {"brightness": ImageEnhance.Brightness,
                           "contrast": ImageEnhance.Contrast,
                           "saturation": ImageEnhance.Color}[kind]
                im = enhance(im).enhance(rng.uniform(1 - 0.8 * s, 1 + 0.8 * s))
        if im.mode == "RGB" and rng.random() < 0.2:
            im = im.convert("L").convert("RGB")
        return im

    # ------------------------------------------------------------------ photometric
    def _contrast(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        alpha = rng.uniform(*self.contrast)
        arr = 127.0 + alpha * (np.asarray(im, dtype=np.float32) - 127.0)
        return _from_array(arr, im.mode)

    def _blur(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        # Pillow's GaussianBlur radius is the standard deviation of the Gaussian
        return im.filter(ImageFilter.GaussianBlur(rng.uniform(*self.blur)))

    def _sharpen(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        alpha = rng.uniform(*self.sharpen_alpha)
        lightness = rng.uniform(*self.sharpen_lightness)
        kernel = np.full((3, 3), -alpha)
        kernel[1, 1] = (1 - alpha) + alpha * (8 + lightness)
        return im.filter(ImageFilter.Kernel((3, 3), kernel.ravel().tolist(), scale=1))

    # ------------------------------------------------------------------ geometric
    def _vertical_crop(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = im.size
        top, bottom = rng.uniform(0, self.vertical_crop, 2) * h
        return _crop_back(im, (0.0, top, float(w), h - bottom))

    def _horizontal_crop(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = im.size
        left, right = rng.uniform(0, self.horizontal_crop, 2) * w
        return _crop_back(im, (left, 0.0, w - right, float(h)))

    def _perspective(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = im.size
        scale = rng.uniform(*self.perspective)
        dx, dy = np.abs(rng.normal(0.0, scale, (2, 4))) * np.array([[w], [h]])
        dx, dy = np.minimum(dx, w / 3), np.minimum(dy, h / 3)  # a quadrilateral, always
        # the corners (top-left, top-right, bottom-right, bottom-left) moved inwards
        quad = [(dx[0], dy[0]), (w - dx[1], dy[1]), (w - dx[2], h - dy[2]), (dx[3], h - dy[3])]
        corners = [(0, 0), (w, 0), (w, h), (0, h)]
        return im.transform(im.size, Image.Transform.PERSPECTIVE,
                            _perspective_coefficients(corners, quad),
                            resample=Image.Resampling.BILINEAR)

    def _piecewise_affine(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = im.size
        scale = rng.uniform(*self.piecewise)
        ref = min(w, PAPER_ASPECT * h)  # see the module doc
        jitter = rng.normal(0.0, scale, (2, self.grid, self.grid)) * np.array([[[h]], [[ref]]])
        dy, dx = (_upsample(j, h, w) for j in jitter)
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                             indexing="ij")
        arr = np.asarray(im, dtype=np.float32)
        return _from_array(_sample(arr, ys + dy, xs + dx), im.mode)


def _shift_hue(im: Image.Image, turn: float) -> Image.Image:
    """``im`` (RGB) with every pixel's hue turned by ``turn`` (a fraction of the circle)."""
    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(turn * 256))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _from_array(arr: np.ndarray, mode: str) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode)


def _crop_back(im: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The (sub-pixel) ``box`` of ``im`` resized back to ``im``'s size."""
    left, top, right, bottom = box
    if right - left < 1 or bottom - top < 1:
        return im
    return im.resize(im.size, Image.Resampling.BILINEAR, box=(left, top, right, bottom))


def _perspective_coefficients(out_pts, in_pts) -> tuple[float, ...]:
    """Pillow's 8 PERSPECTIVE coefficients: output pixel (x, y) reads input pixel
    ((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (g x + h y + 1))."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(out_pts, in_pts):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs)).tolist())


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """A ``[g, g]`` grid of values at evenly spaced control points (corners included)
    interpolated bilinearly to ``[h, w]``."""
    g = grid.shape[0]
    gy = np.linspace(0, g - 1, h, dtype=np.float32)
    gx = np.linspace(0, g - 1, w, dtype=np.float32)
    y0 = np.minimum(gy.astype(int), g - 2)
    x0 = np.minimum(gx.astype(int), g - 2)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy).astype(np.float32)


def _sample(arr: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``arr`` (``[H, W]`` or ``[H, W, C]``) read bilinearly at (``ys``, ``xs``), edge
    pixels repeated outside the image."""
    h, w = arr.shape[:2]
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = ys - y0, xs - x0
    if arr.ndim == 3:
        fy, fx = fy[..., None], fx[..., None]
    top = arr[y0, x0] * (1 - fx) + arr[y0, x1] * fx
    bottom = arr[y1, x0] * (1 - fx) + arr[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
