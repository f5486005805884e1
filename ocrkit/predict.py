"""Load a checkpoint once and recognise PIL images in batches (evaluate, infer, demo)."""

from __future__ import annotations

import torch

from ocrkit.checkpoint import build_model, load_checkpoint
from ocrkit.train.data import InputSpec
from ocrkit.train.loop import resolve_device
from ocrkit.train.methods import predict_texts


class Predictor:
    """A recognizer ready for inference: preprocessing, device, decoding."""

    def __init__(self, checkpoint: str, device: str = "auto", beam_width: int | None = None
                 ) -> None:
        self.ckpt = load_checkpoint(checkpoint)
        self.model, self.charset = build_model(self.ckpt)
        self.input = InputSpec(**self.ckpt["input"])
        self.resize = self.input.transform()
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.beam_width = beam_width

    def tensor(self, images) -> torch.Tensor:
        return self.input.to_tensor([self.resize(im)[0] for im in images])

    @torch.no_grad()
    def __call__(self, images) -> list[tuple[str, float, list[str]]]:
        """(text with rows joined by newlines, confidence, rows) per image."""
        if not images:
            return []
        texts, confs, rows = predict_texts(self.model, self.tensor(images).to(self.device),
                                           self.charset, self.beam_width)
        return list(zip(texts, confs, rows))
