"""Assemble backbone -> neck -> sequence -> classifier -> head from a plain spec.

A spec is JSON-ready data, stored in every checkpoint::

    {"backbone": {"name": "vgg-small", "args": {}},
     "neck": {"name": "cap", "args": {}},
     "sequence": {"name": "bilstm", "args": {"hidden": 256, "layers": 2}},  # or None
     "classifier": {"name": "linear", "args": {}},
     "head": {"name": "ctc", "args": {}},
     "in_channels": 1}

Each part is built through the registry (the same path a plugin uses); the
assembler injects ``in_channels`` (and ``num_classes`` for the classifier). A
neck may return ``[B, T, C]`` frames or ``[B, R, T, C]`` (R text rows); rows are
folded into the batch for the sequence stage and classifier, and logits come
back as ``[B, T, K]`` or ``[B, R, T, K]``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ocrkit import registry

DEFAULT_SPEC = {
    "backbone": {"name": "vgg-small", "args": {}},
    "neck": {"name": "cap", "args": {}},
    "sequence": {"name": "bilstm", "args": {"hidden": 256, "layers": 2}},
    "classifier": {"name": "linear", "args": {}},
    "head": {"name": "ctc", "args": {}},
    "in_channels": 1,
}


def make_spec(backbone: str = "vgg-small", neck: str = "cap", sequence: str | None = "bilstm",
              classifier: str = "linear", head: str = "ctc", *, backbone_args=None,
              neck_args=None, sequence_args=None, classifier_args=None, head_args=None,
              in_channels: int = 1) -> dict:
    spec = copy.deepcopy(DEFAULT_SPEC)
    spec["backbone"] = {"name": backbone, "args": dict(backbone_args or {})}
    spec["neck"] = {"name": neck, "args": dict(neck_args or {})}
    if sequence in (None, "none"):
        spec["sequence"] = None
    else:
        args = dict(DEFAULT_SPEC["sequence"]["args"]) if sequence == "bilstm" else {}
        args.update(sequence_args or {})
        spec["sequence"] = {"name": sequence, "args": args}
    spec["classifier"] = {"name": classifier, "args": dict(classifier_args or {})}
    spec["head"] = {"name": head, "args": dict(head_args or {})}
    spec["in_channels"] = in_channels
    return spec


class Recognizer(nn.Module):
    """A text recognizer assembled from registered components."""

    def __init__(self, spec: dict, num_classes: int) -> None:
        super().__init__()
        self.spec = copy.deepcopy(spec)
        self.num_classes = num_classes
        self.backbone = registry.build("backbones", spec["backbone"]["name"],
                                       in_channels=spec.get("in_channels", 1),
                                       **spec["backbone"].get("args", {}))
        channels = _out_channels(self.backbone, "backbone")
        self.neck = registry.build("necks", spec["neck"]["name"], in_channels=channels,
                                   **spec["neck"].get("args", {}))
        channels = _out_channels(self.neck, "neck")
        self.sequence = None
        if spec.get("sequence"):
            self.sequence = registry.build("necks", spec["sequence"]["name"],
                                           in_channels=channels,
                                           **spec["sequence"].get("args", {}))
            channels = _out_channels(self.sequence, "sequence")
        self.classifier = registry.build("classifiers", spec["classifier"]["name"],
                                         in_channels=channels, num_classes=num_classes,
                                         **spec["classifier"].get("args", {}))
        self.head = registry.build("heads", spec["head"]["name"], **spec["head"].get("args", {}))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> logits ``[B, T, K]`` (or ``[B, R, T, K]``)."""
        frames = self.neck(self.backbone(images))
        rows = None
        if frames.dim() == 4:  # [B, R, T, C]: one sequence per text row
            b, rows, t, c = frames.shape
            frames = frames.reshape(b * rows, t, c)
        if self.sequence is not None:
            frames = self.sequence(frames)
        logits = self.classifier(frames)
        if rows is not None:
            logits = logits.reshape(-1, rows, *logits.shape[1:])
        return logits

    def decode(self, logits: torch.Tensor, beam_width: int | None = None):
        """Per image: (list of rows of class indices, list of confidences)."""
        if logits.dim() == 4:
            b, r = logits.shape[:2]
            flat = self.head.decode(logits.reshape(b * r, *logits.shape[2:]), beam_width)
            return [([flat[i * r + j][0] for j in range(r)], [flat[i * r + j][1] for j in range(r)])
                    for i in range(b)]
        return [([ids], [conf]) for ids, conf in self.head.decode(logits, beam_width)]


def _out_channels(module: nn.Module, what: str) -> int:
    channels = getattr(module, "out_channels", None)
    if not isinstance(channels, int):
        raise TypeError(f"the {what} {module.__class__.__name__} must expose an int out_channels")
    return channels
