"""Knowledge distillation of CTC recognizers (Yu & Zhang §3.5) on the shared loop.

``DistillNet`` holds the student, the teacher (or, with ``dml``, a peer) and the
FitNets regressors; one forward pass returns the unweighted loss terms, so
DistributedDataParallel sees every trained part in its forward. ``DistillMethod``
weights them, gives the student and the teacher their own parameter groups (each
clipped on its own) and deploys the **student alone**: ``best.pt`` and
``last.pt`` are ordinary recognizer checkpoints, the teacher and regressors live
only in ``last.pt``'s training state for ``--resume``.

Modes (``--kd-mode``):

``paper`` (Eq. 13-17)
    ``L = L_ctc + w_soft * L_soft + λ1 * L_hint + λ2 * L_lstm`` with ``w_soft = 1 - α``.
    Eq. 13's hard term is the CTC loss that Eq. 17 adds again; ``skd_form="sum"``
    (default) counts it once, ``"literal"`` adds ``α * L_ctc`` as printed. α is
    never given in the paper (Table 6's α and β are λ1 and λ2): ``w_soft`` defaults
    to 0.5. Offline (default) the teacher is a frozen checkpoint; ``online`` trains
    it at the same time on its own CTC loss only, every teacher tensor in a KD term
    detached (the paper's setting).
``dml``
    Two peers learn from the labels and from each other (symmetric KL per frame);
    the peer is the student's architecture unless ``--teacher`` names one; both
    train. PP-OCRv3 distils its recognizer this way (plus feature losses).
``ctc-mean-kl``
    A frozen teacher; the KL between per-sequence class frequencies with the blank
    logit negated (PP-OCRv4). It needs no equal frame counts, so the student may
    use another stride or input size.

**Autoregressive heads** (``attention``, ``lightformer``; student and teacher both):
both decoders are teacher-forced on the same ground-truth prefix (the student
head's ``targets``), so their logits ``[B, L, N]`` line up step by step whatever
their frames. The label term is the student's cross-entropy per position
(``ce``; ``teacher_ce`` for a teacher trained alongside) in place of CTC; the soft
and dml terms are the same KL per decoding step, averaged over the steps that are
not padding (``targets != IGNORE``: each text's characters and its end symbol).
Hints and BiLSTM states are the encoders' and apply unchanged. ``ctc-mean-kl``
(CTC class frequencies) does not apply; ``ocrkit distill`` refuses it, and a
CTC/autoregressive pair, in one line.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ocrkit.data.batch import frame_mask
from ocrkit.evaluate import evaluate_loader
from ocrkit.methods import kd_losses
from ocrkit.methods.supervised import ctc_loss
from ocrkit.models.heads.sequence_targets import IGNORE  # autoregressive target padding
from ocrkit.models.recognizer import Recognizer
from ocrkit.train.frozen import Frozen
from ocrkit.train.method import Loss, Method

MODES = ("paper", "dml", "ctc-mean-kl")
# learnt from the labels, never ramped: CTC, an autoregressive head's cross-entropy, and its
# joint CTC-attention auxiliary loss
LABEL_TERMS = ("ctc", "teacher_ctc", "ce", "teacher_ce", "aux_ctc")


@dataclass
class KDConfig:
    """Every weight and choice of a distillation run (the paper's defaults)."""

    mode: str = "paper"
    online: bool = False  # paper mode: train the teacher too (on its own CTC loss)
    temperature: float = 1.5  # Table 6 (ctc-mean-kl: PaddleOCR's 0.5; dml: 1.0)
    soft_weight: float = 0.5  # 1 - alpha of Eq. 13 (alpha not given); dml, ctc-mean-kl: 1.0
    skd_form: str = "sum"  # "literal": Eq. 17 as printed, alpha * L_ctc added again
    t2: bool = False  # multiply the soft term by T^2 (Hinton); not in the paper
    lambda_hint: float = 0.5  # Table 6 "alpha"
    lambda_lstm: float = 0.2  # Table 6 "beta"
    hints: list = field(default_factory=list)  # [(student tap, teacher tap)]
    reduction: str = "mean"  # hint and lstm terms: per element, or the paper's per image
    warmup: float = 0.0  # KD terms ramp linearly from 0 over this fraction of the steps
    gate: str = "none"  # "teacher-better": KD terms count only while the teacher's CTC < student's

    def weights(self) -> dict[str, float]:
        hard = 1.0 + ((1.0 - self.soft_weight) if self.skd_form == "literal" else 0.0)
        return {"ctc": hard, "ce": hard, "soft": self.soft_weight, "hint": self.lambda_hint,
                "lstm": self.lambda_lstm, "mean_kl": self.soft_weight, "dml": self.soft_weight,
                "teacher_ctc": 1.0, "teacher_ce": 1.0}


def regressor(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """A FitNets regressor from a student activation to the teacher's: a 1x1
    convolution for feature maps ``[B, C, H, W]``, a linear map for frames
    ``[B, T, C]``. Equal widths start as the identity, so a model distilled into
    itself starts with a zero hint."""
    cs, ct = int(student_shape[1 if len(student_shape) == 4 else -1]), int(
        teacher_shape[1 if len(teacher_shape) == 4 else -1])
    if len(student_shape) == 4:
        layer = Conv1x1(cs, ct, 1)
        if cs == ct:
            nn.init.dirac_(layer.weight)
            nn.init.zeros_(layer.bias)
        return layer
    layer = nn.Linear(cs, ct)
    if cs == ct:
        nn.init.eye_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layer


class Conv1x1(nn.Conv2d):
    """A 1x1 convolution computed as a matrix product over the channels of an NHWC
    view: the same function and weights as ``nn.Conv2d(c_in, c_out, 1)``, without
    oneDNN's per-call set-up, which dominates on maps this small."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.reshape(self.out_channels, self.in_channels)
        return F.linear(x.permute(0, 2, 3, 1), w, self.bias).permute(0, 3, 1, 2)


class FoldedTeachers(nn.Module):
    """A module whose frozen teachers compute their outputs through copies with every
    BatchNorm folded into the convolution before it (the same function, 10 % less
    time). The copies are not part of the state: the teachers stay as loaded and
    bit-identical; a copy is rebuilt after a load or a move."""

    def _folded(self, name: str, teacher: nn.Module, device: torch.device) -> nn.Module:
        cache = self.__dict__.setdefault("_fast", {})
        if cache.get(name, (None,))[0] != device:
            cache[name] = (device, fold_batchnorm(teacher).to(device))
        return cache[name][1]

    def load_state_dict(self, *args, **kwargs):
        self.__dict__.pop("_fast", None)
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, *args, **kwargs):
        self.__dict__.pop("_fast", None)
        return super()._apply(*args, **kwargs)


class DistillNet(FoldedTeachers):
    """Student, teacher (frozen, or trained with ``online``/``dml``) and regressors.

    The per-frame terms (soft, dml, ctc-mean-kl) average over the frames that see the
    image: with ``batch["widths"]`` (each image's width before the batch was padded
    to its widest), frame t of image i counts when ``t < ceil(T * w_i / W)``
    (:func:`ocrkit.data.batch.frame_mask`)."""

    def __init__(self, student: Recognizer, teacher: Recognizer, cfg: KDConfig,
                 regressors: dict[str, nn.Module] | None = None,
                 teacher_precision: str = "fp32") -> None:
        super().__init__()
        self.cfg = cfg
        # "bf16": a frozen teacher runs under bfloat16 autocast on the CPU (twice as fast
        # where the CPU computes bf16 natively); its outputs are used as float32.
        self.teacher_precision = teacher_precision
        self.trains_teacher = cfg.online or cfg.mode == "dml"
        self.student = student
        self.teacher = teacher if self.trains_teacher else Frozen(teacher)
        self.regressors = nn.ModuleDict(regressors or {})
        self.pairs = [(s, t) for s, t in cfg.hints] if cfg.mode == "paper" and cfg.lambda_hint \
            else []

    @property
    def teacher_model(self) -> Recognizer:
        return self.teacher.module if isinstance(self.teacher, Frozen) else self.teacher

    def _frozen_teacher(self, device: torch.device) -> nn.Module:
        """The module that computes a frozen teacher's outputs (:class:`FoldedTeachers`)."""
        return self._folded("teacher", self.teacher.module, device)

    def forward(self, images: torch.Tensor, batch: dict, teacher_images: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """The unweighted loss terms for one batch (targets in ``batch``)."""
        cfg = self.cfg
        paper = cfg.mode == "paper"
        want_state = paper and cfg.lambda_lstm > 0
        device = images.device
        # autoregressive heads: both decoders teacher-forced on the same target prefix
        targets = (self.student.head.targets(batch["targets"], batch["target_lengths"])
                   .to(device) if getattr(self.student, "autoregressive", False) else None)
        forced = {} if targets is None else {"targets": targets}
        s = self.student(images, outputs=True, taps=[a for a, _ in self.pairs], **forced)
        t_in = teacher_images if teacher_images is not None else images
        low = (self.teacher_precision == "bf16" and not self.trains_teacher
               and t_in.device.type == "cpu")
        teacher = self.teacher if self.trains_teacher else self._frozen_teacher(t_in.device)
        with torch.no_grad() if not self.trains_teacher else contextlib.nullcontext(), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            t = teacher(t_in, outputs=True, taps=[b for _, b in self.pairs], **forced)
        if targets is not None:  # cross-entropy per position; KD per decoding step
            terms = {"ce": self.student.head.loss(s.logits, targets)}
            if self.trains_teacher:
                terms["teacher_ce"] = self.teacher_model.head.loss(t.logits, targets)
        else:
            terms = {"ctc": ctc_loss(self.student.head, s.logits, batch, device)}
            if self.trains_teacher:  # learns from the labels only (and, dml, the peer)
                terms["teacher_ctc"] = ctc_loss(self.teacher_model.head, t.logits, batch,
                                                 device, record=False)
        if low:
            t = _as_float(t)
        target = t.logits.detach()
        # Per-frame terms average over the frames that see the image, not the padding
        # on the right of a narrow image in a batch padded to its widest one; per-step
        # terms over the steps of each text and its end symbol.
        mask = (targets != IGNORE if targets is not None
                else _frame_mask(self.student, s.logits, images, batch.get("widths")))
        if cfg.mode == "dml":
            terms["dml"] = kd_losses.mutual_kl(s.logits, t.logits, cfg.temperature, mask)
        elif cfg.mode == "ctc-mean-kl":
            # the teacher's own frames (another stride, or its own input size)
            t_mask = _frame_mask(self.teacher_model, t.logits, t_in, batch.get(
                "widths" if teacher_images is None else "teacher_widths"))
            terms["mean_kl"] = kd_losses.ctc_mean_kl(s.logits, target, cfg.temperature,
                                                     mask, t_mask)
        else:
            if cfg.soft_weight:
                terms["soft"] = kd_losses.soft_kl(s.logits, target, cfg.temperature, cfg.t2,
                                                  mask)
            # Hints (feature maps) and the final BiLSTM states are not masked: a padded
            # image's maps hold its padding columns too, and the top layer's final
            # (h, c) of a padded sequence has read the padding (CAP and the BiLSTM run
            # over every frame: the forward direction ends on padding frames, the
            # backward one starts on them). Left as the paper has it.
            if self.pairs:
                hints = [kd_losses.hint_mse(self.regressors[_key(a, b)](s.taps[a]),
                                            t.taps[b].detach(), cfg.reduction)
                         for a, b in self.pairs]
                terms["hint"] = torch.stack(hints).mean()  # 1/M over the M tapped layers
            if want_state:
                ht, ct = t.rnn_state
                terms["lstm"] = kd_losses.state_mse(s.rnn_state, (ht.detach(), ct.detach()),
                                                     cfg.reduction)
        return terms


def _frame_mask(model: nn.Module, logits: torch.Tensor, images: torch.Tensor,
                widths: torch.Tensor | None) -> torch.Tensor | None:
    """The frames of ``logits`` ``[B, T, K]`` that see the image (``ocrkit.data.batch.frame_mask``:
    frame t of image i counts when ``t < ceil(T * w_i / W)``), or None when every frame
    does. Multi-row models (``[B, R, T, K]`` row attention, or one stretched sequence
    of R rows) read a fixed input size (``stretch``, their default policy, never pads):
    no mask. (With ``--resize fit`` a multi-row image is padded right and bottom; those
    frames are not masked.)"""
    if widths is None or logits.dim() != 3 or getattr(getattr(model, "neck", None),
                                                        "rows", 1) > 1:
        return None
    widths = widths.cpu()
    if widths.numel() != logits.shape[0]:
        raise ValueError(f"{widths.numel()} image widths for a batch of {logits.shape[0]}")
    if bool((widths >= images.shape[-1]).all()):
        return None
    return frame_mask(widths, images.shape[-1], logits.shape[1]).to(logits.device)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An evaluation-mode copy of ``model`` in which every ``Conv2d`` directly followed by
    a ``BatchNorm2d`` inside an ``nn.Sequential`` absorbs it (the BatchNorm becomes an
    identity, so module paths, and tap names, are unchanged)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) \
                        and bn.track_running_stats:
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def _as_float(out):
    """A RecognizerOutput computed under autocast, with float32 tensors."""
    out.logits = out.logits.float()
    out.taps = {k: v.float() for k, v in out.taps.items()}
    if out.rnn_state is not None:
        out.rnn_state = tuple(v.float() for v in out.rnn_state)
    return out


def _key(student_tap: str, teacher_tap: str) -> str:
    return f"{student_tap}->{teacher_tap}".replace(".", "_")


class DistillMethod(Method):
    """What the loop needs to distil: weighted terms, groups, the student deployed."""

    metric = "clp"

    def __init__(self, charset, cfg: KDConfig, record: dict, beam_width: int = 1) -> None:
        self.charset, self.cfg, self.record = charset, cfg, record
        self.weights = cfg.weights()
        self.beam_width = beam_width
        self.step, self.total = 0, 1

    def begin(self, total: int, step: int) -> None:
        self.total, self.step = max(1, total), step

    def after_step(self, core, step: int) -> None:
        self.step = step

    def ramp(self) -> float:
        """KD terms' share: 0 -> 1 over the first ``warmup`` of the run (a teacher that
        trains alongside has nothing to teach at first), 1 without warm-up."""
        if self.cfg.warmup <= 0:
            return 1.0
        return min(1.0, self.step / (self.cfg.warmup * self.total))

    def loss(self, net, batch: dict, device: torch.device) -> Loss:
        images = batch["images"].to(device, non_blocking=True)
        teacher_images = batch.get("teacher_images")
        if teacher_images is not None:
            teacher_images = teacher_images.to(device, non_blocking=True)
        terms = net(images, batch, teacher_images)
        ramp = self.ramp()
        label = "ce" if "ce" in terms else "ctc"
        if self.cfg.gate == "teacher-better" and f"teacher_{label}" in terms:
            # A teacher that trains alongside teaches only where it reads better than the
            # student does (this batch's label losses, no gradient through the comparison).
            ramp = ramp * (terms[f"teacher_{label}"] < terms[label]).detach().float()
        total = sum(self.weights[name] * value * (1.0 if name in LABEL_TERMS else ramp)
                    for name, value in terms.items())
        return Loss(total, {k: v.detach() for k, v in terms.items()}, images.shape[0])

    def validate(self, core, loader, device: torch.device, limit: int | None = None) -> dict:
        core = core.module if hasattr(core, "module") else core
        return evaluate_loader(core.student, self.charset, loader, device,
                               beam_width=self.beam_width, limit=limit)[0]

    def param_groups(self, core) -> list[dict]:
        groups = [{"name": "student", "params": list(core.student.parameters())
                   + list(core.regressors.parameters())}]
        if core.trains_teacher:
            groups.append({"name": "teacher", "params": list(core.teacher.parameters())})
        return groups

    def deployable(self, core) -> tuple[nn.Module, dict]:
        return core.student, {"distill": self.record}


def kd_record(cfg: KDConfig, teacher: dict) -> dict:
    """The configuration written into the student's checkpoint metadata."""
    out = asdict(cfg)
    out["hints"] = [list(pair) for pair in cfg.hints]
    out["teacher"] = teacher
    return out
