"""Knowledge distillation (Yu & Zhang §3.5) on the shared training spine: faithful
loss terms, gradients that never reach a teacher, frozen teachers that never change,
and `ocrkit distill` from the CLI in every mode."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import free_port, one_line_error
from torch import nn
from torch.nn import functional as F

from ocrkit.charset import Charset
from ocrkit.checkpoint import load_checkpoint
from ocrkit.data.batch import Collate, InputSpec, frame_mask
from ocrkit.methods import kd_losses
from ocrkit.methods.distill import DistillMethod, DistillNet, KDConfig, _key, regressor
from ocrkit.methods.distill_setup import half_spec
from ocrkit.models.recognizer import Recognizer, build_model, make_spec
from ocrkit.train.frozen import Frozen

TEACHER = ["--backbone-arg", "channels=(8,16,16,32)", "--sequence-arg", "hidden=16",
           "--sequence-arg", "layers=2", "--height", "32", "--width", "96", "-b", "8", "-w", "0"]
LOOP = ["-b", "8", "-w", "0", "-q"]


def tiny(neck: str = "cap", rows: int = 1, hidden: int = 16, layers: int = 2,
         channels=(8, 16, 16, 32), size=(32, 96)) -> Recognizer:
    neck_args = {"rows": rows} if rows > 1 else {}
    spec = make_spec("vgg-small", neck, backbone_args={"channels": channels},
                     neck_args=neck_args, sequence_args={"hidden": hidden, "layers": layers})
    return Recognizer(spec, 10, input_size=size)


def batch_for(images: int = 3, rows: int = 1, size=(32, 96)) -> dict:
    from PIL import Image

    from ocrkit.data import Sample

    charset = Charset(list("abcdefghi"))
    collate = Collate(InputSpec(*size, "stretch", rows=rows), charset)
    rng = torch.Generator().manual_seed(0)
    samples = []
    for i in range(images):
        arr = (torch.rand(size, generator=rng) * 255).byte().numpy()
        texts = ["abc", "de", "f"][:rows] if rows > 1 else ["abcd"[: i + 1]]
        samples.append(Sample(Image.fromarray(arr), texts, str(i)))
    return collate(samples)


def pairs_for(student: Recognizer, teacher: Recognizer, size=(32, 96)):
    from ocrkit.models.recognizer import check_forward

    names = [n for n in student.tap_points() if n.startswith("stage")]
    s = check_forward(student, *size, taps=names)
    t = check_forward(teacher, *size, taps=names)
    return [(n, n) for n in names], {_key(n, n): regressor(s.taps[n].shape, t.taps[n].shape)
                                     for n in names}


# ============================================================================ the terms
def test_soft_kl_is_the_per_frame_kl_at_temperature_and_zero_against_itself():
    s, t = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    ps, pt = F.softmax(s / 1.5, -1), F.softmax(t / 1.5, -1)
    manual = (pt * (pt.log() - ps.log())).sum(-1).mean()
    assert torch.allclose(kd_losses.soft_kl(s, t, 1.5), manual, atol=1e-6)
    assert torch.allclose(kd_losses.soft_kl(s, t, 1.5, t2=True), manual * 2.25, atol=1e-6)
    for term in (kd_losses.soft_kl(s, s, 1.5), kd_losses.mutual_kl(s, s),
                 kd_losses.ctc_mean_kl(s, s), kd_losses.hint_mse(s, s),
                 kd_losses.state_mse((s, t), (s, t))):
        assert term.abs().item() < 1e-7


def test_ctc_mean_kl_negates_the_blank_and_ignores_frame_counts():
    s, t = torch.randn(2, 9, 5), torch.randn(2, 4, 5)  # different frame counts
    sign = torch.tensor([-1.0, 1, 1, 1, 1])
    ms = F.softmax(s * sign / 0.5, -1).mean(1)
    mt = F.softmax(t * sign / 0.5, -1).mean(1)
    manual = (mt * (mt.log() - ms.log())).sum(-1).mean()
    assert torch.allclose(kd_losses.ctc_mean_kl(s, t, 0.5), manual, atol=1e-5)


def test_paper_normalisation_and_the_per_element_mean():
    a, b = torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)
    assert kd_losses.hint_mse(a, b, "mean").item() == 1.0
    assert kd_losses.hint_mse(a, b, "sum").item() == 60.0  # Eq. 14: sum over C*H*W, / B
    h = (torch.zeros(4, 6), torch.zeros(4, 6))
    assert kd_losses.state_mse(h, (torch.ones(4, 6), torch.ones(4, 6)), "sum").item() == 12.0


def test_literal_skd_form_counts_the_hard_term_again():
    assert KDConfig().weights()["ctc"] == 1.0
    assert KDConfig(skd_form="literal", soft_weight=0.3).weights()["ctc"] == pytest.approx(1.7)


def test_state_is_the_top_layers_h_n_and_c_n_values():
    model = tiny().eval()
    images = torch.rand(2, 1, 32, 96)
    out = model(images, outputs=True)
    frames = model.neck(model.backbone(images))
    _, (h_n, c_n) = model.sequence.rnn(frames)
    assert torch.equal(out.rnn_state[0], torch.cat([h_n[-2], h_n[-1]], 1))
    assert torch.equal(out.rnn_state[1], torch.cat([c_n[-2], c_n[-1]], 1))
    assert torch.equal(out.logits, model(images))  # the same pass, logits unchanged


def test_unknown_tap_lists_the_named_ones():
    from ocrkit.errors import UsageError

    with pytest.raises(UsageError, match="stage1, stage2"):
        tiny()(torch.rand(1, 1, 32, 96), outputs=True, taps=["stage9"])


def test_half_preset_halves_widths_and_keeps_frames_and_hints_map_shapes():
    teacher = tiny()
    spec = half_spec(teacher.spec)
    assert spec["backbone"]["args"]["channels"] == (4, 8, 8, 16)
    assert spec["sequence"]["args"] == {"hidden": 16, "layers": 1}
    student = Recognizer(spec, 10, input_size=(32, 96))
    x = torch.rand(2, 1, 32, 96)
    assert student(x).shape == teacher(x).shape  # same frames, same classes
    pairs, regs = pairs_for(student, teacher)
    s = student(x, outputs=True, taps=[a for a, _ in pairs])
    t = teacher(x, outputs=True, taps=[b for _, b in pairs])
    for a, b in pairs:
        assert regs[_key(a, b)](s.taps[a]).shape == t.taps[b].shape
    ps = sum(p.numel() for p in student.parameters())
    pt = sum(p.numel() for p in teacher.parameters())
    assert ps < 0.6 * pt


@pytest.mark.parametrize("neck, rows, mode", [("cap", 1, "paper"), ("cap", 1, "ctc-mean-kl"),
                                              ("cap", 1, "dml"), ("multirow-stretch", 3, "paper"),
                                              ("row-attention", 3, "paper")])
def test_every_term_is_zero_for_a_model_against_itself(neck, rows, mode):
    size = (48, 48) if rows > 1 else (32, 96)
    model = tiny(neck, rows, size=size)
    pairs, regs = pairs_for(model, model, size) if mode == "paper" else ([], {})
    cfg = KDConfig(mode=mode, hints=pairs)
    net = DistillNet(model, copy.deepcopy(model), cfg, regs).eval()
    terms = net(batch_for(rows=rows, size=size)["images"], batch_for(rows=rows, size=size))
    kd = {k: v.item() for k, v in terms.items() if k not in ("ctc", "teacher_ctc")}
    expected = {"paper": {"soft", "hint", "lstm"}, "ctc-mean-kl": {"mean_kl"}, "dml": {"dml"}}
    assert set(kd) == expected[mode]
    assert all(abs(v) < 1e-6 for v in kd.values()), kd


@pytest.mark.parametrize("online", [False, True])
def test_kd_terms_never_send_a_gradient_to_the_teacher(online):
    teacher, student = tiny(), Recognizer(half_spec(tiny().spec), 10, input_size=(32, 96))
    pairs, regs = pairs_for(student, teacher)
    net = DistillNet(student, teacher, KDConfig(online=online, hints=pairs), regs).train()
    batch = batch_for()
    terms = net(batch["images"], batch)
    kd = terms["soft"] + terms["hint"] + terms["lstm"]
    kd.backward()
    for p in net.teacher_model.parameters():
        assert p.grad is None or not p.grad.any()
    assert any(p.grad is not None and p.grad.any() for p in student.parameters())
    if online:  # the teacher learns from its own CTC loss only
        terms = net(batch["images"], batch)
        terms["teacher_ctc"].backward()
        assert any(p.grad is not None and p.grad.any() for p in net.teacher_model.parameters())


def test_frozen_stays_in_eval_mode_and_keeps_its_buffers():
    teacher = tiny()
    frozen = Frozen(teacher)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    container = nn.ModuleDict({"t": frozen})
    container.train()
    assert not frozen.training and not teacher.training
    assert all(not m.training for m in teacher.modules())
    out = frozen(torch.rand(4, 1, 32, 96))
    assert not out.requires_grad
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_method_groups_and_deployable():
    teacher, student = tiny(), Recognizer(half_spec(tiny().spec), 10, input_size=(32, 96))
    pairs, regs = pairs_for(student, teacher)
    for online, names in ((False, ["student"]), (True, ["student", "teacher"])):
        net = DistillNet(student, teacher, KDConfig(online=online, hints=pairs), regs)
        method = DistillMethod(Charset(list("abcdefghi")), net.cfg, {"mode": "paper"})
        assert [g["name"] for g in method.param_groups(net)] == names
        module, extra = method.deployable(net)
        assert module is student and extra == {"distill": {"mode": "paper"}}
        assert len(method.param_groups(net)[0]["params"]) == (
            len(list(student.parameters())) + len(list(net.regressors.parameters())))


def test_kd_warmup_ramps_the_kd_terms_only():
    method = DistillMethod(Charset(list("abcdefghi")), KDConfig(warmup=0.5), {})
    method.begin(100, 0)
    assert method.ramp() == 0.0
    method.after_step(None, 25)
    assert method.ramp() == 0.5
    method.begin(100, 80)  # resumed past the warm-up
    assert method.ramp() == 1.0
    teacher, student = tiny(), Recognizer(half_spec(tiny().spec), 10, input_size=(32, 96))
    net = DistillNet(student, teacher, KDConfig(online=True, warmup=0.5), {})
    method = DistillMethod(Charset(list("abcdefghi")), net.cfg, {})
    method.begin(100, 0)
    out = method.loss(net, batch_for(), torch.device("cpu"))
    assert torch.allclose(out.total, out.terms["ctc"] + out.terms["teacher_ctc"])  # KD off


def test_each_parameter_group_is_clipped_on_its_own():
    from ocrkit.train.loop import TrainConfig, clip_groups, param_groups
    from ocrkit.train.setup import make_optimizer

    teacher, student = tiny(), Recognizer(half_spec(tiny().spec), 10, input_size=(32, 96))
    net = DistillNet(student, teacher, KDConfig(online=True), {})
    method = DistillMethod(Charset(list("abcdefghi")), net.cfg, {})
    cfg = TrainConfig(out="x", max_steps=1, grad_clip=1.0)
    opt = make_optimizer(cfg, param_groups(method, net, cfg))
    for p in student.parameters():
        p.grad = torch.full_like(p, 1e-4)  # a small gradient: under the clip
    for p in teacher.parameters():
        p.grad = torch.full_like(p, 10.0)  # a huge one
    small = [p.grad.clone() for p in student.parameters()]
    clip_groups(opt)
    assert all(torch.equal(a, p.grad) for a, p in zip(small, student.parameters()))
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in teacher.parameters()]))
    assert norm.item() == pytest.approx(1.0, rel=1e-4)


# ====================================================== terms pinned against hand values
# The teacher of these tests differs clearly from the student, so a teacher that is
# not connected (the student's own detached outputs as targets, or anything within
# 1e-9 of them) gives other values than the hand computations.
def kl_rows(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row of probabilities, written out."""
    return (p * (p.log() - q.log())).sum(-1)


