"""Load a checkpoint once and recognise PIL images in batches (evaluate, infer, demo)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ocrkit.charset import Charset
from ocrkit.checkpoint import load_checkpoint, require_kind
from ocrkit.data.batch import InputSpec
from ocrkit.device import resolve_device
from ocrkit.models.recognizer import build_model


def at_least_square(model, images: torch.Tensor) -> torch.Tensor:
    """A batch narrower than it is high, padded on the right (its last column repeated)
    to a square, for a model that reads any width. A photo crop of a vertical word or
    a single letter becomes a line a few pixels wide at the model's height; the
    backbone's strides would leave it no frame at all (a crash, not a reading). A
    batch of wider lines is unchanged, and so is the input of a model built for one
    feature-map size (a multi-row neck records it in the spec: ``feature_width``)."""
    missing = images.shape[-2] - images.shape[-1]
    neck = ((getattr(model, "spec", None) or {}).get("neck") or {}).get("args") or {}
    if images.dim() != 4 or missing <= 0 or "feature_width" in neck:
        return images
    return F.pad(images, (0, missing, 0, 0), mode="replicate")


def predict_texts(model, images: torch.Tensor, charset: Charset, beam_width: int | None = None
                  ) -> tuple[list[str], list[float], list[list[str]]]:
    """Texts (rows joined by newlines), mean confidences and rows for a batch.

    ``beam_width`` > 1: beam search - the CTC head's on the logits, an autoregressive
    head's own (``head.beam_search``, which reads the frames) through
    ``Recognizer.beam_decode``."""
    core = model.module if hasattr(model, "module") else model
    images = at_least_square(core, images)
    if beam_width and beam_width > 1 and hasattr(core.head, "beam_search"):
        decoded = core.beam_decode(images, beam_width)
    else:
        decoded = core.decode(core(images), beam_width)
    texts, confs, rows_out = [], [], []
    for rows, rconf in decoded:
        rows_text = [charset.decode(ids) for ids in rows]
        rows_out.append(rows_text)
        texts.append("\n".join(rows_text))
        confs.append(float(sum(rconf) / len(rconf)) if rconf else 0.0)
    return texts, confs, rows_out


class Predictor:
    """A recognizer ready for inference: preprocessing, device, decoding."""

    def __init__(self, checkpoint: str, device: str = "auto", beam_width: int | None = None,
                 denoiser: str | None = None, warn=None, fixed_width: bool = False) -> None:
        """``denoiser``: a train-denoiser checkpoint to clean images first (replacing
        one the recognizer was trained with); ``warn`` receives warnings. Single-row
        models read every line at its own width (``fixed_width``: pad or squash to
        the training width instead, the behaviour before 0.2)."""
        self.path = checkpoint
        self.ckpt = load_checkpoint(checkpoint)
        require_kind(self.ckpt, checkpoint, allow=("denoiser",))
        self.model, self.charset = build_model(self.ckpt)
        self.input = InputSpec(**self.ckpt["input"])
        if denoiser:
            from ocrkit.models.denoise import attach_denoiser

            attach_denoiser(self.model, denoiser, self.input, warn)
        self.width = "fixed" if fixed_width else "any"
        self.resize = self.input.transform(self.width)
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.beam_width = beam_width
        if beam_width and beam_width > 1 and self.model.autoregressive and warn \
                and not hasattr(self.model.head, "beam_search"):
            warn(f"head {self.ckpt['spec']['head']['name']!r} decodes greedily; "
                 "--beam-width is not used")

    def mismatch(self, image) -> str | None:
        """Why ``image`` looks unlike this model's training input, or None."""
        from ocrkit.data.transforms import input_mismatch

        spec = self.input
        return input_mismatch(image, spec.height, spec.width, spec.rows, self.resize.max_width)

    def tensor(self, images) -> torch.Tensor:
        return self.input.to_tensor([self.resize(im)[0] for im in images])

    @torch.no_grad()
    def __call__(self, images, batch_size: int = 32) -> list[tuple[str, float, list[str]]]:
        """(text with rows joined by newlines, confidence, rows) per image.

        Images are grouped by width (a batch pads to its widest line), so a short line
        does not pay for a long one; results come back in the input order."""
        if not images:
            return []
        arrays = [self.resize(im)[0] for im in images]
        order = sorted(range(len(arrays)), key=lambda i: arrays[i].shape[-1])
        out: list = [None] * len(arrays)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            x = self.input.to_tensor([arrays[i] for i in chunk]).to(self.device)
            texts, confs, rows = predict_texts(self.model, x, self.charset, self.beam_width)
            for i, result in zip(chunk, zip(texts, confs, rows)):
                out[i] = result
        return out
