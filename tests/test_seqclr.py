"""SeqCLR (issue 29): METHODS.md §3's faithful tests of the instance mapping, NT-Xent
and augmentations, padded frames, frozen encoders, label subsets, unlabelled data,
and the CLI chain pretrain -> train --init-encoder [--freeze-encoder] ->
evaluate / infer / export. Tiny models and images: seconds."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.nn import functional as F

from ocrkit.checkpoint import load_checkpoint, save_checkpoint
from ocrkit.data.batch import InputSpec
from ocrkit.data.seq_augment import OPS, SeqAugment
from ocrkit.data.unlabelled import open_unlabelled
from ocrkit.data.views import TwoViews, ViewCollate
from ocrkit.methods.seqclr import (
    BiLSTMProjection,
    SeqCLR,
    SeqCLRNet,
    instances,
    nt_xent,
    nt_xent_logits,
    valid_frames,
)
from ocrkit.models.encoder import Encoder, freeze_encoder
from ocrkit.models.recognizer import Recognizer, make_spec
from ocrkit.train.run import subset_indices
from conftest import one_line_error

MODEL = ["--backbone-arg", "channels=(8,16,16,32)", "--sequence-arg", "hidden=16",
         "--sequence-arg", "layers=1", "--height", "32", "--width", "64", "-w", "0"]


def tiny_spec(**kw) -> dict:
    return make_spec(backbone_args={"channels": (8, 16, 16, 32)},
                     sequence_args={"hidden": 16, "layers": 1}, **kw)


def eq1(za: torch.Tensor, zb: torch.Tensor, tau: float) -> float:
    """Eq. 1 written as the paper has it, anchor by anchor (mean over the 2M terms)."""
    u = torch.cat([za, zb]).double()
    u = u / u.norm(dim=1, keepdim=True)
    m, terms = za.shape[0], []
    for a, b in [(r, r + m) for r in range(m)] + [(r + m, r) for r in range(m)]:
        others = [k for k in range(2 * m) if k != a]  # U \ {u^a}
        den = sum(math.exp(float(u[a] @ u[k]) / tau) for k in others)
        terms.append(-math.log(math.exp(float(u[a] @ u[b]) / tau) / den))
    return sum(terms) / len(terms)


# ----------------------------------------------------------------------------- loss
def test_window_mapping_gives_5n_instances_and_2x5n_minus_2_negatives():
    n, t, f = 3, 20, 8
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(2 * n, t, f, generator=gen)
    z = instances(frames, torch.full((2 * n,), t), "window", 5)
    za, zb = z.chunk(2)
    assert za.shape == zb.shape == (5 * n, f)  # 5N instances per view
    logits, targets = nt_xent_logits(za, zb, 0.1)
    assert logits.shape == (10 * n, 10 * n)
    finite = torch.isfinite(logits)
    for r in range(10 * n):
        assert finite[r].sum() == 10 * n - 1  # the 2N'-1 terms of the denominator
        negatives = finite[r].sum() - 1  # ... one of them the positive
        assert negatives == 2 * 5 * n - 2
    # instance r of view a pairs with instance r of view b, and back
    assert targets.tolist() == list(range(5 * n, 10 * n)) + list(range(5 * n))


def test_loss_is_eq1_symmetric_in_the_views_and_never_contrasts_an_instance_with_itself():
    gen = torch.Generator().manual_seed(1)
    za, zb = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
    loss = float(nt_xent(za, zb, 0.5))
    assert loss == pytest.approx(eq1(za, zb, 0.5), rel=1e-5)
    assert float(nt_xent(zb, za, 0.5)) == pytest.approx(loss, rel=1e-6)
    logits, _ = nt_xent_logits(za, zb, 0.5)
    assert torch.isneginf(logits.diagonal()).all()
    # one instance per view: the positive is the whole denominator -> exactly 0
    x, y = torch.randn(1, 16, generator=gen), torch.randn(1, 16, generator=gen)
    assert float(nt_xent(x, y, 0.1)) == pytest.approx(0.0, abs=1e-6)


def test_random_instances_give_log_2m_minus_1():
    gen = torch.Generator().manual_seed(2)
    m = 64
    za, zb = torch.randn(m, 4096, generator=gen), torch.randn(m, 4096, generator=gen)
    assert float(nt_xent(za, zb, 0.1)) == pytest.approx(math.log(2 * m - 1), abs=0.05)


# ----------------------------------------------------------------------------- mapping
def test_window_means_follow_x_position_with_the_height_pooled_first():
    h, w = 3, 20
    x = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    row = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    fmap = torch.stack([x + 100 * row, x])[None]  # [1, F=2, h, w]: rows differ
    z = instances(fmap, torch.tensor([w]), "window", 5)
    expected_x = torch.tensor([1.5, 5.5, 9.5, 13.5, 17.5])
    assert torch.allclose(z[:, 1], expected_x)
    assert torch.allclose(z[:, 0], expected_x + 100)  # every window holds every row
    # uneven windows: adaptive average pooling over the valid frames only
    frames = torch.randn(2, 12, 4, generator=torch.Generator().manual_seed(3))
    z = instances(frames, torch.tensor([7, 12]), "window", 5).reshape(2, 5, 4)
    for i, length in enumerate((7, 12)):
        ref = F.adaptive_avg_pool1d(frames[i, :length].t()[None], 5)[0].t()
        assert torch.allclose(z[i], ref, atol=1e-6)
    assert torch.allclose(instances(frames, torch.tensor([7, 12]), "all", 5),
                          torch.stack([frames[0, :7].mean(0), frames[1].mean(0)]))
    assert instances(frames, torch.tensor([7, 12]), "frame").shape == (19, 4)


def test_padded_frames_never_enter_an_instance():
    gen = torch.Generator().manual_seed(4)
    frames = torch.randn(4, 16, 6, generator=gen)
    widths = torch.tensor([64, 40, 17, 64])  # pixels before padding, batch width 64
    lengths = valid_frames(widths, 64, 16)
    assert lengths.tolist() == [16, 10, 5, 16]
    poisoned = frames.clone()
    for i, n in enumerate(lengths.tolist()):
        poisoned[i, n:] = float("nan") if i % 2 else 1e6
    for mapping in ("all", "window", "frame"):
        clean = instances(frames, lengths, mapping)
        dirty = instances(poisoned, lengths, mapping)
        assert torch.isfinite(dirty).all() and torch.equal(clean, dirty), mapping
    assert instances(frames, lengths, "frame").shape[0] == sum(lengths.tolist())
    # the BiLSTM projection head reads packed sequences: padding never reaches a frame
    head = BiLSTMProjection(6, 8)
    a, b = head(frames, lengths), head(poisoned.nan_to_num(5.0), lengths)
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(a[i, :n], b[i, :n])


def text_image(text: str = "31415 926", width: int = 90, mode: str = "L") -> Image.Image:
    im = Image.new("L", (width, 16), 235)
    ImageDraw.Draw(im).text((3, 2), text, fill=20, font=ImageFont.load_default())
    return im.convert(mode)


def test_views_differ_keep_their_size_and_batch_with_aligned_widths():
    spec = InputSpec(height=32, width=128)
    images = [text_image(width=w) for w in (90, 30, 200)]

    class Plain:  # a dataset of Samples
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            from ocrkit.data.datasets import Sample
            return Sample(images[i], [], str(i))

    views = TwoViews(Plain(), spec, SeqAugment(), seed=0)
    pairs = [views[i] for i in range(3)]
    batch = ViewCollate(spec)(pairs)
    assert batch["widths"].tolist() == [128, 60, 128]  # keep-ratio at height 32, capped
    assert batch["images"].shape == (6, 1, 32, 128)
    for width, pair in zip(batch["widths"].tolist(), pairs):
        assert pair.a.size == pair.b.size == (width, 32)
        assert not np.array_equal(np.asarray(pair.a), np.asarray(pair.b))
    for k, view in ((1, pairs[1].a), (4, pairs[1].b)):  # the N first views, then the N second
        expected = (np.asarray(view, dtype=np.float32) / 255 - 0.5) / 0.5
        assert np.allclose(batch["images"][k, 0, :, :60].numpy(), expected)
    assert np.array_equal(np.asarray(views[1].a), np.asarray(pairs[1].a))  # seeded
    views.set_epoch(1)  # a new epoch, new views
    assert not np.array_equal(np.asarray(views[1].a), np.asarray(pairs[1].a))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_each_augmentation_keeps_size_and_changes_the_image_but_never_the_order(mode):
    # dark ink on the left half, paper on the right: no operation may swap them
    im = Image.new("L", (96, 32), 230)
    ImageDraw.Draw(im).rectangle((6, 6, 40, 26), fill=10)
    im = im.convert(mode)
    aug = SeqAugment()
    for op in OPS:
        out = getattr(aug, f"_{op}")(im, np.random.default_rng(7))
        arr = np.asarray(out, dtype=np.float32)
        assert out.size == im.size and out.mode == mode, op
        assert not np.array_equal(arr, np.asarray(im, dtype=np.float32)), op
        assert arr[:, :48].mean() < arr[:, 48:].mean() - 50, op  # no flip, no big shift
    a, b = aug(im, np.random.default_rng(1)), aug(im, np.random.default_rng(2))
    assert a.size == b.size == im.size and not np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(np.asarray(SeqAugment(ops=(0, 0))(im, np.random.default_rng(0))),
                          np.asarray(im))


def test_colour_distortion_changes_colours_never_positions():
    """SimCLR's colour distortion (off by default, as in the paper): views of one RGB
    image differ in colour, some are grey, and the ink stays where it was."""
    from ocrkit.data.seq_augment import _shift_hue

    im = Image.new("RGB", (96, 32), (235, 225, 150))  # yellow paper, blue ink on the left
    ImageDraw.Draw(im).rectangle((6, 6, 40, 26), fill=(20, 30, 160))
    aug = SeqAugment(ops=(0, 0), colour=1.0)
    views = [aug(im, np.random.default_rng(seed)) for seed in range(40)]
    arrays = [np.asarray(v, dtype=np.float32) for v in views]
    assert all(v.size == im.size and v.mode == "RGB" for v in views)
    paper = [tuple(a[:, 60:].reshape(-1, 3).mean(0).round()) for a in arrays]
    assert len(set(paper)) >= 30  # the paper's colour no longer names the image
    grey = sum(bool(np.all(a[..., 0] == a[..., 1]) and np.all(a[..., 1] == a[..., 2]))
               for a in arrays)
    assert 2 <= grey <= 20  # about 20 % of 40
    for a in arrays:  # the ink box is where it was in every view, and stays one colour
        ink, paper_part = a[6:27, 6:41].reshape(-1, 3), a[:, 50:].reshape(-1, 3)
        assert np.abs(ink.mean(0) - paper_part.mean(0)).max() > 20
        assert np.ptp(ink, axis=0).max() <= 2 and np.ptp(paper_part, axis=0).max() <= 2
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    r, g, b = np.asarray(_shift_hue(red, 1 / 3))[0, 0].tolist()
    assert g > 200 and r < 30 and b < 30  # a third of a turn: red -> green
    off = SeqAugment(ops=(0, 0))(im, np.random.default_rng(0))
    assert np.array_equal(np.asarray(off), np.asarray(im))  # the paper's default: none
    with pytest.raises(ValueError, match="colour"):
        SeqAugment(colour=2.0)


# ----------------------------------------------------------------------------- encoder
def test_frozen_encoder_keeps_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    model = Recognizer(tiny_spec(head="attention"), num_classes=6)
    before = {k: v.clone() for k, v in model.state_dict().items()
              if k.split(".")[0] in ("backbone", "neck", "sequence")}
    assert any("running_mean" in k for k in before)
    freeze_encoder(model)
    model.train()  # what the loop does before every epoch
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    targets = model.head.targets(torch.tensor([1, 2, 3, 4]), torch.tensor([2, 2]))
    for _ in range(3):
        logits = model(torch.randn(2, 1, 32, 64), targets=targets)
        loss = model.head.loss(logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert not model.backbone.training and model.head.training
    assert list(model.state_dict()) == list(Recognizer(tiny_spec(head="attention"), 6)
                                            .state_dict())  # keys unchanged


def test_encoder_state_dict_keys_are_the_recognizers():
    enc = Encoder(tiny_spec(), input_size=(32, 64))
    rec = Recognizer(tiny_spec(), num_classes=5)
    assert set(enc.state_dict()) == {k for k in rec.state_dict()
                                     if k.split(".")[0] in ("backbone", "neck", "sequence")}
    net = SeqCLRNet(enc, "both", "mlp", 12)
    frames, lengths = net(torch.randn(2, 1, 32, 64), torch.tensor([64, 20]))
    assert frames.shape == (2, 16, 12) and lengths.tolist() == [16, 5]


def test_a_visual_encoder_is_backbone_and_neck_only(tmp_path):
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.models.encoder import init_encoder

    enc = Encoder(tiny_spec(), input_size=(32, 64))
    net = SeqCLRNet(enc, "visual", "mlp", 8)
    assert not any(p.requires_grad for p in enc.sequence.parameters())  # never run
    module, extra = SeqCLR("all").deployable(net)
    assert extra == {"encoder_parts": ["backbone", "neck"]}
    assert {k.split(".")[0] for k in module.state_dict()} == {"backbone"}
    save_checkpoint(str(tmp_path / "enc.pt"), {"kind": "encoder", "spec": enc.spec,
                                               "input": {"height": 32, "channels": 1},
                                               "state_dict": module.state_dict(), **extra})
    rec = Recognizer(make_spec(backbone_args={"channels": (8, 16, 16, 32)},
                               sequence_args={"hidden": 24}), num_classes=5)  # another BiLSTM
    info = init_encoder(rec, str(tmp_path / "enc.pt"), InputSpec(32, 64), freeze=True)
    assert info["parts"] == ["backbone", "neck"]
    assert all(torch.equal(v, rec.state_dict()[k]) for k, v in module.state_dict().items())
    assert not any(p.requires_grad for p in rec.backbone.parameters())
    assert all(p.requires_grad for p in rec.sequence.parameters())  # trains with the decoder


def test_seqclr_validation_counts_exactly_the_limit():
    torch.manual_seed(0)
    net = SeqCLRNet(Encoder(tiny_spec(), input_size=(32, 64)), "contextual", "bilstm", 16)
    batch = {"images": torch.randn(8, 1, 32, 64), "widths": torch.tensor([64, 64, 40, 24])}
    out = SeqCLR("window", 5).validate(net.eval(), [batch, batch], torch.device("cpu"), limit=6)
    assert out["samples"] == 6 and out["instances"] == 30
    assert out["neg_loss"] == -out["loss"] and 0 <= out["top1"] <= 1


# ----------------------------------------------------------------------------- subsets
def test_label_subset_depends_on_the_subset_seed_and_the_data_only():
    a = subset_indices(200, 0.1, 3)
    assert a == subset_indices(200, 0.1, 3) and len(a) == 20 and a == sorted(a)
    assert a != subset_indices(200, 0.1, 4)
    assert set(subset_indices(200, 0.05, 3)) <= set(a)  # nested fractions
    assert subset_indices(10, 0.01, 0) == subset_indices(10, 0.01, 0) and \
        len(subset_indices(10, 0.01, 0)) == 1


def test_paper_optimizer_and_step_schedule():
    from types import SimpleNamespace

    from ocrkit.train.setup import make_optimizer, make_schedule

    cfg = SimpleNamespace(optimizer="adadelta", lr=10.0, weight_decay=1e-4, schedule="steps",
                          warmup=0.0, decay_epochs=1.0)
    opt = make_optimizer(cfg, [torch.zeros(1, requires_grad=True)])
    assert isinstance(opt, torch.optim.Adadelta) and opt.defaults["rho"] == 0.95
    factor = make_schedule(cfg, opt, 100, 10).lr_lambdas[0]
    assert [factor(s) for s in (0, 59, 60, 79, 80, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    from ocrkit.cli.pretrain import pretrain
    from ocrkit.train.setup import OPTIMIZERS, SCHEDULES

    params = {p.name: p for p in pretrain.params}
    assert tuple(params["optimizer"].type.choices) == OPTIMIZERS
    assert tuple(params["schedule"].type.choices) == SCHEDULES
    assert (params["optimizer"].default, params["lr"].default, params["schedule"].default) == (
        "adadelta", 10.0, "steps")  # the paper's recipe is pretrain's default


# ----------------------------------------------------------------------------- data + CLI
def write_folder(root, n: int, seed: int, labels: bool = True) -> None:
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    lines = []
    for i in range(n):
        text = "".join(rng.choice(list("0123456789"), int(rng.integers(3, 7))))
        text_image(text, width=8 * len(text) + int(rng.integers(4, 30))).save(
            os.path.join(root, f"{i:03d}.png"))
        lines.append(f"{i:03d}.png\t{text}\n")
    if labels:
        with open(os.path.join(root, "gt.txt"), "w", encoding="utf-8") as fh:
            fh.writelines(lines)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqclr")
    write_folder(root / "lab", 40, 1)
    write_folder(root / "val", 12, 2)
    write_folder(root / "unl" / "a", 24, 3, labels=False)
    (root / "unl" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def test_unlabelled_sources_ignore_labels_and_report_broken_images(data, cli, tmp_path):
    (data / "lab" / "stray.png").write_bytes((data / "lab" / "000.png").read_bytes())
    try:
        assert len(open_unlabelled(str(data / "lab"))) == 40  # the label file's images
    finally:
        (data / "lab" / "stray.png").unlink()
    folder = open_unlabelled(str(data / "unl"))  # no label file: every image below
    assert len(folder) == 25
    broken = [s for s in (folder[i] for i in range(25)) if s.image is None]
    assert len(broken) == 1 and broken[0].key.endswith("broken.png") and broken[0].error
    res = cli("build-lmdb", data / "val", tmp_path / "v.lmdb", "-q")
    assert res.exit_code == 0, res.output
    lmdb = open_unlabelled([str(tmp_path / "v.lmdb"), str(data / "val" / "003.png")])
    assert len(lmdb) == 13 and lmdb[0].image is not None and lmdb[0].rows == []
    collated = ViewCollate(InputSpec(32, 64))(
        [TwoViews(folder, InputSpec(32, 64), SeqAugment())[i] for i in range(25)])
    assert collated["broken"] == 1 and collated["images"].shape[0] == 48


def test_pretrain_then_train_with_init_and_frozen_encoder_then_use_it(data, cli, tmp_path):
    pre = tmp_path / "pre"
    res = cli("pretrain", "--data", data / "unl", "-o", pre, *MODEL, "--colour-distortion", 2)
    one_line_error(res, 2, "--colour-distortion", "<= 1.25")
    res = cli("pretrain", "--data", data / "unl", "--val", data / "val", "-o", pre, *MODEL,
              "-b", 5, "--max-steps", 5, "--val-every", 3, "--save-every", 3,
              "--colour-distortion", 0.5, "-q")
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["kind"] == "encoder" and summary["mapping"] == "window"
    assert summary["projection"] == "bilstm" and summary["steps"] == 5
    assert summary["broken_samples"] == 1  # an epoch: the corrupt PNG, skipped and counted
    best = load_checkpoint(str(pre / "best.pt"))
    assert best["kind"] == "encoder" and "train_state" not in best and "charset" not in best
    assert best["input"]["height"] == 32 and best["spec"]["seqclr"]["windows"] == 5
    assert best["spec"]["seqclr"]["colour_distortion"] == 0.5
    assert {k.split(".")[0] for k in best["state_dict"]} == {"backbone", "sequence"}
    records = [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val"] for r in records if "val" in r]
    assert len(vals) == 2 and vals[0]["samples"] == 12 and vals[0]["instances"] == 60
    res = cli("pretrain", "-o", pre, "--resume", "--max-steps", 6, "--mapping", "all", "-q")
    one_line_error(res, 2, "--resume", "--mapping")
    res = cli("pretrain", "-o", pre, "--resume", "--max-steps", 6, "--colour-distortion", 1,
              "-q")
    one_line_error(res, 2, "--resume", "--colour-distortion")
    res = cli("pretrain", "-o", pre, "--resume", "--max-steps", 6, "-q")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["steps"] == 6
    assert load_checkpoint(str(pre / "last.pt"))["meta"]["step"] == 6
    encoder = load_checkpoint(str(pre / "best.pt"))["state_dict"]

    ft = tmp_path / "ft"
    res = cli("train", "--train", data / "lab", "--val", data / "val", "-o", ft, *MODEL,
              "-b", 4, "--max-steps", 3, "--init-encoder", pre / "best.pt",
              "--label-fraction", 0.1, "--subset-seed", 5, "-q")
    assert res.exit_code == 0, res.stderr
    ck = load_checkpoint(str(ft / "best.pt"))
    assert ck["label_subset"] == {"fraction": 0.1, "seed": 5, "images": 4, "of": 40}
    assert ck["encoder"]["frozen"] is False
    assert not all(torch.equal(v, ck["state_dict"][k]) for k, v in encoder.items())

    frozen = tmp_path / "frozen"
    res = cli("train", "--train", data / "lab", "--val", data / "val", "-o", frozen, *MODEL,
              "-b", 4, "--max-steps", 3, "--init-encoder", pre / "best.pt", "--freeze-encoder",
              "--head", "attention", "-q")
    assert res.exit_code == 0, res.stderr
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(str(frozen / name))["state_dict"]
        assert all(torch.equal(v, state[k]) for k, v in encoder.items()), name
    assert any("running_var" in k for k in encoder)

    res = cli("evaluate", frozen / "best.pt", data / "val")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["samples"] == 12
    res = cli("infer", "-m", ft / "best.pt", data / "val" / "000.png")
    assert res.exit_code == 0 and "text" in json.loads(res.stdout)
    res = cli("export", ft / "best.pt", "--format", "onnx", "-o", tmp_path / "m.onnx",
              "--verify", "--samples", data / "val")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["verify"]["texts_match"]


@pytest.fixture(scope="module")
def encoder_ckpt(data, tmp_path_factory):
    from click.testing import CliRunner

    from ocrkit.cli import cli

    out = tmp_path_factory.mktemp("enc") / "pre"
    res = CliRunner().invoke(cli, ["pretrain", "--data", str(data / "unl"), "-o", str(out),
                                   *MODEL, "-b", 8, "--max-steps", 1, "-q"])
    assert res.exit_code == 0, res.output
    return out / "best.pt"


def test_init_encoder_refuses_what_does_not_match_in_one_line(data, encoder_ckpt, cli, tmp_path):
    base = ["train", "--train", data / "lab", "-o", tmp_path / "x", "--max-steps", 1, "-w", 0]
    res = cli(*base, "--init-encoder", encoder_ckpt)  # default model options
    one_line_error(res, 2, "--init-encoder", "--backbone-arg channels", "pretrain")
    res = cli(*base, *MODEL[:6], "--height", 48, "--init-encoder", encoder_ckpt)
    one_line_error(res, 2, "--height 32", "--height 48")
    res = cli(*base, *MODEL[:6], "--sequence", "none", "--init-encoder", encoder_ckpt)
    one_line_error(res, 2, "--sequence", "none")
    res = cli(*base, "--freeze-encoder")
    one_line_error(res, 2, "--freeze-encoder", "--init-encoder")
    res = cli(*base, "--subset-seed", 3)
    one_line_error(res, 2, "--subset-seed", "--label-fraction")
    assert not (tmp_path / "x").exists()


def test_commands_name_the_kind_they_expected(data, encoder_ckpt, cli, tmp_path):
    for args in (("evaluate", encoder_ckpt, data / "val"),
                 ("infer", "-m", encoder_ckpt, data / "val" / "000.png")):
        one_line_error(cli(*args), 2, "encoder checkpoint", "expected a recognizer")
    res = cli("distill", "--teacher", encoder_ckpt, "--train", data / "lab", "-o",
              tmp_path / "d", "--max-steps", 1)
    one_line_error(res, 2, "encoder checkpoint", "expected a recognizer")
    res = cli("info", encoder_ckpt, "-q")
    assert res.exit_code == 0 and json.loads(res.stdout)["kind"] == "encoder"
    recognizer = tmp_path / "rec"
    res = cli("train", "--train", data / "lab", "-o", recognizer, *MODEL, "--max-steps", 1, "-q")
    assert res.exit_code == 0, res.stderr
    other = tmp_path / "router.pt"  # a kind without an encoder
    save_checkpoint(str(other), {"kind": "router", "state_dict": {}})
    res = cli("train", "--train", data / "lab", "-o", tmp_path / "y", *MODEL, "--max-steps", 1,
              "--init-encoder", other)
    one_line_error(res, 2, "router checkpoint, not an encoder", "ocrkit pretrain")


def test_init_encoder_takes_a_recognizers_encoder(data, cli, tmp_path):
    """A recognizer's checkpoint gives its backbone, neck and sequence stage (kept
    bit-identical when frozen) and not its classifier: the new run may read another
    character set, and its classifier starts afresh."""
    first = tmp_path / "first"
    res = cli("train", "--train", data / "lab", "-o", first, *MODEL, "--max-steps", 2, "-q")
    assert res.exit_code == 0, res.stderr
    charset = tmp_path / "wide.txt"  # the labels' digits and three more classes
    charset.write_text("".join(c + "\n" for c in "0123456789xyz"), encoding="utf-8")
    res = cli("train", "--train", data / "lab", "-o", tmp_path / "probe", *MODEL, "--max-steps",
              2, "--init-encoder", first / "best.pt", "--freeze-encoder", "--charset", charset,
              "-q")
    assert res.exit_code == 0, res.stderr
    before = torch.load(first / "best.pt", weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "probe" / "last.pt", weights_only=True)["state_dict"]
    encoder = [k for k in before if k.split(".")[0] in ("backbone", "neck", "sequence")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert after["classifier.fc.weight"].shape[0] > before["classifier.fc.weight"].shape[0]


def test_export_names_the_kind_it_expected(encoder_ckpt, cli, tmp_path):
    res = cli("export", encoder_ckpt, "-o", tmp_path / "m.onnx")
    one_line_error(res, 2, "encoder checkpoint", "expected a recognizer", "--init-encoder")
    assert not (tmp_path / "m.onnx").exists()