def test_mutual_kl_is_both_peers_kl_summed_with_stop_gradients_pinned_by_hand():
    a = torch.tensor([[[0.0, 0.0]]], requires_grad=True)  # p_a = (1/2, 1/2)
    b = torch.tensor([[[0.0, math.log(3.0)]]], requires_grad=True)  # p_b = (1/4, 3/4)
    kl_ba = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # KL(p_b || p_a)
    kl_ab = 0.5 * math.log(2.0) + 0.5 * math.log(2 / 3)  # KL(p_a || p_b)
    term = kd_losses.mutual_kl(a, b, 1.0)
    assert term.item() == pytest.approx(kl_ba + kl_ab, abs=1e-6)  # the sum, not the mean
    term.backward()
    # each peer only feels its own KL to the other, held fixed: d/da KL(p_b || p_a) = p_a - p_b
    assert torch.allclose(a.grad, torch.tensor([[[0.25, -0.25]]]), atol=1e-6)
    assert torch.allclose(b.grad, torch.tensor([[[-0.25, 0.25]]]), atol=1e-6)
    # at T = 2 the logits are halved first
    assert kd_losses.mutual_kl(a.detach() * 2, b.detach() * 2, 2.0).item() == pytest.approx(
        kl_ba + kl_ab, abs=1e-6)


