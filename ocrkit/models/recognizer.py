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

Training-time code that needs more than logits (distillation, SeqCLR, EMU) calls
``model(images, outputs=True, taps=(...))`` and gets a :class:`RecognizerOutput`:
the backbone's feature map, the visual frames V (after the neck), the contextual
frames H (after the sequence stage), the top recurrent layer's final ``(h, c)``,
and the outputs of named modules (``taps``, captured by forward hooks). Calling
the module itself (not a side method) keeps DistributedDataParallel's gradient
synchronisation intact. Tap names are the backbone's ``tap_points`` aliases
(``stage1`` ...), ``backbone``/``neck``/``sequence``, or any module path of
``named_modules()``; an unknown name is a usage error listing the aliases.

A neck factory with ``geometry = True`` (the multi-row necks) also receives
``feature_height`` / ``feature_width``: the backbone's output size for the
training input size, measured once with a dry run and written into the spec.
``spec["row_sequence"]`` says how the rows of a row-producing neck (``[B, R, T, C]``,
row attention or a plugin) reach the sequence stage. ``per-row`` (default, the
paper's "separate it into independent parts row by row. Then we input them into
BiLSTM"): each row is a sequence of its own. ``reading-order``: the rows are
joined in reading order into one sequence per image, so the BiLSTM carries context
from one row into the next, and its output is cut back into rows; logits stay
``[B, R, T, K]`` and Eq. 10's per-row CTC loss is unchanged. Short rows seen in
isolation (12 frames at CPU scale) give the BiLSTM little to work with; in reading
order the same features trained as fast as MultiRow Stretching (issue 4's note).

A neck with ``row_spans(frames)`` (MultiRow Stretching) is decoded one text row
at a time.

An optional ``"denoiser"`` entry (``{"net": Denoiser config, "mean", "std"}``)
puts a frozen Line-DDeCAE/DDeCAE in front of the backbone: the normalised input
is mapped back to ``[0, 1]``, cleaned, and normalised again. Its weights are
part of the state dict, so a checkpoint carries its own cleaning step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ocrkit import registry
from ocrkit.errors import UsageError

# How a neck's text rows ([B, R, T, C]) reach the sequence stage (see Recognizer.forward).
ROW_SEQUENCES = ("per-row", "reading-order")

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
              in_channels: int = 1, row_sequence: str | None = None) -> dict:
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
    if row_sequence and row_sequence != "per-row":  # the default stays implicit (old specs)
        spec["row_sequence"] = row_sequence
    return spec


@dataclass
class RecognizerOutput:
    """What one forward pass computed, for training-time methods.

    Shapes for ``B`` images (``R`` text rows when the neck returns rows, folded
    into the batch where marked): ``logits`` ``[B, T, K]`` or ``[B, R, T, K]``;
    ``features`` the backbone map ``[B, C, h, w]``; ``visual`` (V) ``[B, T, C]``
    or ``[B, R, T, C]``; ``context`` (H) ``[B(*R), T, C']`` (``visual`` folded when
    there is no sequence stage); ``rnn_state`` the top recurrent layer's final
    ``(h, c)``, each ``[B(*R), 2*hidden]``, or None; ``taps`` name -> module output;
    ``extras`` what an autoregressive head adds (``glimpses`` its decoder outputs,
    ``attention`` its last cross-attention weights), next to ``feature_size``, the
    backbone map's ``(h, w)``, which the head receives in it.
    """

    logits: torch.Tensor
    features: torch.Tensor
    visual: torch.Tensor
    context: torch.Tensor
    rnn_state: tuple[torch.Tensor, torch.Tensor] | None = None
    taps: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict = field(default_factory=dict)  # feature_size, a head's glimpses ...


class Recognizer(nn.Module):
    """A text recognizer assembled from registered components.

    ``input_size`` ``(height, width)`` is needed only to build a geometry neck
    whose feature size is not in the spec yet; ``self.spec`` then records it.
    """

    def __init__(self, spec: dict, num_classes: int, input_size: tuple[int, int] | None = None
                 ) -> None:
        super().__init__()
        self.spec = spec = copy.deepcopy(spec)
        self.num_classes = num_classes
        self.row_sequence = spec.get("row_sequence", "per-row")
        if self.row_sequence not in ROW_SEQUENCES:
            raise UsageError(f"row sequence {self.row_sequence!r}: one of "
                             f"{', '.join(ROW_SEQUENCES)}")
        in_channels = spec.get("in_channels", 1)
        self.denoiser = None
        if spec.get("denoiser"):
            self.set_denoiser(spec["denoiser"])
        self.backbone = _build("backbones", spec["backbone"], in_channels=in_channels)
        if getattr(self.backbone, "channels_last", False):
            # NHWC weights make oneDNN/cuDNN keep activations NHWC even after a 1-channel
            # input (for which NCHW and NHWC are the same strides).
            self.backbone.to(memory_format=torch.channels_last)
        channels = _out_channels(self.backbone, "backbone")
        neck_args = spec["neck"].setdefault("args", {})
        factory = _entry("necks", spec["neck"]).load()
        if getattr(factory, "geometry", False) and "feature_height" not in neck_args:
            if input_size is None:
                raise ValueError(f"neck {spec['neck']['name']!r} needs the input size")
            was_training = self.backbone.training
            self.backbone.eval()
            try:
                with torch.no_grad():
                    fmap = self.backbone(torch.zeros(1, in_channels, *input_size))
            except registry.ARGUMENT_ERRORS as exc:
                raise UsageError(f"backbone {spec['backbone']['name']!r} cannot read "
                                 f"{input_size[0]}x{input_size[1]} images: "
                                 f"{' '.join(str(exc).split())[:200]}") from None
            self.backbone.train(was_training)
            neck_args["feature_height"], neck_args["feature_width"] = map(int, fmap.shape[-2:])
        self.neck = _build("necks", spec["neck"], in_channels=channels)
        # a neck that chose an argument itself (row attention's variant=auto) records it,
        # so the checkpoint rebuilds the same network
        neck_args.update(getattr(self.neck, "resolved_args", None) or {})
        channels = _out_channels(self.neck, "neck")
        self.sequence = None
        if spec.get("sequence"):
            self.sequence = _build("necks", spec["sequence"], in_channels=channels)
            channels = _out_channels(self.sequence, "sequence")
        # A head receives the frames' channels and the class count (a factory that takes
        # neither, like a plugin written before heads did, is built without them); a head
        # that decodes by itself (``out_channels``) feeds the classifier its own width.
        self.head = _build("heads", spec["head"], **_accepted(
            "heads", spec["head"], in_channels=channels, num_classes=num_classes))
        self.classifier = _build("classifiers", spec["classifier"],
                                 in_channels=getattr(self.head, "out_channels", channels),
                                 num_classes=num_classes)
        self.autoregressive = bool(getattr(self.head, "autoregressive", False))
        needs = getattr(self.classifier, "embedding_reader_needed", None)
        if needs and not getattr(self.head, "shares_embedding", False):
            # parameters nothing reads: dead bytes, and an error under DDP
            raise UsageError(f"classifier {spec['classifier']['name']!r} with {needs} needs "
                             f"a head that reads its output embedding (--head lightformer, "
                             f"embed=shared); head {spec['head']['name']!r} does not")

    # ------------------------------------------------------------------ denoiser
    def set_denoiser(self, config: dict | None, state_dict: dict | None = None) -> None:
        """Put a frozen denoiser in front (``config`` as in the spec), or remove it."""
        from ocrkit.models.denoise import Denoiser

        if config is None:
            self.denoiser = None
            self.spec.pop("denoiser", None)
            return
        config = copy.deepcopy(config)
        den = Denoiser(**config["net"])
        if state_dict is not None:
            den.load_state_dict(state_dict)
        den.eval()
        for p in den.parameters():
            p.requires_grad_(False)
        self.denoiser = den
        self.denoise_norm = (float(config.get("mean", 0.5)), float(config.get("std", 0.5)))
        self.spec["denoiser"] = config

    def train(self, mode: bool = True):
        super().train(mode)
        if self.denoiser is not None:  # frozen: BatchNorm statistics stay as trained
            self.denoiser.eval()
        return self

    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images with the denoiser applied (unchanged without one)."""
        if self.denoiser is None:
            return images
        mean, std = self.denoise_norm
        with torch.no_grad():
            cleaned = self.denoiser.clean(images * std + mean)
        return (cleaned - mean) / std

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, outputs: bool = False, taps: Sequence[str] = (),
                targets: torch.Tensor | None = None):
        """Images ``[B, C, H, W]`` -> logits ``[B, T, K]`` (or ``[B, R, T, K]``); with
        ``outputs=True`` a :class:`RecognizerOutput` holding ``taps`` too. An
        autoregressive head reads ``targets`` (its :meth:`targets` form) for teacher
        forcing and decodes greedily without them."""
        captured: dict[str, torch.Tensor] = {}
        handles = [self.tap_module(name).register_forward_hook(
            lambda module, args, out, name=name: captured.__setitem__(name, out))
            for name in taps]
        try:
            x = self.clean(images)
            if getattr(self.backbone, "channels_last", False) and x.dim() == 4:
                # NHWC: oneDNN's convolutions and pools run about 1.4x faster on a CPU
                # (its NCHW 2x2 max-pool is 10x slower); cuDNN prefers it under AMP.
                x = x.contiguous(memory_format=torch.channels_last)
            features = self.backbone(x)
            visual = self.neck(features)
            frames, rows = visual, None
            if frames.dim() == 4:  # [B, R, T, C]: text rows
                if self.autoregressive:
                    raise UsageError(f"head {self.spec['head']['name']!r} reads one text "
                                     "row per image; use a single-row neck")
                b, rows, t, c = frames.shape
                # per-row: each row its own sequence; reading-order: one sequence per
                # image, row 1 then row 2 ..., cut back into rows after the sequence stage
                frames = frames.reshape(b * rows, t, c) if self.row_sequence == "per-row" \
                    else frames.reshape(b, rows * t, c)
            state = None
            if self.sequence is None:
                context = frames
            elif outputs and hasattr(self.sequence, "forward_with_state"):
                context, state = self.sequence.forward_with_state(frames)
            else:
                context = self.sequence(frames)
            if rows is not None and self.row_sequence == "reading-order":
                context = context.reshape(b * rows, t, context.shape[-1])
            extras: dict = {"feature_size": tuple(features.shape[-2:])}
            if self.autoregressive:
                logits = self.head(context, self.classifier, targets=targets,
                                   extras=extras if outputs else None)
            else:
                logits = self.head(context, self.classifier) if _calls_classifier(self.head) \
                    else self.classifier(context)
        finally:
            for handle in handles:
                handle.remove()
        if rows is not None:
            logits = logits.reshape(-1, rows, *logits.shape[1:])
        if not outputs:
            return logits
        return RecognizerOutput(logits=logits, features=features, visual=visual,
                                context=context, rnn_state=state, taps=captured, extras=extras)

    # ------------------------------------------------------------------ taps
    def tap_points(self) -> dict[str, str]:
        """Alias -> module path of the named places :meth:`forward` can tap."""
        points = {"backbone": "backbone", "neck": "neck"}
        if self.sequence is not None:
            points["sequence"] = "sequence"
        for alias, path in getattr(self.backbone, "tap_points", {}).items():
            points[alias] = f"backbone.{path}" if path else "backbone"
        return points

    def tap_module(self, name: str) -> nn.Module:
        """The module a tap name refers to (an alias or a module path)."""
        path = self.tap_points().get(name, name)
        modules = dict(self.named_modules())
        if path not in modules or path == "":
            raise UsageError(f"unknown tap {name!r}; named taps: "
                             f"{', '.join(self.tap_points())} (or a module path such as "
                             "backbone.features.3)")
        return modules[path]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The frames a single-row model's head reads (``context``, ``[B, T, C]``):
        :meth:`forward` stopped before the head."""
        x = self.clean(images)
        if getattr(self.backbone, "channels_last", False) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        frames = self.neck(self.backbone(x))
        if frames.dim() == 4:
            raise UsageError(f"encode reads one text row per image; the neck "
                             f"{self.spec['neck']['name']!r} returns rows")
        return frames if self.sequence is None else self.sequence(frames)

    def beam_decode(self, images: torch.Tensor, width: int):
        """Per image, as :meth:`decode`: beam search of a head that needs the frames
        to search (``head.beam_search(frames, classifier, width)``, an autoregressive
        head); :meth:`decode` of the logits for any other head."""
        search = getattr(self.head, "beam_search", None)
        if search is None:
            return self.decode(self(images), width)
        return [([ids], [conf]) for ids, conf in search(self.encode(images), self.classifier,
                                                         width)]

    def decode(self, logits: torch.Tensor, beam_width: int | None = None):
        """Per image: (list of rows of class indices, list of confidences)."""
        if logits.dim() == 4:
            b, r = logits.shape[:2]
            flat = self.head.decode(logits.reshape(b * r, *logits.shape[2:]), beam_width)
            return [([flat[i * r + j][0] for j in range(r)], [flat[i * r + j][1] for j in range(r)])
                    for i in range(b)]
        spans = self.row_spans(logits.shape[1])
        if spans is not None:  # a stretched sequence: decode each text row's frames alone
            per_row = [self.head.decode(logits[:, s:e], beam_width) if e > s else None
                       for s, e in spans]
            out = []
            for i in range(logits.shape[0]):
                rows = [r[i] if r is not None else ([], 0.0) for r in per_row]
                out.append(([ids for ids, _ in rows], [conf for _, conf in rows]))
            return out
        return [([ids], [conf]) for ids, conf in self.head.decode(logits, beam_width)]

    def row_spans(self, frames: int) -> list[tuple[int, int]] | None:
        """Frame range of each text row when one sequence holds several rows."""
        spans = getattr(self.neck, "row_spans", None)
        if spans is None or getattr(self.neck, "rows", 1) <= 1:
            return None
        return spans(frames)


def finalized(model: "Recognizer") -> "Recognizer | None":
    """The deployable form of ``model`` when its classifier has one (EMU's multi-hot
    classifier without ClassNet and the beta-net, its codebook bit-packed), else None.
    The spec records it (``classifier.args.packed``), so the checkpoint rebuilds it."""
    clf = model.classifier
    if not hasattr(clf, "finalized_state") or getattr(clf, "packed", False):
        return None
    spec = copy.deepcopy(model.spec)
    spec["classifier"].setdefault("args", {})["packed"] = True
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    state.update({f"classifier.{k}": v for k, v in clf.finalized_state().items()})
    final = Recognizer(spec, model.num_classes)
    final.load_state_dict(state)
    device = next(model.parameters()).device
    return final.to(device).train(False)


def check_forward(model: "Recognizer", height: int, width: int, channels: int = 1,
                  taps: Sequence[str] = ()) -> RecognizerOutput:
    """Run the assembled model once on a blank ``height`` x ``width`` image before any
    work, so component arguments or an input size it cannot use are one usage error
    now rather than a traceback at the first batch. Returns what the pass computed
    (``logits.shape[-2]`` frames per row; ``taps`` captured)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, channels, height, width), outputs=True, taps=taps)
    except (UsageError, *registry.ARGUMENT_ERRORS) as exc:
        reason = " ".join(str(exc).split())[:200] or exc.__class__.__name__
        raise UsageError(f"the model cannot read {height}x{width} images: {reason} (check "
                         "--height/--width and the component arguments)") from None
    finally:
        model.train(was_training)
    if int(out.logits.shape[-2]) < 1:
        raise UsageError(f"the model gives no frames for {height}x{width} images")
    return out


def _entry(kind: str, part: dict) -> registry.Entry:
    """The registry entry of a spec part; the part records (in place) the distribution
    that provides it, and a part whose provider is not installed is named with it."""
    try:
        entry = registry.get(kind, part["name"])
    except UsageError as exc:
        dist = part.get("dist")
        if dist and dist != registry.SELF and "unknown" in str(exc):
            raise UsageError(f"{kind[:-1]} {part['name']!r} came from {dist} "
                             f"{part.get('version', '')} when this model was made; "
                             f"pip install {dist}").with_traceback(None) from None
        raise
    part["dist"], part["version"] = entry.dist, entry.version
    return entry


def _accepted(kind: str, part: dict, **kwargs) -> dict:
    """The keyword arguments a component's factory accepts (by name or ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(_entry(kind, part).load()).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


def _calls_classifier(head: nn.Module) -> bool:
    """Whether a (non-autoregressive) head's forward takes the classifier (WAVE2's
    contract); a head with only loss and decode leaves it to the recognizer."""
    return type(head).forward is not nn.Module.forward


def _build(kind: str, part: dict, **kwargs) -> nn.Module:
    _entry(kind, part)
    return registry.build(kind, part["name"], **kwargs, **part.get("args", {}))


def _out_channels(module: nn.Module, what: str) -> int:
    channels = getattr(module, "out_channels", None)
    if not isinstance(channels, int):
        raise TypeError(f"the {what} {module.__class__.__name__} must expose an int out_channels")
    return channels


def build_model(ckpt: dict):
    """The recognizer described by a checkpoint, with its weights, in eval mode."""
    from ocrkit.charset import Charset
    from ocrkit.checkpoint import require_kind

    if ckpt.get("kind") == "denoiser":
        raise UsageError("this is a denoiser checkpoint, not a recognizer: pass it with "
                         "--denoiser (or clean images with `ocrkit denoise`)")
    require_kind(ckpt, None)
    charset = Charset(ckpt["charset"])
    model = Recognizer(ckpt["spec"], charset.num_classes)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, charset
