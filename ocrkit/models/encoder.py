"""The encoder of a recognizer (backbone -> neck -> sequence), on its own.

``ocrkit pretrain`` trains one (SeqCLR) and saves it as a checkpoint of kind
``encoder``: the same one-file, ``weights_only`` format as a recognizer's, holding
the encoder's part of the spec (``backbone``, ``neck``, ``sequence``,
``in_channels``), the input spec, the parts it trained (``encoder_parts``: all
three, or ``backbone`` and ``neck`` when it was pre-trained on the visual features
V, so the sequence stage was never part of it) and their state dict, whose keys are
the recognizer's own (``backbone.*``, ``neck.*``, ``sequence.*``). ``ocrkit train --init-encoder``
loads it into a recognizer built from the same options (:func:`init_encoder`);
``--freeze-encoder`` then keeps it fixed (:func:`freeze_encoder`). A recognizer's
checkpoint gives its encoder the same way (classifier and head not loaded). Only the parts
the checkpoint trained are compared, loaded and frozen: a sequence stage the
encoder never had starts from scratch and trains.

:class:`Encoder` is assembled by :class:`ocrkit.models.recognizer.Recognizer`
itself (a throw-away classifier and head are built and dropped), so both always
build the same modules from a spec.

Freezing keeps the recognizer's state-dict keys: the parts are not wrapped in
:class:`ocrkit.train.frozen.Frozen` (which would rename them ``backbone.module.*``,
and the checkpoint would no longer load as an ordinary recognizer). Instead their
parameters stop requiring gradients, they are put in evaluation mode, and their
``train`` is replaced by one that keeps them there, so the loop's
``model.train()`` cannot turn BatchNorm back to updating its running statistics.
Weights and buffers stay bit-identical for the whole run.
"""

from __future__ import annotations

import copy
import os
import types

import torch
from torch import nn

from ocrkit import registry
from ocrkit.checkpoint import first_difference, plain_spec
from ocrkit.errors import UsageError
from ocrkit.models.recognizer import DEFAULT_SPEC, Recognizer

PARTS = ("backbone", "neck", "sequence")
SPEC_KEYS = (*PARTS, "in_channels")


def encoder_spec(spec: dict) -> dict:
    """The encoder's part of a recognizer spec (or of an encoder spec)."""
    return {key: copy.deepcopy(spec.get(key)) for key in SPEC_KEYS}