def test_ctc_mean_kl_pinned_by_hand_on_three_classes():
    # student: two frames, softmax (1/3, 1/3, 1/3) and (1/6, 4/6, 1/6): mean (1/4, 1/2, 1/4)
    student = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(4.0), 0.0]]])
    # teacher: one frame whose blank logit ln 2 is negated: exp(-ln 2, 0, 0) -> (.2, .4, .4)
    teacher = torch.tensor([[[math.log(2.0), 0.0, 0.0]]])
    want = 0.2 * math.log(0.2 / 0.25) + 0.4 * math.log(0.4 / 0.5) + 0.4 * math.log(0.4 / 0.25)
    assert kd_losses.ctc_mean_kl(student, teacher, 1.0).item() == pytest.approx(want, abs=1e-6)
    assert kd_losses.ctc_mean_kl(student / 2, teacher / 2, 0.5).item() == pytest.approx(
        want, abs=1e-6)
    # and per sequence, averaged over sequences: a second pair at KL 0 halves it
    two_s = torch.cat([student, torch.zeros(1, 2, 3)])
    two_t = torch.cat([teacher, torch.zeros(1, 1, 3)])
    assert kd_losses.ctc_mean_kl(two_s, two_t, 1.0).item() == pytest.approx(want / 2, abs=1e-6)


