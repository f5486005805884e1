"""Load a checkpoint once and recognise PIL images in batches (evaluate, infer, demo)."""

from __future__ import annotations

import torch

from ocrkit.charset import Charset
from ocrkit.checkpoint import load_checkpoint
from ocrkit.data.batch import InputSpec
from ocrkit.device import resolve_device
from ocrkit.models.recognizer import build_model


def predict_texts(model, images: torch.Tensor, charset: Charset, beam_width: int | None = None
                  ) -> tuple[list[str], list[float], list[list[str]]]:
    """Texts (rows joined by newlines), mean confidences and rows for a batch."""
    core = model.module if hasattr(model, "module") else model
    logits = core(images)
    texts, confs, rows_out = [], [], []
    for rows, rconf in core.decode(logits, beam_width):
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
        self.ckpt = load_checkpoint(checkpoint)
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
        if beam_width and beam_width > 1 and self.model.autoregressive and warn:
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