class Encoder(nn.Module):
    """Backbone, neck and sequence stage of the recognizer ``spec`` describes.

    ``forward(images)`` returns the visual frames V (after the neck, ``[B, T, C]``)
    and the contextual frames H (after the sequence stage, ``[B, T, C']``; V itself
    without one). ``input_size`` as for :class:`Recognizer`.
    """

    def __init__(self, spec: dict, input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        full = copy.deepcopy(DEFAULT_SPEC)
        full.update(encoder_spec(spec))
        full["in_channels"] = spec.get("in_channels", 1)
        built = Recognizer(full, num_classes=2, input_size=input_size)
        self.backbone, self.neck, self.sequence = built.backbone, built.neck, built.sequence
        self.spec = encoder_spec(built.spec)  # with the providers and measured geometry
        self.visual_channels = built.neck.out_channels
        self.context_channels = (built.sequence.out_channels if built.sequence is not None
                                 else self.visual_channels)

    def forward(self, images: torch.Tensor, context: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(V, H); H is None with ``context=False`` (the sequence stage does not run)."""
        x = images
        if getattr(self.backbone, "channels_last", False):  # as Recognizer.forward
            x = x.contiguous(memory_format=torch.channels_last)
        visual = self.neck(self.backbone(x))
        if visual.dim() != 3:
            raise UsageError(f"the neck {self.spec['neck']['name']!r} returns text rows; "
                             "an encoder reads one row per image (use a single-row neck)")
        if not context:
            return visual, None
        return visual, (visual if self.sequence is None else self.sequence(visual))


def check_encoder(encoder: Encoder, height: int, width: int, channels: int) -> int:
    """Run ``encoder`` once on a blank image of the input size (bad component
    arguments or sizes are one usage error now, not a traceback at the first
    batch); returns its frames per image."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            visual, _ = encoder(torch.zeros(1, channels, height, width))
    except registry.ARGUMENT_ERRORS as exc:
        reason = " ".join(str(exc).split())[:200] or exc.__class__.__name__
        raise UsageError(f"the encoder cannot read {height}x{width} images: {reason} (check "
                         "--height/--width and the component arguments)") from None
    finally:
        encoder.train(was_training)
    if visual.shape[1] < 1:
        raise UsageError(f"the encoder gives no frames for {height}x{width} images")
    return int(visual.shape[1])


# ----------------------------------------------------------------------------- using it
def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return self  # frozen: evaluation mode whatever the caller asks


def freeze_encoder(model: nn.Module, parts=PARTS) -> None:
    """Freeze ``model``'s ``parts`` (backbone, neck and sequence stage) in place (see
    the module doc): no gradients, evaluation mode for good, state-dict keys unchanged."""
    for name in parts:
        part = getattr(model, name, None)
        if part is None:
            continue
        part.requires_grad_(False)
        part.eval()
        part.train = types.MethodType(_stay_in_eval, part)


def _flag(path: str) -> str:
    """``backbone.args.channels`` -> ``--backbone-arg channels``; ``neck.name`` ->
    ``--neck``; ``in_channels`` -> ``--channels``."""
    parts = path.split(".")
    if parts[0] == "in_channels":
        return "--channels"
    if len(parts) >= 3 and parts[1] == "args":
        return f"--{parts[0]}-arg {'.'.join(parts[2:])}"
    return f"--{parts[0]}"


def _shown(value) -> str:
    return "none" if value is None else (f"{value!r}" if isinstance(value, str) else str(value))


def load_encoder_checkpoint(path: str) -> dict:
    """An ``ocrkit pretrain`` checkpoint or a recognizer's (its encoder: the backbone,
    neck and sequence stage, without its classifier and head, which start afresh: a
    trained encoder for another character set, or a readable encoder as protocol 1's
    positive control); any other kind is one usage error saying what ``path`` is."""
    from ocrkit.checkpoint import article, load_checkpoint

    ckpt = load_checkpoint(path)
    kind = ckpt.get("kind", "recognizer")
    if kind not in ("encoder", "recognizer"):
        raise UsageError(f"--init-encoder {path}: {article(kind)} {kind} checkpoint, not an "
                         "encoder (make one with `ocrkit pretrain`) or a recognizer")
    return ckpt


def init_encoder(model: Recognizer, path: str, input_spec, freeze: bool = False,
                 warn=None) -> dict:
    """Load the encoder checkpoint ``path`` into ``model``'s backbone, neck and
    sequence stage (frozen with ``freeze``). Refused in one line naming the first
    difference when the encoder's spec or input does not match the recognizer's;
    ``warn`` hears about a width or resize policy that differs (the weights fit,
    the training images look different). Returns what checkpoints record of it."""
    ckpt = load_encoder_checkpoint(path)
    parts = [p for p in ckpt.get("encoder_parts", PARTS) if p in PARTS]
    keys = [*parts, "in_channels"]
    theirs, ours = encoder_spec(ckpt["spec"]), encoder_spec(model.spec)
    found = first_difference(plain_spec({k: theirs[k] for k in keys}),
                             plain_spec({k: ours[k] for k in keys}))
    if found:
        where, theirs, ours = found
        raise UsageError(f"--init-encoder {path}: the encoder was pre-trained with "
                         f"{_flag(where)} {_shown(theirs)}, this recognizer has "
                         f"{_shown(ours)}; give train the model options pretrain had")
    trained = ckpt.get("input", {})
    for key, flag in (("height", "--height"), ("channels", "--channels"), ("mean", "mean"),
                      ("std", "std"), ("rows", "--rows")):
        theirs, ours = trained.get(key), getattr(input_spec, key)
        if theirs is not None and theirs != ours:
            raise UsageError(f"--init-encoder {path}: the encoder was pre-trained on "
                             f"{flag} {theirs} images, this recognizer reads {flag} {ours}")
    if warn:
        for key, flag in (("width", "--width"), ("policy", "--resize")):
            theirs, ours = trained.get(key), getattr(input_spec, key)
            if theirs is not None and theirs != ours:
                warn(f"warning: --init-encoder {path} was pre-trained with {flag} {theirs}; "
                     f"this run uses {flag} {ours}")
    state = ckpt["state_dict"]
    for name in parts:
        part = getattr(model, name, None)
        if part is None:
            continue
        prefix = name + "."
        part.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                              if k.startswith(prefix)})
    if freeze:
        freeze_encoder(model, parts)
    return {"source": os.path.abspath(path), "frozen": bool(freeze), "parts": parts,
            "pretrain_step": ckpt.get("meta", {}).get("step")}