def _outputs_by_hand(student, teacher, regs, pairs, images):
    """The student's outputs (with a graph) and the teacher's own (without one)."""
    s = student(images, outputs=True, taps=[a for a, _ in pairs])
    with torch.no_grad():
        t = teacher.eval()(images, outputs=True, taps=[b for _, b in pairs])
    soft = kl_rows(F.softmax(t.logits / 1.5, -1), F.softmax(s.logits / 1.5, -1)).mean()
    hint = torch.stack([((regs[_key(a, b)](s.taps[a]) - t.taps[b]) ** 2).mean()
                        for a, b in pairs]).mean()
    (hs, cs), (ht, ct) = s.rnn_state, t.rnn_state
    lstm = ((hs - ht) ** 2).mean() + ((cs - ct) ** 2).mean()
    return s, {"soft": soft, "hint": hint, "lstm": lstm}


def _student_and_teacher():
    torch.manual_seed(0)
    teacher = tiny()
    torch.manual_seed(1)
    student = Recognizer(half_spec(teacher.spec), 10, input_size=(32, 96))
    pairs, regs = pairs_for(student, teacher)
    return student, teacher, pairs, regs


@pytest.mark.parametrize("online", [False, True])
def test_soft_hint_and_state_terms_are_computed_from_the_teachers_own_outputs(online):
    student, teacher, pairs, regs = _student_and_teacher()
    net = DistillNet(student, teacher, KDConfig(online=online, hints=pairs), regs).eval()
    batch = batch_for()
    terms = net(batch["images"], batch)
    _, want = _outputs_by_hand(student, net.teacher_model, net.regressors, pairs,
                               batch["images"])
    for name in ("soft", "hint", "lstm"):
        assert want[name].item() > 1e-3, name  # a teacher clearly unlike the student
        assert terms[name].item() == pytest.approx(want[name].item(), rel=1e-4), name


def test_students_update_is_ctc_plus_the_expected_kd_gradient():
    from ocrkit.methods.supervised import ctc_loss

    student, teacher, pairs, regs = _student_and_teacher()
    cfg = KDConfig(hints=pairs)  # w_soft 0.5, lambda_hint 0.5, lambda_lstm 0.2
    net = DistillNet(student, teacher, cfg, regs).train()
    method = DistillMethod(Charset(list("abcdefghi")), cfg, {})
    batch, cpu = batch_for(), torch.device("cpu")
    trained = list(student.named_parameters()) + [
        (f"regressors.{k}", v) for k, v in net.regressors.named_parameters()]

    def grads(loss):
        net.zero_grad(set_to_none=False)
        for _, p in trained:
            p.grad = torch.zeros_like(p)
        loss.backward()
        return {n: p.grad.clone() for n, p in trained}

    full = grads(method.loss(net, batch, cpu).total)
    s = student(batch["images"], outputs=True)
    ctc = grads(ctc_loss(student.head, s.logits, batch, cpu))
    _, hand = _outputs_by_hand(student, copy.deepcopy(teacher), net.regressors, pairs,
                               batch["images"])
    kd = grads(0.5 * hand["soft"] + 0.5 * hand["hint"] + 0.2 * hand["lstm"])
    assert sum(g.norm() for g in kd.values()) > 1e-3
    for name, _ in trained:
        diff = full[name] - ctc[name]
        tol = 1e-3 * kd[name].norm() + 1e-5 * ctc[name].norm() + 1e-7
        assert (diff - kd[name]).norm() <= tol, name
    # the classifier learns from CTC and the soft term only: its KD part is the soft term's
    head = [n for n, _ in trained if n.startswith("classifier.")]
    assert head and all(kd[n].norm() > 1e-4 for n in head)


