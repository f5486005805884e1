"""Unified HTR + STR distillation ("Text is Text", Bhunia et al., ICCV 2021).

One attention-decoder student learns from two (or more) frozen specialists, a
handwriting (HTR) and a scene-text (STR) recognizer; each sample is supervised by the
teacher of its own domain (``Sample.domain``), inside mixed batches. The main paper
is not available (only its supplement is): its loss equations, weights and
temperature are unknown, so every choice below is ocrkit's and an option of
``ocrkit distill --teacher NAME=PATH ...``:

``L = CE + w_logits * L_logits + w_hint * L_hint + w_attention * L_attention
+ w_affinity * L_affinity``

with all four terms per decoding step, student and teacher decoders teacher-forced on
the same ground-truth prefix (the teacher reads it in its own class indices), and the
padding steps of shorter texts masked (``targets != IGNORE``: each text's characters
and its end symbol count):

* **logits**: ``T^2 * KL(q_t || p_s^T)`` (:func:`ocrkit.methods.kd_losses.step_kl`),
  ``q_t`` the teacher's softmax at ``T`` moved onto the student's classes
  (:class:`ClassMap`).
* **hint** (character-localised, on the glimpses / context vectors): MSE or L1
  per step; a learned linear map from the student's glimpse size to a teacher's when
  they differ (FitNets' regressor, as the supplement §B says), trained with the
  student and left out of the deployed checkpoint.
* **attention**: the attention maps resized to one size and renormalised
  (:func:`ocrkit.methods.kd_losses.match_attention`; a 2-D teacher map is summed over
  its height for a 1-D student), then KL or L1 per step.
* **affinity**: per sample, the ``L x L`` cosine similarities of the glimpses of its
  valid steps, student against teacher (MSE or L1); no map is needed.

Aggregation: a per-step term is the mean over the valid steps of every sample its
teacher supervises in the batch; the affinity term the mean over those samples.
Samples that no teacher supervises (their domain has none, a character their teacher
cannot read, a text longer than it reads) learn from their labels (CE) only, or are
refused before training (``unrouted="error"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

import torch
from torch import nn

from ocrkit.charset import Charset
from ocrkit.methods import kd_losses
from ocrkit.methods.distill import LABEL_TERMS, DistillMethod, FoldedTeachers, _as_float
from ocrkit.models.heads.sequence_targets import IGNORE
from ocrkit.models.recognizer import Recognizer
from ocrkit.train.frozen import Frozen
from ocrkit.train.method import Loss

TERMS = ("logits", "hint", "attention", "affinity")
# A teacher's name says the domain it teaches unless --teacher-domain does.
DEFAULT_DOMAINS = {"htr": "handwriting", "str": "scene"}
UNROUTED = ("ce", "error")
CHARSET_MAPS = ("fold", "exact")
# Punctuation a teacher may spell otherwise than the student (typographic forms).
PUNCTUATION = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u02bc": "'", "`": "'",
               "\u00b4": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"',
               "\u00bb": '"', "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-",
               "\u2014": "-", "\u2212": "-"}
# ITU-R BT.601 luma, what Pillow's convert("L") computes from RGB.
LUMA = (0.299, 0.587, 0.114)


@dataclass
class UnifiedConfig:
    """Every weight and choice of a unified distillation run."""

    temperature: float = 2.0
    w_logits: float = 1.0
    w_hint: float = 1.0
    w_attention: float = 1.0
    w_affinity: float = 1.0
    hint_loss: str = "mse"
    attention_loss: str = "kl"
    affinity_loss: str = "mse"
    charset_map: str = "fold"
    unrouted: str = "ce"
    warmup: float = 0.0  # KD terms ramp from 0 over this fraction of the steps
    gate: str = "none"  # DistillMethod's batch gate: a frozen teacher has none
    routes: dict = field(default_factory=dict)  # domain -> teacher name

    def weights(self) -> dict[str, float]:
        return {"ce": 1.0, "logits": self.w_logits, "hint": self.w_hint,
                "attention": self.w_attention, "affinity": self.w_affinity}

    def active(self) -> tuple[str, ...]:
        """The terms with a weight above 0 (the others are not computed)."""
        w = self.weights()
        return tuple(t for t in TERMS if w[t] > 0)


# ----------------------------------------------------------------------------- classes
def fold_key(ch: str) -> str:
    """What two spellings of a character share: typographic punctuation as its ASCII
    form, then Unicode case folding (``A`` and ``a``, ``’`` and ``'``)."""
    return PUNCTUATION.get(ch, ch).casefold()


class ClassMap:
    """A teacher's classes on the student's (for the logits target) and the student's
    on the teacher's (for the prefix the teacher is forced on).

    Class 0 (the end symbol) is the end symbol on both sides. A teacher character the
    student has maps to it; with ``fold`` (default) a teacher character the student
    lacks maps to the student's characters of the same :func:`fold_key` (``A`` -> ``a``
    for a lower-case student; ``’`` -> ``'``), and a student character the teacher
    lacks takes its share from the teacher's of the same key: **the teacher's
    probability is split equally** among the student classes it stands for (a teacher
    without upper case gives half of ``p(a)`` to ``a`` and half to ``A``: it cannot
    tell them apart, the labels' cross-entropy does). Teacher characters with no
    student class (``exact``: every character the student lacks) lose their
    probability and the rest is renormalised. A student character with no teacher
    counterpart cannot be fed to the teacher: its texts are not distilled by it.
    """

    def __init__(self, student: Charset, teacher: Charset, fold: bool = True) -> None:
        s_chars, t_chars = student.chars, teacher.chars
        key = fold_key if fold else (lambda c: c)
        t_set = set(t_chars)
        matrix = torch.zeros(len(t_chars) + 1, len(s_chars) + 1)
        matrix[0, 0] = 1.0
        by_key: dict[str, list[int]] = {}
        for j, c in enumerate(s_chars, 1):
            by_key.setdefault(key(c), []).append(j)
        self.dropped, self.split = [], []
        for i, c in enumerate(t_chars, 1):
            if c in student.index:  # itself, and the student's variants it alone stands for
                targets = [student.index[c]] + [j for j in by_key.get(key(c), [])
                                                if s_chars[j - 1] not in t_set]
            else:
                targets = list(by_key.get(key(c), []))
            if not targets:
                self.dropped.append(c)
                continue
            if len(targets) > 1:
                self.split.append(c)
            matrix[i, targets] = 1.0 / len(targets)
        self.identity = s_chars == t_chars
        self.matrix = None if self.identity else matrix
        to_teacher = torch.full((len(s_chars) + 1,), -1, dtype=torch.long)
        to_teacher[0] = 0
        t_by_key: dict[str, int] = {}
        for i, c in enumerate(t_chars, 1):
            t_by_key.setdefault(key(c), i)  # the first of a key, in the teacher's order
        self.unreadable = []
        for j, c in enumerate(s_chars, 1):
            i = teacher.index.get(c) or t_by_key.get(key(c))
            if i is None:
                self.unreadable.append(c)
            else:
                to_teacher[j] = i
        self.to_teacher = to_teacher

    def probs(self, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """The teacher's softmax at ``temperature`` ``[..., Nt]`` as a distribution over
        the student's classes ``[..., Ns]``."""
        p = torch.softmax(teacher_logits.float() / temperature, dim=-1)
        if self.matrix is None:
            return p
        q = p @ self.matrix.to(p.device)
        return q / q.sum(-1, keepdim=True).clamp_min(1e-8)

    def teacher_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Student targets ``[N, L]`` in the teacher's indices (``IGNORE`` kept; -1 for a
        character the teacher cannot read)."""
        if self.identity:
            return targets
        table = self.to_teacher.to(targets.device)
        return torch.where(targets == IGNORE, targets, table[targets.clamp_min(0)])

    def readable(self, text: str, student: Charset) -> bool:
        """Whether every character of ``text`` (student characters) can be fed."""
        return all(self.to_teacher[student.index[c]] >= 0 for c in text if c in student.index)

    def describe(self) -> str:
        """What the mapping does, for the run's summary ('' for the same charset)."""
        if self.identity:
            return ""

        def chars(found: list[str]) -> str:
            return repr("".join(found[:16])) + (" ..." if len(found) > 16 else "")

        parts = []
        if self.split:
            parts.append("probability split over the student's variants (case, punctuation) "
                         f"of {chars(self.split)}")
        if self.dropped:
            parts.append(f"{len(self.dropped)} characters without a student class "
                         f"({chars(self.dropped)}): their probability is dropped and the rest "
                         "renormalised")
        if self.unreadable:
            parts.append(f"cannot read the student's {chars(self.unreadable)} (texts holding "
                         "them learn from their labels only)")
        return "; ".join(parts) or "the same characters in another order"


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Normalised images ``[B, C, H, W]`` with ``channels`` channels: RGB to grey by the
    BT.601 luma (Pillow's ``convert("L")``, up to its rounding; exact on normalised
    values, whose mean and std are shared), grey to RGB by repeating it."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 3 and channels == 1:
        w = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
        return (images * w.view(1, 3, 1, 1)).sum(1, keepdim=True)
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    raise ValueError(f"cannot turn {have}-channel images into {channels}-channel ones")


# ----------------------------------------------------------------------------- network
@dataclass
class TeacherInfo:
    """What the network needs to know of one teacher besides its weights."""

    class_map: ClassMap
    channels: int
    max_length: int
    grid: bool  # its attention map is a 2-D grid of tokens (the ``tokens`` neck)


@dataclass
class SampleTerms:
    """Per-sample sums and counts of each KD term (``num[t][i] / den[t][i]`` is sample
    i's value), the student's cross-entropy, and which teacher took each sample."""

    ce: torch.Tensor
    num: dict[str, torch.Tensor]
    den: dict[str, torch.Tensor]
    teacher: list[str | None]
    aux_ctc: torch.Tensor | None = None  # joint CTC-attention: the student's CTC loss

    def value(self, term: str) -> torch.Tensor:
        """``[B]`` each sample's value of ``term`` (0 where no teacher supervises it)."""
        return self.num[term] / self.den[term].clamp_min(1)


def route(domains, routes: dict[str, str], batch_size: int) -> list[str | None]:
    """The teacher of each sample of a batch by its domain (None: no teacher)."""
    if domains is None:
        domains = [None] * batch_size
    if len(domains) != batch_size:
        raise ValueError(f"{len(domains)} domains for a batch of {batch_size}")
    return [routes.get(d) for d in domains]


class UnifiedNet(FoldedTeachers):
    """The student, the frozen teachers and the hint maps; one forward pass returns the
    unweighted terms (``ce`` and the active KD terms).

    Args:
        student: an autoregressive recognizer (attention head), trained.
        teachers: name -> autoregressive recognizer, frozen.
        info: name -> :class:`TeacherInfo`.
        cfg: weights, losses, temperature and ``routes`` (domain -> teacher name).
        hint_maps: name -> a linear map from the student's glimpse size to the
            teacher's, for each teacher whose size differs (required then).
        student_grid: the student's attention map is a 2-D grid of tokens.
        teacher_precision: ``bf16``: frozen teachers run under bfloat16 autocast on
            the CPU.
    """

    def __init__(self, student: Recognizer, teachers: dict[str, Recognizer],
                 info: dict[str, TeacherInfo], cfg: UnifiedConfig,
                 hint_maps: dict[str, nn.Module] | None = None, student_grid: bool = False,
                 teacher_precision: str = "fp32") -> None:
        super().__init__()
        if set(info) != set(teachers):
            raise ValueError("every teacher needs its TeacherInfo")
        self.cfg, self.info, self.student_grid = cfg, info, student_grid
        self.student = student
        self.teachers = nn.ModuleDict({n: Frozen(t) for n, t in teachers.items()})
        # named like DistillNet's regressors: DistillMethod trains them with the student
        self.regressors = nn.ModuleDict(hint_maps or {})
        self.trains_teacher = False
        self.teacher_precision = teacher_precision
        self.terms = cfg.active()
        # a student head with ctc_weight (joint CTC-attention) keeps its auxiliary CTC
        # loss on the labels, weighted as in `train`
        self.aux_weight = float(getattr(student.head, "ctc_weight", 0) or 0)
        if "hint" in self.terms:
            for name, t in teachers.items():
                cs, ct = glimpse_size(student), glimpse_size(t)
                if cs != ct and name not in self.regressors:
                    raise ValueError(f"teacher {name!r}: glimpses of {ct} channels, the "
                                     f"student's {cs}: the hint needs a linear map")

    def _teacher(self, name: str, device: torch.device) -> nn.Module:
        """Teacher ``name`` with its BatchNorms folded (:class:`FoldedTeachers`)."""
        return self._folded(name, self.teachers[name].module, device)

    def forward(self, images: torch.Tensor, batch: dict,
                teacher_images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The unweighted terms: ``ce`` (every sample) and each active KD term averaged
        over the steps (affinity: the samples) that a teacher supervises."""
        per = self.per_sample(images, batch)
        out = {"ce": per.ce}
        if per.aux_ctc is not None:
            out["aux_ctc"] = per.aux_ctc
        for term in self.terms:
            out[term] = per.num[term].sum() / per.den[term].sum().clamp_min(1)
        touch = [p.sum() for p in self.regressors.parameters()]
        if touch and "hint" in out:  # every map takes part, even with no sample of its teacher
            out["hint"] = out["hint"] + 0.0 * torch.stack(touch).sum()
        return out

    def per_sample(self, images: torch.Tensor, batch: dict) -> SampleTerms:
        """Each sample's KD sums and counts, routed to its own teacher."""
        device = images.device
        targets = self.student.head.targets(batch["targets"], batch["target_lengths"]).to(device)
        s = self.student(images, outputs=True, targets=targets)
        b = images.shape[0]
        num = {t: torch.zeros(b, device=device) for t in self.terms}
        den = {t: torch.zeros(b, device=device) for t in self.terms}
        who = route(batch.get("domains"), self.cfg.routes, b)
        lengths = (targets != IGNORE).sum(1)
        for name in self.teachers:
            info = self.info[name]
            mapped = info.class_map.teacher_targets(targets)
            readable = ((mapped != -1).all(1) & (lengths <= info.max_length + 1)).tolist()
            keep = []
            for i in range(b):
                if who[i] == name:
                    if readable[i]:
                        keep.append(i)
                    else:
                        who[i] = None  # its teacher cannot read it: the labels alone
            if not keep or not self.terms:
                continue
            idx = torch.tensor(keep, device=device)
            width = int(lengths[idx].max())
            sums, counts = self._teacher_terms(name, s, images[idx], idx, mapped[idx, :width],
                                               targets[idx, :width] != IGNORE)
            for term in self.terms:
                num[term] = num[term].index_add(0, idx, sums[term])
                den[term] = den[term].index_add(0, idx, counts[term])
        ce = self.student.head.loss(s.logits, targets)
        aux = None
        if self.aux_weight:  # the labels' term of joint CTC-attention, as `train` has it
            aux = self.student.head.ctc_loss(s.extras["ctc_logits"],
                                             batch["targets"].to(device),
                                             batch["target_lengths"].to(device))
        return SampleTerms(ce, num, den, who, aux)

    def _teacher_terms(self, name: str, s, images: torch.Tensor, idx: torch.Tensor,
                       t_targets: torch.Tensor, mask: torch.Tensor
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Sums ``[n]`` and counts ``[n]`` of the active terms for the samples ``idx``
        of teacher ``name`` (``t_targets`` its prefix, ``mask`` the valid steps)."""
        info = self.info[name]
        width = mask.shape[1]
        t_in = to_channels(images, info.channels)
        low = self.teacher_precision == "bf16" and t_in.device.type == "cpu"
        teacher = self._teacher(name, t_in.device)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            t = teacher(t_in, outputs=True, targets=t_targets)
        if low:
            t = _as_float(t)
        with torch.autocast(t_in.device.type, enabled=False):  # the terms in float32
            return self._terms(name, _student_part(s, idx, width), t, mask)

    def _terms(self, name: str, s, t, mask: torch.Tensor
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The active terms of :meth:`_teacher_terms` from the student's outputs ``s``
        (already cut to the teacher's samples and steps) and the teacher's ``t``."""
        cfg, info = self.cfg, self.info[name]
        steps = mask.sum(1).to(torch.float32)
        sums, counts = {}, {}

        def masked(values: torch.Tensor) -> torch.Tensor:
            return torch.where(mask, values, 0.0).sum(1)

        if "logits" in self.terms:
            q = info.class_map.probs(t.logits.detach().float(), cfg.temperature)
            sums["logits"] = masked(kd_losses.step_kl(s.logits, q,
                                                      cfg.temperature))
            counts["logits"] = steps
        g_s = s.extras["glimpses"]
        g_t = t.extras["glimpses"].detach().float()
        if "hint" in self.terms:
            mapped = self.regressors[name](g_s) if name in self.regressors else g_s
            sums["hint"] = masked(kd_losses.step_hint(mapped, g_t, cfg.hint_loss))
            counts["hint"] = steps
        if "attention" in self.terms:
            a_s = kd_losses.attention_grid(s.extras["attention"],
                                           _grid(s, self.student_grid))
            a_t = kd_losses.attention_grid(t.extras["attention"].detach().float(),
                                           _grid(t, info.grid))
            a_s, a_t = kd_losses.match_attention(a_s, a_t)
            sums["attention"] = masked(kd_losses.step_attention(a_s, a_t, cfg.attention_loss))
            counts["attention"] = steps
        if "affinity" in self.terms:
            sums["affinity"] = kd_losses.sample_affinity(g_s, g_t, mask, cfg.affinity_loss)
            counts["affinity"] = torch.ones_like(steps)
        return sums, counts


def _student_part(s, idx: torch.Tensor, width: int) -> SimpleNamespace:
    """The student's outputs for samples ``idx`` and their first ``width`` steps, in
    float32 (a run under ``--amp`` computes them in bfloat16 or float16)."""
    extras = dict(s.extras)
    for key in ("glimpses", "attention"):
        if key in extras:
            extras[key] = extras[key][idx, :width].float()
    return SimpleNamespace(logits=s.logits[idx, :width].float(), extras=extras)


def _grid(out, grid: bool) -> tuple[int, int] | None:
    """The ``(h, w)`` of a model's 2-D attention grid (its backbone map), or None."""
    return tuple(int(v) for v in out.extras["feature_size"]) if grid else None


def glimpse_size(model: Recognizer) -> int:
    """Channels of an autoregressive head's glimpses: an attention head's frames, a
    Light-Former decoder's width."""
    head = model.head
    if hasattr(head, "attention") and hasattr(head.attention, "frame_proj"):
        return int(head.attention.frame_proj.in_features)
    width = getattr(head, "d", None) or getattr(head, "d_model", None)
    if width is None:
        raise ValueError(f"head {model.spec['head']['name']!r}: glimpse size unknown")
    return int(width)


# ----------------------------------------------------------------------------- method
class UnifiedMethod(DistillMethod):
    """:class:`ocrkit.methods.distill.DistillMethod` with the unified terms: the
    student (and the hint maps) train, the teachers never; ``best.pt`` holds the
    student alone, an ordinary recognizer checkpoint."""

    def loss(self, net, batch: dict, device: torch.device) -> Loss:
        images = batch["images"].to(device, non_blocking=True)
        terms = net(images, batch)
        ramp = self.ramp()
        core = net.module if hasattr(net, "module") else net
        weights = {**self.weights, "aux_ctc": core.aux_weight}
        total = sum(weights[name] * value * (1.0 if name in LABEL_TERMS else ramp)
                    for name, value in terms.items())
        return Loss(total, {k: v.detach() for k, v in terms.items()}, images.shape[0])


def unified_record(cfg: UnifiedConfig, teachers: dict[str, dict]) -> dict:
    """The configuration written into the student's checkpoint (``distill``)."""
    out = {"mode": "unified", **asdict(cfg)}
    out["teachers"] = teachers
    return out
