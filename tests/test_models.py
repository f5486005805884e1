"""Registry-parametrized component tests and the paper-faithful shape checks."""

from __future__ import annotations

import pytest
import torch

from ocrkit import registry
from ocrkit.models.recognizer import Recognizer, make_spec

BACKBONES = sorted(registry.entries("backbones"))
NECKS = sorted(registry.entries("necks"))


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_builds_and_runs(name):
    model = Recognizer(make_spec(name, sequence_args={"hidden": 16, "layers": 1}), 11).eval()
    x = torch.rand(2, 1, 32, 96)
    with torch.no_grad():
        feat = model.backbone(x)
        logits = model(x)
    assert feat.dim() == 4 and feat.shape[1] == model.backbone.out_channels
    assert logits.shape[0] == 2 and logits.shape[2] == 11 and logits.shape[1] >= 8
    assert torch.isfinite(logits).all()


GEOMETRY = {"rows": 2, "feature_height": 4, "feature_width": 10}
EXPECT = {"cap": (2, 10, 12), "bilstm": (2, 10, None), "multirow-stretch": (2, 20, 12),
          "row-attention": (2, 2, 10, 12), "tokens": (2, 40, 12)}


@pytest.mark.parametrize("name", NECKS)
def test_every_neck_builds_and_runs(name):
    geometry = getattr(registry.get("necks", name).load(), "geometry", False)
    neck = registry.build("necks", name, in_channels=12, **(GEOMETRY if geometry else {}))
    x = torch.rand(2, 10, 12) if name == "bilstm" else torch.rand(2, 12, 4, 10)
    with torch.no_grad():
        y = neck(x)
    expect = tuple(neck.out_channels if d is None else d for d in EXPECT[name])
    assert y.shape == expect and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(registry.entries("classifiers")))
def test_every_classifier_builds_and_runs(name):
    clf = registry.build("classifiers", name, in_channels=16, num_classes=7)
    y = clf(torch.rand(3, 5, 16))
    assert y.shape == (3, 5, 7) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(registry.entries("heads")))
def test_every_head_computes_a_finite_loss(name):
    head = registry.build("heads", name, in_channels=16, num_classes=6)
    logits = torch.randn(2, 12, 6, requires_grad=True)
    flat, lengths = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([2, 3])
    if getattr(head, "autoregressive", False):  # per-position targets, end symbol added
        targets = head.targets(flat, lengths)
        loss = head.loss(logits[:, :targets.shape[1]], targets)
    else:
        loss = head.loss(logits, flat, lengths)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None


def test_cap_is_the_column_mean():
    x = torch.randn(2, 5, 3, 7)
    y = registry.build("necks", "cap", in_channels=5)(x)
    assert torch.equal(y, x.mean(2).transpose(1, 2))


def test_bilstm_state_is_the_top_layers_h_n_and_c_n():
    rnn = registry.build("necks", "bilstm", in_channels=8, hidden=6, layers=2)
    x = torch.rand(3, 9, 8)
    out, (h, c) = rnn.forward_with_state(x)
    assert torch.equal(out, rnn(x)) and h.shape == c.shape == (3, 12)
    _, (h_n, c_n) = rnn.rnn(x)
    assert torch.equal(h, torch.cat([h_n[2], h_n[3]], 1))  # layer 2: forward, backward
    assert torch.equal(c, torch.cat([c_n[2], c_n[3]], 1))
    # The forward half is the output at the last frame, the backward half at the first.
    assert torch.allclose(h[:, :6], out[:, -1, :6]) and torch.allclose(h[:, 6:], out[:, 0, 6:])


def test_ctc_greedy_and_beam_decoding():
    head = registry.build("heads", "ctc")
    seq = [1, 1, 0, 1, 2, 2, 0, 0, 3]  # -> 1 1 2 3 (blank separates the repeated 1)
    logits = torch.full((1, len(seq), 4), -10.0)
    for t, k in enumerate(seq):
        logits[0, t, k] = 10.0
    (ids, conf), = head.decode(logits)
    assert ids == [1, 1, 2, 3] and conf > 0.99
    (beam_ids, beam_conf), = head.decode(logits, beam_width=4)
    assert beam_ids == ids and 0.9 < beam_conf <= 1.0
    (empty, blank_conf), = head.decode(torch.zeros(1, 3, 4).index_fill_(2, torch.tensor([0]), 9))
    assert empty == [] and blank_conf > 0.9


def test_ctc_beam_beats_greedy_when_paths_merge():
    # Greedy picks blank at every frame, but the two paths of "1" together are likelier.
    probs = torch.tensor([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])  # frames x classes, blank = 0
    logits = probs.clamp_min(1e-9).log()[None]
    head = registry.build("heads", "ctc")
    assert head.decode(logits)[0][0] == []
    # P("") = .36, P("1") = .4*.6 + .6*.4 + .4*.4 = .64
    (ids, conf), = head.decode(logits, beam_width=3)
    assert ids == [1] and conf == pytest.approx(0.64, abs=1e-4)


def test_mobilenetv3_tables_give_6x40x256_for_48x160():
    for name in ("mobilenetv3-small", "mobilenetv3-large"):
        bb = registry.build("backbones", name, in_channels=3).eval()
        assert bb(torch.rand(1, 3, 48, 160)).shape == (1, 256, 6, 40)
        assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in bb.modules())


def test_vgg16_cut_last_pool_keeps_the_width():
    bb = registry.build("backbones", "vgg16-cut", cut=10, last_pool=(2, 3))
    out = bb(torch.rand(1, 1, 64, 128))
    assert out.shape == (1, 512, 4, 16)  # three 2x2 pools, then (2, 3) with stride (2, 1)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in bb.modules()) == 10


def test_vgg_small_height_stride_8_keeps_two_feature_rows_per_16_px():
    bb = registry.build("backbones", "vgg-small", channels=(8, 8, 8, 8), width_stride=8,
                        height_stride=8)
    assert bb(torch.rand(1, 1, 112, 112)).shape == (1, 8, 14, 14)
    assert list(bb.tap_points) == ["stage1", "stage2", "stage3", "stage4"]
    assert registry.build("backbones", "vgg-small", channels=(8, 8, 8, 8))(
        torch.rand(1, 1, 112, 112)).shape == (1, 8, 7, 28)
    from ocrkit.errors import UsageError

    with pytest.raises(UsageError, match="height_stride must be 8 or 16, not 4"):
        registry.build("backbones", "vgg-small", height_stride=4)


def test_unknown_component_suggests_close_names():
    from ocrkit.errors import UsageError

    with pytest.raises(UsageError, match="Did you mean vgg-small"):
        registry.get("backbones", "vgg-smal")
