"""Train Line-DDeCAE / DDeCAE on ``synth --box-lines`` pairs (Yu & Zhang §3.4, A.1).

Runs in the same loop as recognizers (resume, DDP, AMP, best.pt, metrics.jsonl).
Loss: mean squared error between the network output and its target (the box
lines ``clean - input`` for ``line``, the clean image for ``plain``; both in
``[-1, 1]``, so the two variants train at the same scale). The paper does not
name its loss; MSE is the denoising-autoencoder default (Gondara 2016).
Validation: PSNR of the cleaned image against the clean twin (``psnr``, the
best.pt metric), next to the input's own PSNR (``input_psnr``) as a baseline.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ocrkit.data.datasets import decode_image
from ocrkit.errors import UsageError
from ocrkit.train.method import Loss, Method


class PairDataset:
    """(input, clean twin) images of a synth --box-lines folder."""

    def __init__(self, folder: str, pairs: list | None = None) -> None:
        from data_tools.labels import read_pairs

        self.folder = folder
        self.pairs = read_pairs(folder) if pairs is None else pairs

    def split(self, fraction: float, seed: int) -> tuple["PairDataset", "PairDataset"]:
        """(training, held-out) pairs: ``fraction`` of them (at least one, never all),
        drawn with ``seed``, so the same command holds out the same pairs."""
        import random

        n = len(self.pairs)
        if n < 2:
            raise UsageError(f"{self.folder}: {n} pair(s) cannot be split for --val-fraction")
        held = min(n - 1, max(1, int(n * fraction + 0.5)))
        order = list(range(n))
        random.Random(seed).shuffle(order)
        chosen = set(order[:held])
        return (PairDataset(self.folder, [p for i, p in enumerate(self.pairs) if i not in chosen]),
                PairDataset(self.folder, [p for i, p in enumerate(self.pairs) if i in chosen]))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        """(input, clean twin, None), or (None, None, reason) when either is unreadable."""
        out = []
        for path in self.pairs[index]:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                return None, None, f"{path}: {exc.strerror}"
            image, error = decode_image(data, path, skip_broken=True)
            if error:
                return None, None, f"{path}: {error}"
            out.append(image)
        return out[0], out[1], None

    def size(self) -> tuple[int, int]:
        """(height, width) of the first readable image."""
        from data_tools.images import open_image

        for path, _ in self.pairs:
            image, _ = open_image(path)
            if image is not None:
                return image.height, image.width
        raise UsageError(f"{self.folder}: no readable image")


class PairCollate:
    """Pairs -> {"images", "clean"} ``[B, 1, H, W]`` in [0, 1] (stretched to H x W)."""

    def __init__(self, height: int, width: int) -> None:
        self.size = (width, height)

    def _array(self, im: Image.Image) -> np.ndarray:
        if im.size != self.size:
            im = im.resize(self.size, Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.float32)[None] / 255.0

    def __call__(self, samples) -> dict:
        ins, cleans, broken = [], [], 0
        for image, clean, error in samples:
            if error is not None:
                broken += 1
                continue
            ins.append(self._array(image))
            cleans.append(self._array(clean))
        w, h = self.size
        if not ins:
            empty = torch.empty(0, 1, h, w)
            return {"images": empty, "clean": empty, "broken": broken}
        return {"images": torch.from_numpy(np.stack(ins)),
                "clean": torch.from_numpy(np.stack(cleans)), "broken": broken}


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-10))


class DenoiseMethod(Method):
    metric = "psnr"

    def loss(self, model, batch: dict, device: torch.device) -> Loss:
        v = batch["images"].to(device, non_blocking=True)
        clean = batch["clean"].to(device, non_blocking=True)
        out = model(v)
        loss = F.mse_loss(out.float(), _unwrap(model).target(v, clean))
        return Loss(loss, {"mse": loss.detach()}, v.shape[0])

    @torch.no_grad()
    def validate(self, model, loader, device: torch.device, limit: int | None = None) -> dict:
        model = _unwrap(model)
        se_clean = se_input = pixels = samples = 0.0
        for batch in loader:
            if batch["images"].shape[0] == 0:
                continue
            v, clean = batch["images"].to(device), batch["clean"].to(device)
            se_clean += float(((model.clean(v) - clean) ** 2).sum())
            se_input += float(((v - clean) ** 2).sum())
            pixels += clean.numel()
            samples += v.shape[0]
            if limit is not None and samples >= limit:
                break
        mse = se_clean / max(pixels, 1)
        return {"samples": int(samples), "mse": mse, "psnr": psnr(mse),
                "input_psnr": psnr(se_input / max(pixels, 1))}


def run_denoiser_training(opts: dict) -> dict | None:
    """Datasets, model and loop from `ocrkit train-denoiser`'s options."""
    from ocrkit.models.denoise import Denoiser
    from ocrkit.outputs import main_process
    from ocrkit.train.run import RunSetup

    data = opts["data"]
    setup = RunSetup(opts, "train-denoiser", [data] + ([opts["val"]] if opts.get("val") else []))
    say = setup.say
    with setup.claim():
        train_dir, val_dir = data, opts.get("val")
        if os.path.isdir(os.path.join(data, "train")) and not os.path.isfile(
                os.path.join(data, "labels.jsonl")):  # a synth folder with --test-fraction
            train_dir = os.path.join(data, "train")  # DATA/test is never read: a test split
        train_set = PairDataset(train_dir)
        val_set = PairDataset(val_dir) if val_dir else None
        fraction = opts.get("val_fraction") or 0.0
        if fraction and val_set is not None:
            raise UsageError("--val and --val-fraction: give one of them")
        if fraction:
            train_set, val_set = train_set.split(fraction, opts["seed"])
            say(f"validation: {len(val_set)} of {len(train_set) + len(val_set)} training pairs "
                f"held out (--val-fraction {fraction:g}, seed {opts['seed']})")
        height, width = opts.get("height"), opts.get("width")
        if not height or not width:
            h0, w0 = train_set.size()
            height, width = height or h0, width or w0
        if height < 8 or width < 8:
            raise UsageError("--height and --width must be at least 8")
        torch.manual_seed(opts["seed"])
        model = Denoiser(variant=opts["variant"], base=opts["base"], depth=opts["depth"])
        extra = {"kind": "denoiser", "denoiser": model.config(),
                 "input": {"size": [height, width]},
                 "train_data": os.path.abspath(train_dir)}
        params = sum(p.numel() for p in model.parameters())
        say(f"denoiser {opts['variant']} (base {opts['base']}, depth {opts['depth']}): "
            f"{params / 1e6:.2f} M parameters, {len(train_set)} training pairs at "
            f"{height}x{width}")
        summary = setup.trainer(model, DenoiseMethod(), train_set, val_set,
                                PairCollate(height, width), extra).fit()
    if not main_process():
        return None
    return {"out": opts["out"], "parameters": params, "variant": opts["variant"], **summary}