class Scripted(nn.Module):
    """A stand-in recognizer whose logits ``[B, T, K]`` are given by hand."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        from ocrkit.models.heads.ctc import CTCHead

        self.logits = nn.Parameter(logits.clone())
        self.head = CTCHead()

    def forward(self, images, outputs=False, taps=()):
        from ocrkit.models.recognizer import RecognizerOutput

        out = self.logits * 1.0
        return RecognizerOutput(out, out, out, out) if outputs else out


def _narrow_and_wide_batch():
    """Two single-row images in a batch padded to the wider one (training's
    ``width="batch"``): 40 of 96 pixels for the first."""
    from PIL import Image

    from ocrkit.data import Sample

    collate = Collate(InputSpec(32, 96, "keep-ratio"), Charset(list("abcdefghi")),
                      width="batch")
    rng = torch.Generator().manual_seed(0)
    samples = [Sample(Image.fromarray((torch.rand(32, w, generator=rng) * 255).byte().numpy()),
                      [text], str(i)) for i, (w, text) in enumerate(((40, "ab"), (96, "cde")))]
    return collate(samples)


def test_frame_mask_is_stride_proportional_and_collate_records_widths():
    mask = frame_mask(torch.tensor([96, 41, 40, 1]), 96, 24)
    assert mask.sum(1).tolist() == [24, 11, 10, 1]  # ceil(24 * w / 96), at least one
    assert all(mask[i, :n].all() for i, n in enumerate([24, 11, 10, 1]))
    batch = _narrow_and_wide_batch()
    assert batch["images"].shape[-1] == 96 and batch["widths"].tolist() == [40, 96]
    from PIL import Image

    from ocrkit.data import Sample

    narrow = [Sample(Image.new("L", (40, 32), 200), ["a"], "n")]
    assert Collate(InputSpec(32, 96), None)(narrow)["widths"].tolist() == [40]  # padded to W
    stretched = Collate(InputSpec(48, 48, "stretch", rows=3), None)(narrow)
    assert stretched["widths"].tolist() == [48]  # multi-row inputs: stretched, never padded
    both = Collate(InputSpec(32, 96), None, teacher_spec=InputSpec(64, 192), width="batch")(
        narrow)
    assert both["teacher_widths"].tolist() == [80] and both["teacher_images"].shape[-1] == 80


def test_per_frame_terms_average_over_the_frames_that_see_the_image():
    torch.manual_seed(3)
    s, t = torch.randn(2, 12, 6), torch.randn(2, 12, 6)
    mask = frame_mask(torch.tensor([40, 96]), 96, 12)  # 5 and 12 frames
    valid_s, valid_t = torch.cat([s[0, :5], s[1]]), torch.cat([t[0, :5], t[1]])
    assert kd_losses.soft_kl(s, t, 1.5, mask=mask).item() == pytest.approx(
        kl_rows(F.softmax(valid_t / 1.5, -1), F.softmax(valid_s / 1.5, -1)).mean().item(),
        abs=1e-6)
    assert kd_losses.mutual_kl(s, t, 1.0, mask).item() == pytest.approx(
        kd_losses.mutual_kl(valid_s, valid_t).item(), abs=1e-6)
    alone = (kd_losses.ctc_mean_kl(s[:1, :5], t[:1, :5]) + kd_losses.ctc_mean_kl(s[1:], t[1:]))
    assert kd_losses.ctc_mean_kl(s, t, 0.5, mask, mask).item() == pytest.approx(
        alone.item() / 2, abs=1e-6)
    garbage_s, garbage_t = s.clone(), t.clone()
    garbage_s[0, 5:], garbage_t[0, 5:] = 50 * torch.randn(7, 6), 50 * torch.randn(7, 6)
    for fn in (lambda a, b, m: kd_losses.soft_kl(a, b, 1.5, mask=m),
               lambda a, b, m: kd_losses.mutual_kl(a, b, 1.0, m),
               lambda a, b, m: kd_losses.ctc_mean_kl(a, b, 0.5, m, m)):
        assert fn(garbage_s, garbage_t, mask).item() == pytest.approx(fn(s, t, mask).item(),
                                                                       abs=1e-7)
        # without the mask the padding frames would count
        assert abs(fn(garbage_s, garbage_t, None).item() - fn(s, t, None).item()) > 1e-2


@pytest.mark.parametrize("mode", ["paper", "dml", "ctc-mean-kl"])
def test_distill_net_excludes_padding_frames_and_reads_the_teachers_logits(mode):
    """A narrow image (40 px) padded to 96 px: 5 of its 12 frames see it. The KD term
    equals the hand computation over the valid frames of the teacher's own (hand-made,
    clearly different) logits; changing either model's padding frames changes nothing."""
    batch = _narrow_and_wide_batch()
    torch.manual_seed(4)
    s_logits, t_logits = torch.randn(2, 12, 10), 2 * torch.randn(2, 12, 10)

    def term(s_in, t_in):
        cfg = KDConfig(mode=mode, lambda_lstm=0.0, temperature=1.5 if mode == "paper" else 1.0)
        net = DistillNet(Scripted(s_in), Scripted(t_in), cfg)
        return net(batch["images"], batch)[{"paper": "soft", "dml": "dml",
                                            "ctc-mean-kl": "mean_kl"}[mode]].item()

    valid = [(0, slice(0, 5)), (1, slice(0, 12))]
    if mode == "ctc-mean-kl":
        sign = torch.tensor([-1.0] + [1.0] * 9)

        def mean_p(x, i, frames):
            return F.softmax(x[i, frames] * sign, -1).mean(0)

        want = sum(kl_rows(mean_p(t_logits, i, f), mean_p(s_logits, i, f)) for i, f in valid) / 2
    else:
        temp = 1.5 if mode == "paper" else 1.0
        ps = torch.cat([F.softmax(s_logits[i, f] / temp, -1) for i, f in valid])
        pt = torch.cat([F.softmax(t_logits[i, f] / temp, -1) for i, f in valid])
        want = kl_rows(pt, ps).mean() + (kl_rows(ps, pt).mean() if mode == "dml" else 0)
    got = term(s_logits, t_logits)
    assert want.item() > 0.05
    assert got == pytest.approx(want.item(), rel=1e-5)
    s_pad, t_pad = s_logits.clone(), t_logits.clone()
    s_pad[0, 5:] += 30 * torch.randn(7, 10)
    t_pad[0, 5:] -= 30 * torch.randn(7, 10)
    assert term(s_pad, t_pad) == pytest.approx(got, rel=1e-6)


