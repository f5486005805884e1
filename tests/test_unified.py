"""Unified HTR + STR distillation ("Text is Text", METHODS.md §4): the four terms pinned by
hand, per-sample routing to the teacher of each sample's domain, padding steps, charset and
input mapping, the domain-balanced sampler, and the CLI end to end (two attention
specialists, the unified student, evaluate, infer, export --verify)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import one_line_error
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ocrkit.charset import Charset
from ocrkit.data.batch import Collate, InputSpec
from ocrkit.data.datasets import Sample
from ocrkit.methods import kd_losses
from ocrkit.methods.unified import (
    ClassMap,
    TeacherInfo,
    UnifiedConfig,
    UnifiedMethod,
    UnifiedNet,
    to_channels,
)
from ocrkit.models.heads.sequence_targets import eos_targets
from ocrkit.models.recognizer import Recognizer, make_spec
from ocrkit.train.loop import TrainConfig, Trainer
from ocrkit.errors import UsageError
from ocrkit.train.sampler import (DomainBalancedSampler, StepSampler, dataset_domains,
                                  parse_domain_weights, weighted_cycle)

CHARS = list("abcde")
ROUTES = {"handwriting": "htr", "scene": "str"}
TERMS = ("logits", "hint", "attention", "affinity")


# ----------------------------------------------------------------------------- helpers
def tiny(seed: int, lstm: int = 8, classes: int = 6, **head_args) -> Recognizer:
    """A tiny attention recognizer with sharpened attention (peaked maps, glimpses that
    differ from step to step), so that two seeds give clearly different outputs."""
    torch.manual_seed(seed)
    spec = make_spec("vgg-small", "cap", "bilstm", "linear", "attention",
                     backbone_args={"channels": (8, 8, 16, 16)},
                     sequence_args={"hidden": lstm, "layers": 1},
                     head_args={"hidden": 16, "embed_dim": 8, "max_length": 5, **head_args})
    model = Recognizer(spec, classes, input_size=(32, 64)).eval()
    with torch.no_grad():
        for p in model.head.attention.parameters():
            p.mul_(30)
        for p in model.head.embed.parameters():
            p.mul_(5)
        for p in model.sequence.parameters():
            p.mul_(10)
    return model


def net_for(student, htr, str_, maps=None, charsets=None, **cfg) -> UnifiedNet:
    charsets = charsets or {}
    info = {n: TeacherInfo(ClassMap(Charset(CHARS), Charset(charsets.get(n, CHARS))), 1, 5,
                           False) for n in ("htr", "str")}
    return UnifiedNet(student, {"htr": htr, "str": str_}, info,
                      UnifiedConfig(routes=ROUTES, **cfg), maps).eval()


def batch_of(texts, domains, seed: int = 5):
    cs = Charset(CHARS)
    ids = [cs.encode(t) for t in texts]
    torch.manual_seed(seed)
    images = torch.rand(len(texts), 1, 32, 64) * 4 - 2
    return images, {"targets": torch.tensor([i for x in ids for i in x]),
                    "target_lengths": torch.tensor([len(x) for x in ids]),
                    "domains": list(domains)}


def by_hand(student, teacher, image, text, temperature=2.0, hint_map=None,
            teacher_chars=CHARS) -> dict[str, float]:
    """One sample's four terms, written out: both models teacher-forced on the text (the
    teacher in its own indices), every step of the text and its end symbol counted."""
    s_ids = [CHARS.index(c) + 1 for c in text]
    t_ids = [teacher_chars.index(c) + 1 for c in text]
    s_t = torch.tensor([s_ids + [0]])
    t_t = torch.tensor([t_ids + [0]])
    with torch.no_grad():
        s = student(image[None], outputs=True, targets=s_t)
        t = teacher(image[None], outputs=True, targets=t_t)
    perm = [0] + [teacher_chars.index(c) + 1 for c in CHARS]  # student class -> teacher's
    p_t = F.softmax(t.logits[0] / temperature, -1)[:, perm]
    log_p_s = F.log_softmax(s.logits[0] / temperature, -1)
    logits = (p_t * (p_t.log() - log_p_s)).sum(-1).mean() * temperature ** 2
    g_s, g_t = s.extras["glimpses"][0], t.extras["glimpses"][0]
    with torch.no_grad():
        mapped = hint_map(g_s) if hint_map is not None else g_s
    hint = ((mapped - g_t) ** 2).mean()
    a_s, a_t = s.extras["attention"][0], t.extras["attention"][0]
    attention = (a_t * (a_t.log() - a_s.log())).sum(-1).mean()
    unit_s, unit_t = g_s / g_s.norm(dim=-1, keepdim=True), g_t / g_t.norm(dim=-1, keepdim=True)
    affinity = ((unit_s @ unit_s.T - unit_t @ unit_t.T) ** 2).mean()
    return {"logits": float(logits), "hint": float(hint), "attention": float(attention),
            "affinity": float(affinity)}


class Zeroed(nn.Module):
    """A teacher whose logits, glimpses and attention maps are all zero."""

    def __init__(self, model: Recognizer) -> None:
        super().__init__()
        self.inner, self.head, self.spec = model, model.head, model.spec
        self.autoregressive = True

    def forward(self, images, outputs=False, targets=None, taps=()):
        out = self.inner(images, outputs=True, targets=targets)
        out.logits = torch.zeros_like(out.logits)
        out.extras = {**out.extras, "glimpses": torch.zeros_like(out.extras["glimpses"]),
                      "attention": torch.zeros_like(out.extras["attention"])}
        return out


# ----------------------------------------------------------------------------- the terms
def test_step_kl_is_the_t2_scaled_kl_of_the_teacher_to_the_student_pinned_by_hand():
    student = torch.tensor([[[0.0, math.log(3.0)]]])  # p_s at T = 1: (1/4, 3/4)
    q = torch.tensor([[[0.5, 0.5]]])
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(kd_losses.step_kl(student, q, 1.0)) == pytest.approx(want, abs=1e-6)
    # T = 2: p_s = softmax((0, ln 3) / 2) = (1, sqrt 3) / (1 + sqrt 3), times T^2 = 4
    ps = torch.tensor([1.0, math.sqrt(3.0)]) / (1 + math.sqrt(3.0))
    want2 = 4 * float((q[0, 0] * (q[0, 0] / ps).log()).sum())
    assert float(kd_losses.step_kl(student, q, 2.0)) == pytest.approx(want2, abs=1e-5)


def test_hint_and_attention_and_affinity_pinned_by_hand_on_tiny_tensors():
    s = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])
    t = torch.tensor([[[0.0, 4.0], [1.0, 1.0]]])
    assert kd_losses.step_hint(s, t).tolist() == [[2.5, 1.0]]  # (1 + 4) / 2, (1 + 1) / 2
    assert kd_losses.step_hint(s, t, "l1").tolist() == [[1.5, 1.0]]
    with pytest.raises(ValueError, match="linear map"):
        kd_losses.step_hint(s, torch.zeros(1, 2, 3))
    a_s = torch.tensor([[[0.5, 0.5]]])
    a_t = torch.tensor([[[0.25, 0.75]]])
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(kd_losses.step_attention(a_s, a_t)) == pytest.approx(kl, abs=1e-6)
    assert float(kd_losses.step_attention(a_s, a_t, "l1")) == pytest.approx(0.5)
    # affinity: student glimpses of 2 channels, teacher's of 3 (no map needed);
    # step 3 is padding
    gs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    gt = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    c = 1 / math.sqrt(2)  # student cos(g1, g2) = 0, teacher's = 1/sqrt 2
    assert float(kd_losses.sample_affinity(gs, gt, mask)) == pytest.approx(2 * c ** 2 / 4)
    assert float(kd_losses.sample_affinity(gs, gt, mask, "l1")) == pytest.approx(2 * c / 4)


def test_attention_maps_are_reduced_over_the_height_resized_and_renormalised_by_hand():
    # a 2-D teacher map over a 2x2 grid, tokens column by column: (col 0: rows 0, 1), (col 1 ...)
    teacher = torch.tensor([[[0.1, 0.15, 0.3, 0.45]]])
    grid = kd_losses.attention_grid(teacher, (2, 2))
    assert torch.allclose(grid[0, 0], torch.tensor([[0.1, 0.3], [0.15, 0.45]]))
    student = kd_losses.attention_grid(torch.tensor([[[0.1, 0.2, 0.3, 0.4]]]))  # 1-D, 4 frames
    a_s, a_t = kd_losses.match_attention(student, grid)
    # columns (0.25, 0.75) -> 4 positions, linear, align_corners=False:
    # 0.25, 0.25 + 0.5 * 0.25, 0.25 + 0.5 * 0.75 ... clamped at the ends: sum 2, halved
    assert a_t[0, 0].tolist() == pytest.approx([0.125, 0.1875, 0.3125, 0.375])
    assert a_s[0, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # the smaller student map is stretched instead when the teacher is longer
    short = kd_losses.attention_grid(torch.tensor([[[0.25, 0.75]]]))
    long_ = kd_losses.attention_grid(torch.tensor([[[0.1, 0.2, 0.3, 0.4]]]))
    a_s, a_t = kd_losses.match_attention(short, long_)
    assert a_s[0, 0].tolist() == pytest.approx([0.125, 0.1875, 0.3125, 0.375])
    # two 2-D maps of different sizes: bilinear onto the larger grid, renormalised
    a, b = kd_losses.match_attention(torch.full((1, 1, 2, 2), 0.25), torch.full((1, 1, 4, 2),
                                                                                0.125))
    assert a.shape == b.shape == (1, 1, 8) and torch.allclose(a, b)


def test_padding_steps_change_no_term_in_the_functions():
    torch.manual_seed(0)
    mask = torch.tensor([[True, True, False, False]])
    s, t = torch.randn(1, 4, 6), torch.randn(1, 4, 6)
    gs, gt = torch.randn(1, 4, 5), torch.randn(1, 4, 7)
    a_s, a_t = torch.rand(1, 4, 9).softmax(-1), torch.rand(1, 4, 9).softmax(-1)

    def terms(s, t, gs, gt, a_s, a_t):
        q = t.softmax(-1)
        out = [torch.where(mask, kd_losses.step_kl(s, q, 2.0), 0).sum(),
               torch.where(mask, kd_losses.step_hint(gs, gs * 0.5), 0).sum(),
               torch.where(mask, kd_losses.step_attention(a_s, a_t), 0).sum(),
               kd_losses.sample_affinity(gs, gt, mask).sum()]
        return torch.stack(out)

    before = terms(s, t, gs, gt, a_s, a_t)
    noisy = [x.clone() for x in (s, t, gs, gt, a_s, a_t)]
    for x in noisy:
        x[:, 2:] = torch.rand_like(x[:, 2:]) * 50
    assert torch.equal(terms(*noisy), before)
    assert bool((before > 1e-3).all())


# ----------------------------------------------------------------------------- charsets
def test_class_map_folds_case_and_punctuation_and_splits_what_a_teacher_cannot_tell():
    student = Charset(list("aAb'-"))
    lower = ClassMap(student, Charset(list("ab\u2019\u2014")))  # no upper case, curly quote
    logits = torch.log(torch.tensor([[0.1, 0.4, 0.2, 0.2, 0.1]]))  # end, a, b, ’, —
    q = lower.probs(logits, 1.0)
    # a's 0.4 split over a and A; ’ is ', — is -
    assert q[0].tolist() == pytest.approx([0.1, 0.2, 0.2, 0.2, 0.2, 0.1])
    assert lower.to_teacher.tolist() == [0, 1, 1, 2, 3, 4]  # A is fed as a
    upper = ClassMap(Charset(list("ab")), Charset(list("aAbz")))
    q = upper.probs(torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.1, 0.3]])), 1.0)
    # A joins a; z has no student class: its 0.3 is dropped and the rest renormalised
    assert q[0].tolist() == pytest.approx([0.1 / 0.7, 0.5 / 0.7, 0.1 / 0.7])
    assert upper.dropped == ["z"] and "renormalised" in upper.describe()
    exact = ClassMap(student, Charset(list("ab")), fold=False)
    assert exact.to_teacher.tolist() == [0, 1, -1, 2, -1, -1]
    targets = torch.tensor([[1, 2, 0, -100]])
    assert exact.teacher_targets(targets).tolist() == [[1, -1, 0, -100]]
    same = ClassMap(student, student)
    assert same.identity and same.matrix is None and same.describe() == ""


def test_rgb_batches_reach_a_grey_teacher_as_pillows_luma():
    rgb = Image.new("RGB", (4, 2), (200, 30, 90))
    spec_rgb, spec_l = InputSpec(channels=3, width=16), InputSpec(channels=1, width=16)
    x = Collate(spec_rgb, None)([Sample(rgb, ["a"], "k")])["images"]
    y = Collate(spec_l, None)([Sample(rgb.convert("L"), ["a"], "k")])["images"]
    assert torch.allclose(to_channels(x, 1), y, atol=1 / 255)
    assert torch.equal(to_channels(y, 3), y.expand(-1, 3, -1, -1))


# ----------------------------------------------------------------------------- the net
def test_every_term_is_zero_when_the_student_is_the_teacher():
    student = tiny(0)
    net = net_for(student, copy.deepcopy(student), copy.deepcopy(student))
    images, batch = batch_of(["abc", "de", "a"], ["handwriting", "scene", "scene"])
    with torch.no_grad():
        terms = net(images, batch)
    assert set(terms) == {"ce", *TERMS}
    for name in TERMS:
        assert abs(float(terms[name])) < 1e-6, (name, terms)


def test_each_sample_is_taught_by_the_teacher_of_its_domain_pinned_by_hand():
    student, htr, str_ = tiny(0), tiny(1), tiny(2)
    net = net_for(student, htr, str_)
    texts, domains = ["abc", "ed", "bad", "c"], ["handwriting", "scene", "scene", "handwriting"]
    images, batch = batch_of(texts, domains)
    with torch.no_grad():
        per = net.per_sample(images, batch)
    assert per.teacher == ["htr", "str", "str", "htr"]
    for i, (text, domain) in enumerate(zip(texts, domains)):
        own = htr if domain == "handwriting" else str_
        other = str_ if domain == "handwriting" else htr
        want = by_hand(student, own, images[i], text)
        wrong = by_hand(student, other, images[i], text)
        for name in TERMS:
            got = float(per.value(name)[i])
            assert want[name] > 1e-6, (name, want)  # a teacher clearly unlike the student
            assert got == pytest.approx(want[name], rel=1e-4, abs=1e-7), (i, name)
            assert got != pytest.approx(wrong[name], rel=1e-3), (i, name)
    # the batch's terms: the mean over supervised steps (affinity: over samples)
    with torch.no_grad():
        terms = net(images, batch)
    steps = torch.tensor([len(t) + 1 for t in texts], dtype=torch.float32)
    for name in ("logits", "hint", "attention"):
        mean = float((per.value(name) * steps).sum() / steps.sum())
        assert float(terms[name]) == pytest.approx(mean, rel=1e-5)
    assert float(terms["affinity"]) == pytest.approx(float(per.value("affinity").mean()),
                                                     rel=1e-5)


def test_under_bfloat16_autocast_the_terms_are_float32_and_near_the_float32_ones():
    """--amp: the student runs in bfloat16, the KD terms are still computed in float32."""
    student, htr, str_ = tiny(0), tiny(1), tiny(2)
    net = net_for(student, htr, str_)
    images, batch = batch_of(["abc", "ed", "bad", "c"],
                             ["handwriting", "scene", "scene", "handwriting"])
    with torch.no_grad():
        full = net(images, batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(images, batch)
    for name in TERMS:
        assert low[name].dtype == torch.float32, name
        assert float(low[name]) == pytest.approx(float(full[name]), rel=0.1, abs=1e-3), name


@pytest.mark.parametrize("zeroed, kept", [("str", "handwriting"), ("htr", "scene")])
def test_zeroing_one_teachers_outputs_leaves_the_other_domains_losses_unchanged(zeroed, kept):
    student, htr, str_ = tiny(0), tiny(1), tiny(2)
    images, batch = batch_of(["abc", "ed", "bad", "c"],
                             ["handwriting", "scene", "scene", "handwriting"])
    with torch.no_grad():
        before = net_for(student, htr, str_).per_sample(images, batch)
        teachers = {"htr": htr, "str": str_, zeroed: Zeroed({"htr": htr, "str": str_}[zeroed])}
        after = net_for(student, teachers["htr"], teachers["str"]).per_sample(images, batch)
    for i, domain in enumerate(batch["domains"]):
        for name in TERMS:
            same = torch.equal(before.value(name)[i], after.value(name)[i])
            assert same == (domain == kept), (i, domain, name)


def test_padding_steps_change_no_term_in_mixed_batches():
    """A short handwriting text alone, and in a batch with a longer text of each domain
    (padding steps for it, in the student and in its teacher): the same terms."""
    student, htr, str_ = tiny(0), tiny(1), tiny(2)
    net = net_for(student, htr, str_)
    images, batch = batch_of(["ab", "abcde", "edcba"], ["handwriting", "handwriting", "scene"])
    alone = {k: (v[:1] if torch.is_tensor(v) and k == "images" else v) for k, v in batch.items()}
    alone.update(targets=batch["targets"][:2], target_lengths=batch["target_lengths"][:1],
                 domains=["handwriting"])
    with torch.no_grad():
        mixed = net.per_sample(images, batch)
        single = net.per_sample(images[:1], alone)
    for name in TERMS:
        assert float(mixed.value(name)[0]) == pytest.approx(float(single.value(name)[0]),
                                                            rel=1e-5, abs=1e-9), name


def test_unrouted_samples_learn_from_their_labels_only():
    student, htr, str_ = tiny(0), tiny(1), tiny(2)
    net = net_for(student, htr, str_)
    images, batch = batch_of(["ab", "cd", "ee"], ["print", None, "scene"])
    with torch.no_grad():
        per = net.per_sample(images, batch)
        terms = net(images, batch)
        ce = student.head.loss(student(images, targets=eos_targets(
            batch["targets"], batch["target_lengths"])), eos_targets(batch["targets"],
                                                                     batch["target_lengths"]))
    assert per.teacher == [None, None, "str"]
    for name in TERMS:
        assert per.value(name)[:2].tolist() == [0.0, 0.0] and float(per.value(name)[2]) > 0
        assert float(terms[name]) == pytest.approx(float(per.value(name)[2]), rel=1e-5)
    assert float(terms["ce"]) == pytest.approx(float(ce), rel=1e-6)  # every sample learns


def test_a_teacher_with_another_charset_is_fed_its_own_indices_and_mapped_back():
    student, htr = tiny(0), tiny(1)
    order = list("ecadb")  # the same characters in another order
    net = net_for(student, htr, tiny(2), charsets={"htr": order})
    images, batch = batch_of(["bead"], ["handwriting"])
    with torch.no_grad():
        per = net.per_sample(images, batch)
    want = by_hand(student, htr, images[0], "bead", teacher_chars=order)
    for name in TERMS:
        assert float(per.value(name)[0]) == pytest.approx(want[name], rel=1e-4), name


def test_a_light_former_teachers_2d_map_is_summed_over_its_height_for_a_1d_student():
    student = tiny(0)
    torch.manual_seed(4)
    spec = make_spec("vgg-small", "tokens", None, "linear", "lightformer",
                     backbone_args={"channels": (8, 8, 16, 16)},
                     head_args={"d_model": 16, "heads": 2, "max_length": 5})
    teacher = Recognizer(spec, 6, input_size=(32, 64)).eval()
    info = {n: TeacherInfo(ClassMap(Charset(CHARS), Charset(CHARS)), 1, 5, n == "htr")
            for n in ("htr", "str")}
    net = UnifiedNet(student, {"htr": teacher, "str": tiny(2)}, info,
                     UnifiedConfig(routes=ROUTES, w_hint=0.0)).eval()
    images, batch = batch_of(["bead"], ["handwriting"])
    targets = torch.tensor([[2, 5, 1, 4, 0]])
    with torch.no_grad():
        per = net.per_sample(images, batch)
        s = student(images, outputs=True, targets=targets).extras["attention"][0]  # [5, T]
        t = teacher(images, outputs=True, targets=targets)
    h, w = t.extras["feature_size"]
    assert h > 1 and t.extras["attention"].shape[-1] == h * w  # a 2-D map
    columns = t.extras["attention"][0].reshape(5, w, h).sum(-1)  # tokens column by column
    size = max(w, s.shape[-1])
    a_t = F.interpolate(columns[None], size=size, mode="linear", align_corners=False)[0]
    a_s = F.interpolate(s[None], size=size, mode="linear", align_corners=False)[0]
    a_t, a_s = a_t / a_t.sum(-1, keepdim=True), a_s / a_s.sum(-1, keepdim=True)
    want = (a_t * (a_t.log() - a_s.log())).sum(-1).mean()
    assert float(per.value("attention")[0]) == pytest.approx(float(want), rel=1e-4)


def test_the_hint_needs_a_map_when_glimpse_sizes_differ_and_the_affinity_does_not():
    student, wide = tiny(0), tiny(1, lstm=12)  # glimpses of 16 and 24 channels
    with pytest.raises(ValueError, match="linear map"):
        net_for(student, wide, tiny(2))
    images, batch = batch_of(["abc", "de"], ["handwriting", "scene"])
    net = net_for(student, wide, tiny(2), w_hint=0.0)  # no hint: no map, affinity works
    with torch.no_grad():
        terms = net(images, batch)
    assert "hint" not in terms and float(terms["affinity"]) > 1e-4
    torch.manual_seed(3)
    mapping = nn.Linear(16, 24)
    net = net_for(student, wide, tiny(2), maps={"htr": mapping})
    with torch.no_grad():
        per = net.per_sample(images, batch)
    want = by_hand(student, wide, images[0], "abc", hint_map=mapping)
    assert float(per.value("hint")[0]) == pytest.approx(want["hint"], rel=1e-4)
    assert float(per.value("affinity")[0]) == pytest.approx(want["affinity"], rel=1e-4)
    # the map trains with the student and stays out of the deployed checkpoint
    method = UnifiedMethod(Charset(CHARS), net.cfg, {"mode": "unified"})
    groups = method.param_groups(net)
    assert [g["name"] for g in groups] == ["student"]
    assert {id(p) for p in mapping.parameters()} <= {id(p) for p in groups[0]["params"]}
    deployed, extra = method.deployable(net)
    assert deployed is student and extra == {"distill": {"mode": "unified"}}


def test_kd_terms_train_the_student_and_never_a_teacher():
    student, htr, str_ = tiny(0), tiny(1), tiny(2)
    net = net_for(student, htr, str_).train()
    images, batch = batch_of(["abc", "de"], ["handwriting", "scene"])
    for name in TERMS:
        net.zero_grad(set_to_none=True)
        net(images, batch)[name].backward()
        assert all(p.grad is None for p in net.teachers.parameters()), name
        encoder = [p.grad for p in student.sequence.parameters()]
        assert all(g is not None and float(g.abs().sum()) > 0 for g in encoder), name
    assert not net.teachers["htr"].training and not net.teachers["htr"].module.training


def test_the_method_weighs_the_terms_and_ramps_only_the_kd_ones():
    student, htr, str_ = tiny(0), tiny(1), tiny(2)
    cfg = {"w_logits": 0.5, "w_hint": 2.0, "w_attention": 3.0, "w_affinity": 4.0, "warmup": 0.5}
    net = net_for(student, htr, str_, **cfg)
    method = UnifiedMethod(Charset(CHARS), net.cfg, {})
    method.begin(total=10, step=0)
    method.after_step(net, 2)  # ramp 2 / (0.5 * 10) = 0.4
    images, batch = batch_of(["abc", "de"], ["handwriting", "scene"])
    with torch.no_grad():
        out = method.loss(net, batch | {"images": images}, torch.device("cpu"))
    t = out.terms
    want = t["ce"] + 0.4 * (0.5 * t["logits"] + 2 * t["hint"] + 3 * t["attention"]
                            + 4 * t["affinity"])
    assert float(out.total) == pytest.approx(float(want), rel=1e-5)


def test_a_joint_ctc_attention_student_keeps_its_ctc_loss_on_the_labels_unramped():
    from ocrkit.models.heads.sequence_targets import aux_ctc_loss

    student, htr, str_ = tiny(0, ctc_weight=0.5), tiny(1), tiny(2)
    net = net_for(student, htr, str_, warmup=0.5)
    method = UnifiedMethod(Charset(CHARS), net.cfg, {})
    method.begin(total=10, step=0)
    method.after_step(net, 2)  # ramp 0.4: KD terms only
    images, batch = batch_of(["abc", "de"], ["handwriting", "scene"])
    with torch.no_grad():
        out = method.loss(net, batch | {"images": images}, torch.device("cpu"))
        targets = student.head.targets(batch["targets"], batch["target_lengths"])
        frames = student(images, outputs=True, targets=targets).extras["ctc_logits"]
        aux = aux_ctc_loss(frames, batch["targets"], batch["target_lengths"])
    t = out.terms
    assert float(t["aux_ctc"]) == pytest.approx(float(aux), rel=1e-5) and float(aux) > 0
    kd = sum(t[k] for k in TERMS)
    assert float(out.total) == pytest.approx(float(t["ce"] + 0.5 * aux + 0.4 * kd), rel=1e-5)
    plain = net_for(tiny(0), htr, str_)  # no ctc_weight: no such term
    assert "aux_ctc" not in plain(images, batch)


# ----------------------------------------------------------------------------- sampler
def test_domain_balanced_sampler_draws_domains_equally_resumes_and_shards():
    domains = ["scene"] * 10 + ["handwriting"] * 2 + [None] * 4
    sampler = DomainBalancedSampler(domains, 6, seed=1)
    assert sampler.batches_per_epoch == 2 and len(sampler) == 12
    order = list(sampler)
    for k in range(2):
        got = [domains[i] for i in order[6 * k:6 * k + 6]]
        assert sorted(got, key=str) == sorted(["scene", "handwriting", None] * 2, key=str)
    assert order == list(DomainBalancedSampler(domains, 6, seed=1))
    again = DomainBalancedSampler(domains, 6, seed=1)
    again.set_position(0, 1)  # resumed after the first batch
    assert list(again) == order[6:]
    again.set_position(1, 0)
    assert list(again) != order
    # the two handwriting samples are drawn equally often (a small domain repeats)
    hand = [i for i in order if domains[i] == "handwriting"]
    assert sorted(hand) == [10, 10, 11, 11]
    ranks = [list(DomainBalancedSampler(domains, 3, seed=1, rank=r, world=2)) for r in (0, 1)]
    scene = [[i for i in r if domains[i] == "scene"] for r in ranks]
    assert not set(scene[0]) & set(scene[1])  # one pass over scene, split between ranks
    # the shuffled order of the same data follows the data's shares instead
    plain = [domains[i] for i in StepSampler(len(domains), 6, seed=1)]
    assert plain.count("scene") > plain.count("handwriting") * 2


def test_domain_weights_set_the_ratio_and_equal_weights_keep_the_balanced_order():
    assert weighted_cycle([1, 1]) == [0, 1] and weighted_cycle([2, 1]) == [0, 1, 0]
    assert sorted(weighted_cycle([3, 1, 2])) == [0, 0, 0, 1, 2, 2]
    domains = ["handwriting"] * 30 + ["scene"] * 90
    weighted = DomainBalancedSampler(domains, 6, seed=2, weights={"handwriting": 2})
    drawn = [domains[i] for i in weighted]
    assert drawn.count("handwriting") == 2 * drawn.count("scene")  # 2:1, not 1:3
    assert drawn[:3] == ["handwriting", "scene", "handwriting"]  # spread, not in runs
    equal = DomainBalancedSampler(domains, 6, seed=2, weights={"scene": 1, "handwriting": 1})
    assert list(equal) == list(DomainBalancedSampler(domains, 6, seed=2))
    with pytest.raises(UsageError, match="--domain-weight photo: no training sample has that "
                                         "domain .*handwriting 30, scene 90"):
        DomainBalancedSampler(domains, 6, weights={"photo": 2})


@pytest.mark.parametrize("values, needle", [
    (["handwriting"], "give NAME=N"), (["handwriting=0"], "give NAME=N"),
    (["handwriting=1.5"], "give NAME=N"), (["=2"], "give NAME=N"),
    (["scene=2", "scene=3"], "scene given twice")])
def test_malformed_domain_weights_are_one_line_errors(values, needle):
    with pytest.raises(UsageError, match=needle):
        parse_domain_weights(values)
    with pytest.raises(UsageError, match=needle):  # refused with the options, before any work
        TrainConfig(out="x", max_steps=1, domain_weights=tuple(values)).validate()
    assert parse_domain_weights(["handwriting=2", " scene = 1"]) == {"handwriting": 2, "scene": 1}


def test_the_loop_balances_domains_when_asked_and_batches_carry_domains(tmp_path):
    class Data:
        def __init__(self, dataset):
            self.dataset = dataset  # as augmentation wraps a dataset

        def __len__(self):
            return 8

    class Inner:
        def __len__(self):
            return 8

        def domains(self):
            return ["a"] * 6 + ["b"] * 2

    messages = []
    for balance, kind in ((False, StepSampler), (True, DomainBalancedSampler)):
        cfg = TrainConfig(out=str(tmp_path), max_steps=1, batch_size=4, balance_domains=balance)
        trainer = Trainer(nn.Linear(1, 1), None, Data(Inner()), None, None, cfg, {},
                          console_print=messages.append)
        sampler = trainer._sampler(type("D", (), {"rank": 0, "world": 1, "main": True})())
        assert type(sampler) is kind
    assert "each domain is drawn 1/2" in messages[-1] and "a 6, b 2" in messages[-1]
    cfg = TrainConfig(out=str(tmp_path), max_steps=1, batch_size=4, domain_weights=("b=3",))
    trainer = Trainer(nn.Linear(1, 1), None, Data(Inner()), None, None, cfg, {},
                      console_print=messages.append)
    sampler = trainer._sampler(type("D", (), {"rank": 0, "world": 1, "main": True})())
    assert type(sampler) is DomainBalancedSampler and sampler.weights == [1, 3]
    assert "--domain-weight: domains drawn a 1/4, b 3/4 of the time" in messages[-1]
    subset = torch.utils.data.Subset(Data(Inner()), [0, 6, 7])  # a wrapper's own indices
    assert dataset_domains(subset) == ["a", "b", "b"]
    # domains follow the kept samples (a broken one is dropped by the collate)
    ok = Image.new("L", (20, 32), 255)
    samples = [Sample(None, ["ab"], "k0", "broken", "scene"), Sample(ok, ["ab"], "k1", None,
                                                                        "handwriting"),
               Sample(ok, ["a"], "k2", None, None)]
    batch = Collate(InputSpec(), Charset(list("ab")))(samples)
    assert batch["keys"] == ["k1", "k2"] and batch["domains"] == ["handwriting", None]


# ----------------------------------------------------------------------------- CLI
TINY = ["--backbone-arg", "channels=(8,8,16,16)", "--sequence-arg", "layers=1", "--height",
        "32", "--width", "96", "-b", "8", "-w", "0", "-q", "--no-augment", "--channels", "3"]
HEAD = ["--head", "attention", "--head-arg", "hidden=16", "--head-arg", "embed_dim=8"]


@pytest.fixture(scope="module")
def specialists(tmp_path_factory):
    """English handwriting and scene words (synth) and an attention specialist of each
    (the scene one with narrower glimpses, so the student's hint goes through a map),
    plus a CTC recognizer."""
    from click.testing import CliRunner

    from ocrkit.cli import cli

    root = tmp_path_factory.mktemp("unified")
    run = CliRunner()

    def ok(*args):
        res = run.invoke(cli, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res

    for domain in ("handwriting", "scene"):
        ok("synth", "--lang", "en", "--domain", domain, "-n", 16, "--cols", 6, "--height", 32,
           "--width", 96, "--seed", 3, "--out", root / domain, "-w", 1, "-q")
    common = [*HEAD, "--max-length", 8, "--max-steps", 2, *TINY]
    ok("train", "--train", root / "handwriting", "-o", root / "htr", "--sequence-arg",
       "hidden=8", *common)
    ok("train", "--train", root / "scene", "-o", root / "str", "--sequence-arg", "hidden=6",
       *common)
    ok("train", "--train", root / "scene", "-o", root / "ctc", "--max-steps", 1,
       "--sequence-arg", "hidden=6", *TINY)
    return root


def test_unified_student_trains_evaluates_infers_and_exports(cli, specialists, tmp_path):
    root = specialists
    out = tmp_path / "uni"
    res = cli("distill", "--teacher", f"htr={root / 'htr' / 'best.pt'}", "--teacher",
              f"str={root / 'str' / 'best.pt'}", "--train", root / "handwriting", "--train",
              root / "scene", "--val", root / "scene", "-o", out, "--max-steps", 3,
              "--balance-domains", "--student-preset", "same", "-b", 8, "-w", 0, "--no-augment")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["kd_mode"] == "unified" and summary["unrouted_samples"] == 0
    assert summary["teachers"] == {"htr": {"domains": ["handwriting"], "training_samples": 16},
                                   "str": {"domains": ["scene"], "training_samples": 16}}
    assert "--balance-domains: each domain is drawn 1/2" in res.stderr
    assert "str: hint through a linear map of the student's 16-channel glimpses to its 12" \
        in res.stderr
    records = [json.loads(line) for line in open(out / "metrics.jsonl") if '"terms"' in line]
    assert set(records[-1]["terms"]) == {"ce", *TERMS}
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["spec"]["head"]["name"] == "attention" and ckpt["input"]["channels"] == 3
    record = ckpt["distill"]
    assert record["mode"] == "unified" and set(record["teachers"]) == {"htr", "str"}
    assert len(record["teachers"]["htr"]["sha256"]) == 64
    assert not any(k.startswith(("teachers.", "regressors.", "student.")) for k in
                   ckpt["state_dict"])  # the student alone, an ordinary recognizer
    options = json.load(open(out / "config.json"))["options"]
    assert options["teacher"] == [f"htr={root / 'htr' / 'best.pt'}",
                                  f"str={root / 'str' / 'best.pt'}"]
    res = cli("evaluate", out / "best.pt", root / "handwriting", "-q")
    assert res.exit_code == 0 and json.loads(res.stdout)["samples"] == 16
    image = next((root / "scene" / "images").rglob("*.png"))
    res = cli("infer", "-m", out / "best.pt", image)
    assert res.exit_code == 0 and json.loads(res.stdout)["path"] == str(image)
    res = cli("distill", "-o", out, "--resume", "--max-steps", 4)  # the teachers from config
    assert res.exit_code == 0, res.output
    pytest.importorskip("onnxruntime")
    res = cli("export", out / "best.pt", "-o", out / "s.onnx", "--verify", "--samples",
              root / "scene")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["verify"]["texts_match"] is True


def test_unified_refusals_are_one_line_and_name_what_differs(cli, specialists, tmp_path):
    root = specialists
    htr, str_ = f"htr={root / 'htr' / 'best.pt'}", f"str={root / 'str' / 'best.pt'}"
    data = ["--train", root / "handwriting", "--train", root / "scene", "--max-steps", 1,
            "-b", 8, "-w", 0, "-q", "--unknown", "skip"]
    one_line_error(cli("distill", "--teacher", htr, "--teacher",
                       f"str={root / 'ctc' / 'best.pt'}", *data, "-o", tmp_path / "a"),
                   2, "str=", "CTC", "--head attention")
    one_line_error(cli("distill", "--teacher", htr, "--teacher", str_, "--train",
                       root / "handwriting", "--max-steps", 1, "-o", tmp_path / "b"),
                   2, "teacher str teaches scene", "handwriting 16")
    one_line_error(cli("distill", "--teacher", htr, "--teacher-domain", "htr=print", *data,
                       "-o", tmp_path / "c"), 2, "teacher htr teaches print")
    one_line_error(cli("distill", "--teacher", htr, *data, "--unrouted", "error",
                       "-o", tmp_path / "d"), 2, "16 of 32", "domain scene")
    one_line_error(cli("distill", "--teacher", htr, "--teacher", str_, *data, "--online",
                       "-o", tmp_path / "e"), 2, "--online", "one teacher")
    one_line_error(cli("distill", "--teacher", root / "htr" / "best.pt", *data, "--w-hint", 0,
                       "-o", tmp_path / "f"), 2, "--w-hint", "unified")
    one_line_error(cli("distill", "--teacher", htr, "--teacher", str_, *data, "--height", 48,
                       "-o", tmp_path / "g"), 2, "teacher htr reads 32x96", "48x96")
    one_line_error(cli("distill", "--teacher", htr, "--teacher", htr.replace("htr=", "x="),
                       "--teacher-domain", "x=handwriting", *data, "-o", tmp_path / "h"),
                   2, "two teachers")
    assert not any((tmp_path / d).exists() for d in "abcdefgh")