def test_a_bf16_teacher_runs_under_autocast_close_to_fp32():
    student, teacher, pairs, regs = _student_and_teacher()
    batch = batch_for()
    nets = {p: DistillNet(student, teacher, KDConfig(hints=pairs), regs,
                          teacher_precision=p).eval() for p in ("fp32", "bf16")}
    seen = []
    fast = nets["bf16"]._frozen_teacher(torch.device("cpu"))
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    terms = {p: net(batch["images"], batch) for p, net in nets.items()}
    assert seen == [torch.bfloat16]  # the frozen teacher computed in bfloat16
    for name in ("soft", "hint", "lstm"):
        low, full = terms["bf16"][name], terms["fp32"][name]
        assert low.dtype == torch.float32
        assert low.item() == pytest.approx(full.item(), rel=0.02), name
    assert any(terms["bf16"][n].item() != terms["fp32"][n].item()  # it did not run in fp32
               for n in ("soft", "hint", "lstm"))
    assert torch.equal(terms["bf16"]["ctc"], terms["fp32"]["ctc"])  # the student stays fp32


@pytest.mark.parametrize("mode", ["paper", "ctc-mean-kl", "dml"])
def test_under_bfloat16_autocast_every_term_is_float32_and_near_float32s(mode):
    """--amp: the student computes in bfloat16; the terms stay float32 and close."""
    student, teacher, pairs, regs = _student_and_teacher()
    batch = batch_for()
    net = DistillNet(student, teacher, KDConfig(mode=mode, hints=pairs if mode == "paper"
                                                else []), regs if mode == "paper" else {}).eval()
    with torch.no_grad():
        full = net(batch["images"], batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(batch["images"], batch)
    assert set(low) == set(full)
    for name, value in low.items():
        assert value.dtype == torch.float32, name
        assert value.item() == pytest.approx(full[name].item(), rel=0.1, abs=1e-3), name


# ============================================================================ the CLI
@pytest.fixture(scope="module")
def kd(tmp_path_factory, cjk_font):
    root = tmp_path_factory.mktemp("kd")
    run = CliRunner().invoke
    from ocrkit.cli import cli

    def ok(*args):
        res = run(cli, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res

    for name, seed, n in (("train", 1, 48), ("val", 2, 16)):
        ok("synth", "-n", n, "--seed", seed, "--cols", 4, "--charset-size", 12, "--font",
           cjk_font, "--out", root / name, "-w", 1, "-q")
        ok("build-lmdb", root / name, root / f"{name}.lmdb", "-q")
    ok("synth", "-n", 24, "--seed", 3, "--rows", 3, "--width", 48, "--height", 48, "--cols", 3,
       "--charset-size", 12, "--font", cjk_font, "--out", root / "m3", "-w", 1, "-q")
    ok("train", "--train", root / "train.lmdb", "--val", root / "val.lmdb", "-o",
       root / "teacher", "--max-steps", 6, "-q", *TEACHER)
    return root


def distill(cli, kd, out, *args):
    return cli("distill", "--train", kd / "train.lmdb", "--val", kd / "val.lmdb", "-o", out,
               "--max-steps", 4, "--val-every", 2, *LOOP, *args)


def test_distill_offline_then_evaluate_infer_export_the_student(cli, kd, tmp_path):
    out = tmp_path / "student"
    res = distill(cli, kd, out, "--teacher", kd / "teacher/best.pt", "--log-every", 1)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["hints"] == ["stage3=stage3", "stage4=stage4"]  # the deeper half
    assert summary["parameters"] < 0.6 * summary["teacher_parameters"]
    best = load_checkpoint(str(out / "best.pt"))
    model, charset = build_model(best)  # an ordinary recognizer checkpoint
    teacher = load_checkpoint(str(kd / "teacher/best.pt"))
    assert charset.chars == teacher["charset"] and best["input"] == teacher["input"]
    import hashlib

    digest = hashlib.sha256((kd / "teacher/best.pt").read_bytes()).hexdigest()
    assert best["distill"]["teacher"]["sha256"] == digest
    assert best["distill"]["mode"] == "paper" and best["distill"]["temperature"] == 1.5
    assert best["distill"]["soft_weight"] == 0.5  # 1 - alpha, alpha not given
    assert not any(k.startswith(("teacher", "student", "regressors")) for k in best["state_dict"])
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    terms = [r["terms"] for r in records if "terms" in r]
    assert terms and set(terms[0]) == {"ctc", "soft", "hint", "lstm"}
    # The frozen teacher's weights and BatchNorm buffers are bit-identical after the run.
    net = load_checkpoint(str(out / "last.pt"))["train_state"]["net"]
    frozen = {k[len("teacher.module."):]: v for k, v in net.items()
              if k.startswith("teacher.module.")}
    assert frozen.keys() == teacher["state_dict"].keys()
    assert all(torch.equal(frozen[k], teacher["state_dict"][k]) for k in frozen)
    assert any("running_mean" in k for k in frozen)
    assert cli("evaluate", out / "best.pt", kd / "val.lmdb", "-q").exit_code == 0
    image = sorted((kd / "val/images/0000").glob("*.png"))[0]
    assert "text" in json.loads(cli("infer", "-m", out / "best.pt", image).stdout)
    res = cli("export", out / "best.pt", "-o", tmp_path / "s.onnx", "--verify", "--samples",
              kd / "val.lmdb")
    assert res.exit_code == 0 and json.loads(res.stdout)["verify"]["texts_match"]


def test_online_from_a_config_trains_the_teacher_and_resumes_both(cli, kd, tmp_path):
    out = tmp_path / "online"
    args = ["--teacher", kd / "teacher/config.json", "--online"]
    res = distill(cli, kd, out, *args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["online"] and (out / "teacher.pt").is_file()
    last = load_checkpoint(str(out / "last.pt"))
    assert last["distill"]["teacher"]["init"] == "scratch"
    assert {g["name"] for g in last["train_state"]["optimizer"]["param_groups"]} == {
        "student", "teacher"}
    teacher_before = {k: v for k, v in last["train_state"]["net"].items()
                      if k.startswith("teacher.")}
    res = cli("distill", "--train", kd / "train.lmdb", "--val", kd / "val.lmdb", "-o", out,
              "--max-steps", 6, "--val-every", 2, *LOOP, *args, "--resume")
    assert res.exit_code == 0 and json.loads(res.stdout)["steps"] == 6
    after = load_checkpoint(str(out / "last.pt"))["train_state"]["net"]
    assert any(not torch.equal(after[k], v) for k, v in teacher_before.items())  # it trained
    assert build_model(load_checkpoint(str(out / "teacher.pt")))[0] is not None


@pytest.mark.parametrize("args, key", [
    (["--kd-mode", "dml", "--backbone-arg", "channels=(4,8,8,16)", "--sequence-arg",
      "hidden=8", "--height", "32", "--width", "96", "--student-preset", "none"], "dml"),
    (["--kd-mode", "ctc-mean-kl", "--backbone-arg", "width_stride=8"], "mean_kl"),
])
def test_peer_modes(cli, kd, tmp_path, args, key):
    if "ctc-mean-kl" in args:
        args = ["--teacher", kd / "teacher/best.pt", *args]
    out = tmp_path / key
    res = distill(cli, kd, out, *args, "--log-every", 1)
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert key in [r for r in records if "terms" in r][0]["terms"]
    assert (out / "teacher.pt").is_file() == (key == "dml")
    assert load_checkpoint(str(out / "best.pt"))["distill"]["soft_weight"] == 1.0


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_teacher_precision_from_the_cli(cli, kd, tmp_path, precision):
    out = tmp_path / precision
    res = cli("distill", "--train", kd / "train.lmdb", "-o", out, "--max-steps", 1, "-b", 8,
              "-w", 0, "--teacher", kd / "teacher/best.pt", "--teacher-precision", precision)
    assert res.exit_code == 0, res.output
    assert f"frozen, {precision}" in res.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["teacher_precision"] == precision  # replayed by --config


@pytest.mark.parametrize("neck", ["multirow-stretch", "row-attention"])
def test_multirow_distillation(cli, kd, tmp_path, neck):
    teacher = tmp_path / "t"
    common = ["--rows", 3, "--height", 48, "--width", 48, "--neck", neck,
              "--backbone-arg", "channels=(8,16,16,32)", "--backbone-arg", "width_stride=8",
              "--sequence-arg", "hidden=16", "--neck-arg", "variant=column"
              if neck == "row-attention" else "pool=rows"]
    assert cli("train", "--train", kd / "m3", "-o", teacher, "--max-steps", 2, *LOOP,
               *common).exit_code == 0
    res = cli("distill", "--teacher", teacher / "best.pt", "--train", kd / "m3", "--val",
              kd / "m3", "-o", tmp_path / "s", "--max-steps", 2, *LOOP)
    assert res.exit_code == 0, res.output
    best = load_checkpoint(str(tmp_path / "s/best.pt"))
    assert best["input"]["rows"] == 3 and best["spec"]["neck"]["name"] == neck
    res = cli("infer", "-m", tmp_path / "s/best.pt", sorted((kd / "m3/images/0000").glob(
        "*.png"))[0])
    assert len(json.loads(res.stdout)["rows"]) == 3


def test_refusals_name_both_sides(cli, kd, tmp_path):
    t = kd / "teacher/best.pt"
    one_line_error(distill(cli, kd, tmp_path / "a", "--teacher", t, "--backbone-arg",
                           "width_stride=8"), 2, "teacher gives (24,) frames", "student (12,)",
                   "ctc-mean-kl")
    one_line_error(distill(cli, kd, tmp_path / "a", "--teacher", t, "--height", 48), 2,
                   "teacher's input (32x96 keep-ratio)", "48x96")
    one_line_error(distill(cli, kd, tmp_path / "a", "--teacher", t, "--sequence-arg",
                           "hidden=8"), 2, "teacher's hidden size is 16", "student's 8")
    chars = load_checkpoint(str(t))["charset"]
    other = tmp_path / "dict.txt"
    other.write_text("\n".join(reversed(chars)) + "\n", encoding="utf-8")
    one_line_error(distill(cli, kd, tmp_path / "a", "--teacher", t, "--charset", other), 2,
                   "differs from the teacher's")
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.models.denoise import Denoiser

    den = tmp_path / "den.pt"
    save_checkpoint(str(den), {"kind": "denoiser", "denoiser": Denoiser(base=2, depth=1).config(),
                               "input": {"size": [32, 96]},
                               "state_dict": Denoiser(base=2, depth=1).state_dict()})
    one_line_error(distill(cli, kd, tmp_path / "a", "--teacher", den), 2,
                   "a denoiser checkpoint, expected a recognizer", "--denoiser")
    one_line_error(distill(cli, kd, tmp_path / "a", "--kd-mode", "paper"), 2, "needs --teacher")
    one_line_error(distill(cli, kd, tmp_path / "a", "--teacher", kd / "teacher/config.json"), 2,
                   "has no weights", "--teacher-init scratch")
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_torchrun_two_processes_distill_on_cpu(kd, tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", free_port(), "-m", "ocrkit", "distill", "--teacher",
         str(kd / "teacher/best.pt"), "--train", str(kd / "train.lmdb"), "--val",
         str(kd / "val.lmdb"), "-o", str(out), "--max-steps", "3", "--device", "cpu", *LOOP],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = load_checkpoint(str(out / "last.pt"))["meta"]
    assert meta["world_size"] == 2 and meta["step"] == 3
