"""Faithfulness of MultiRow Stretching, row attention and (Line-)DDeCAE
(Yu & Zhang Eq. 2-12; METHODS.md §1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ocrkit.charset import Charset
from ocrkit.data.batch import Collate, InputSpec
from ocrkit.data.datasets import Sample
from ocrkit.errors import UsageError
from ocrkit.methods.supervised import SupervisedCTC
from ocrkit.models.denoise import Denoiser
from ocrkit.models.necks.multirow import MultiRowStretch, RowAttention, pool_rows
from ocrkit.models.recognizer import Recognizer, make_spec

SMALL = {"channels": (4, 8, 8, 8), "width_stride": 8}


def test_stretch_concatenates_feature_rows_in_reading_order():
    b, c, h, w = 2, 3, 3, 5
    x = torch.zeros(b, c, h, w)
    for r in range(h):
        for col in range(w):
            x[:, 0, r, col] = 100 * r + col  # channel 0 encodes (row, column)
    x[:, 1] = torch.arange(b, dtype=torch.float)[:, None, None]  # channel 1 the sample
    frames = MultiRowStretch(in_channels=c, rows=3, pool="none")(x)
    assert frames.shape == (b, h * w, c)
    for t in range(h * w):
        assert frames[0, t, 0] == 100 * (t // w) + t % w
    assert torch.equal(frames[:, :, 1], torch.tensor([[0.0] * 15, [1.0] * 15]))


def test_stretch_pools_each_text_rows_band_when_asked():
    x = torch.arange(24, dtype=torch.float).reshape(1, 1, 6, 4)  # 6 feature rows, 3 text rows
    frames = MultiRowStretch(in_channels=1, rows=3)(x)[0, :, 0]  # pool="rows" (default)
    assert frames.tolist() == [2, 3, 4, 5, 10, 11, 12, 13, 18, 19, 20, 21]  # band means
    same = torch.randn(2, 5, 3, 4)  # h == H: pooling changes nothing (the paper's h = H = 7)
    assert torch.equal(MultiRowStretch(in_channels=5, rows=3)(same),
                       MultiRowStretch(in_channels=5, rows=3, pool="none")(same))
    neck = MultiRowStretch(in_channels=1, rows=3, feature_height=6, feature_width=4)
    assert neck.row_spans(12) == [(0, 4), (4, 8), (8, 12)]
    for h, rows in ((4, 3), (7, 3), (5, 7)):  # uneven bands: torch's adaptive pooling
        x = torch.randn(2, 3, h, 5)
        pooled = nn.functional.adaptive_avg_pool2d(x, (rows, 5))
        expect = pooled.permute(0, 2, 3, 1).reshape(2, rows * 5, 3)
        assert torch.allclose(MultiRowStretch(in_channels=3, rows=rows)(x), expect, atol=1e-6)


@pytest.mark.parametrize("h,rows,expect", [
    (6, 3, [(0, 8), (8, 16), (16, 24)]),
    (7, 7, [(i * 4, i * 4 + 4) for i in range(7)]),
    (7, 3, [(0, 8), (8, 20), (20, 28)]),  # feature rows 0-1 | 2-4 | 5-6
    (2, 3, [(0, 4), (0, 0), (4, 8)]),  # fewer feature rows than text rows: one row is empty
])
def test_stretch_row_spans(h, rows, expect):
    neck = MultiRowStretch(in_channels=1, rows=rows, feature_height=h, feature_width=4,
                           pool="none")
    assert neck.row_spans(h * 4) == expect


@pytest.mark.parametrize("features", ["input", "conv"])
@pytest.mark.parametrize("variant", ["full", "column"])
def test_row_attention_gives_exactly_h_rows_and_a_mask_in_0_1(variant, features):
    torch.manual_seed(0)
    neck = RowAttention(in_channels=6, rows=3, feature_height=7, feature_width=5, variant=variant,
                        features=features)
    x = torch.randn(2, 6, 7, 5) * 10
    with torch.no_grad():
        feats, mask = neck.mask_and_features(x)
        out = neck(x)
    assert out.shape == (2, 3, 5, 6) and mask.shape == feats.shape == out.shape
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    assert float(feats.min()) >= 0.0  # ReLU features
    assert torch.allclose(out, feats * mask)


def test_row_attention_full_is_the_papers_conv1d_over_the_height():
    neck = RowAttention(in_channels=4, rows=2, feature_height=5, feature_width=3,
                        features="conv")
    d, k = 3 * 4, 5 - 2 + 1
    assert isinstance(neck.features, nn.Conv1d) and isinstance(neck.attention, nn.Conv1d)
    assert neck.features.weight.shape == neck.attention.weight.shape == (d, d, k)  # (w*c)^2*k
    light = RowAttention(in_channels=4, rows=2, feature_height=5, feature_width=3,
                         variant="column", features="conv")
    assert light.features.weight.numel() == 4 * 4 * k
    # the column variant is width-agnostic; the full one names the size it was built for
    assert light(torch.randn(1, 4, 5, 9)).shape == (1, 2, 9, 4)
    with pytest.raises(UsageError, match="built for a 5x3 feature map"):
        neck(torch.randn(1, 4, 5, 9))


@pytest.mark.parametrize("variant", ["full", "column"])
def test_row_attention_input_features_are_the_gated_input_rows(variant):
    """features=input (Eq. 6 as printed, ECA-style): one convolution, the mask; the
    output is ReLU(input) * mask when h = H, and the band means of the input when h > H."""
    torch.manual_seed(0)
    neck = RowAttention(in_channels=4, rows=3, feature_height=3, feature_width=5, variant=variant,
                        features="input")
    assert neck.features is None
    assert sum(p.numel() for p in neck.parameters()) == neck.attention.weight.numel() + \
        neck.attention.bias.numel()
    x = torch.randn(2, 4, 3, 5)
    with torch.no_grad():
        feats, mask = neck.mask_and_features(x)
        out = neck(x)
    assert torch.equal(feats, torch.relu(x).permute(0, 2, 3, 1))
    assert torch.allclose(out, torch.relu(x).permute(0, 2, 3, 1) * mask)
    tall = RowAttention(in_channels=4, rows=3, feature_height=6, feature_width=5,
                        variant=variant, features="input")
    x = torch.rand(1, 4, 6, 5)
    with torch.no_grad():
        feats, _ = tall.mask_and_features(x)
    band = (x[:, :, 2] + x[:, :, 3]) / 2  # text row 1 owns feature rows 2 and 3
    assert torch.allclose(feats[:, 1], band.permute(0, 2, 1))


def test_row_attention_gate_scale_keeps_the_initial_mask_and_shrinks_adam_steps():
    """gate_scale=s: the mask's convolution output is multiplied by s and its weights
    start divided by s - the same initial mask, but an Adam step (about lr per weight,
    whatever the gradient) moves the mask's pre-activation s times less."""
    x = torch.rand(2, 6, 3, 5)

    def neck_and_step(scale):
        torch.manual_seed(0)
        neck = RowAttention(in_channels=6, rows=3, feature_height=3, feature_width=5,
                            variant="column", features="input", gate_scale=scale)
        before = neck.attention(x).detach() * neck.gate_scale
        opt = torch.optim.Adam(neck.parameters(), lr=1e-2)
        neck(x).square().sum().backward()
        opt.step()
        return neck, before, neck.attention(x).detach() * neck.gate_scale - before

    plain, start, moved = neck_and_step(1.0)
    scaled, start_scaled, moved_scaled = neck_and_step("auto")
    assert scaled.gate_scale == pytest.approx(6 ** -0.5)  # 1 / sqrt(fan-in): c * k = 6 * 1
    assert torch.allclose(start, start_scaled, atol=1e-5)
    assert torch.allclose(moved_scaled, moved * scaled.gate_scale, rtol=1e-3, atol=1e-6)
    for bad in (2, "wide"):
        with pytest.raises(UsageError, match=f"gate_scale must be 'auto' or a number in "
                                             rf"\(0, 1\], not {bad!r}"):
            RowAttention(in_channels=6, rows=3, feature_height=3, feature_width=5,
                         gate_scale=bad)


@pytest.mark.parametrize("variant", ["full", "column"])
def test_row_attention_zero_init_gate_starts_as_stretching_and_learns(variant):
    """gate_init=zero: the mask starts at 0.5 everywhere, so with features=input the
    neck's first output is half the band-pooled rows (stretching's frames); the first
    step moves the gate off zero."""
    torch.manual_seed(0)
    neck = RowAttention(in_channels=4, rows=3, feature_height=6, feature_width=5,
                        variant=variant, features="input", gate_init="zero")
    x = torch.randn(2, 4, 6, 5)
    _, mask = neck.mask_and_features(x)
    assert torch.equal(mask, torch.full_like(mask, 0.5))
    assert torch.allclose(neck(x), 0.5 * torch.relu(pool_rows(x, 3)).permute(0, 2, 3, 1))
    neck(x).sum().backward()
    assert neck.attention.weight.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="gate_init must be 'default' or 'zero', not 'ones'"):
        RowAttention(in_channels=4, rows=3, feature_height=6, feature_width=5, gate_init="ones")


@pytest.mark.parametrize("features", ["input", "conv"])
def test_row_attention_full_row_j_sees_feature_rows_j_to_j_plus_k(features):
    """Output row j depends on input rows j..j+k-1 only (a valid conv over the height)."""
    torch.manual_seed(0)
    neck = RowAttention(in_channels=2, rows=3, feature_height=5, feature_width=2,
                        features=features)
    x = torch.randn(1, 2, 5, 2)
    y = x.clone()
    y[:, :, 4] += 5.0  # change the last feature row only
    with torch.no_grad():
        moved = (neck(y) - neck(x)).abs().sum(dim=(0, 2, 3))
    assert moved[0] == 0 and moved[1] == 0 and moved[2] > 0  # k = 3: only row 2 sees row 4


def test_row_attention_needs_enough_feature_rows():
    with pytest.raises(UsageError, match="feature map has 2 rows, fewer than the 3 text rows"):
        RowAttention(in_channels=4, rows=3, feature_height=2, feature_width=3)


def _model(neck: str, rows: int = 3, size=(48, 48), classes: int = 6,
           row_sequence: str = "per-row", variant: str = "full") -> Recognizer:
    torch.manual_seed(0)
    neck_args = {"rows": rows, **({"variant": variant} if neck == "row-attention" else {})}
    spec = make_spec("vgg-small", neck, "bilstm", backbone_args=SMALL, neck_args=neck_args,
                     sequence_args={"hidden": 8, "layers": 1}, row_sequence=row_sequence)
    return Recognizer(spec, classes, input_size=size)


@pytest.mark.parametrize("variant", ["full", "column"])
def test_reading_order_carries_context_across_rows_and_per_row_does_not(variant):
    images = torch.rand(2, 1, 48, 48)

    def logits_with_row0_changed(model):
        def bump(module, args, out):  # change text row 0's features only
            out = out.clone()
            out[:, 0] += 1.0
            return out

        handle = model.neck.register_forward_hook(bump)
        try:
            return model(images)
        finally:
            handle.remove()

    for order, crosses in (("per-row", False), ("reading-order", True)):
        model = _model("row-attention", row_sequence=order, variant=variant).eval()
        before, after = model(images), logits_with_row0_changed(model)
        assert before.shape == after.shape == (2, 3, 6, 6)
        assert not torch.equal(before[:, 0], after[:, 0])
        assert torch.equal(before[:, 1:], after[:, 1:]) != crosses, order


def test_reading_order_keeps_eq_10s_per_row_ctc_loss():
    model = _model("row-attention", classes=8, row_sequence="reading-order")
    charset = Charset(list("abcdefg"))
    from PIL import Image

    im = Image.new("L", (48, 48), 255)
    batch = Collate(InputSpec(48, 48, "stretch", rows=3), charset)(
        [Sample(im, ["ab", "c", "defg"], "0"), Sample(im, ["g", "fe"], "1")])
    loss = SupervisedCTC(charset).loss(model, batch, torch.device("cpu")).total
    logits = model(batch["images"])
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    rows = [["ab", "c", "defg"], ["g", "fe", ""]]
    terms = [ctc(logits[i, j].log_softmax(-1)[:, None],
                 torch.tensor([charset.encode(rows[i][j])], dtype=torch.long).reshape(1, -1),
                 torch.tensor([logits.shape[2]]), torch.tensor([len(rows[i][j])]))
             for i in range(2) for j in range(3)]
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    out = model(batch["images"], outputs=True)
    assert out.rnn_state[0].shape == (2, 16)  # one sequence per image, not per row


def test_full_row_attention_too_large_is_refused_not_allocated():
    with pytest.raises(UsageError, match="variant=full needs two Conv1d.*: 411 M .*variant=column"):
        RowAttention(in_channels=512, rows=7, feature_height=7, feature_width=28, variant="full")
    with pytest.raises(UsageError, match="variant=full needs a Conv1d.*: 206 M .*variant=column"):
        RowAttention(in_channels=512, rows=7, feature_height=7, feature_width=28, features="input",
                     variant="full")
    RowAttention(in_channels=512, rows=7, feature_height=7, feature_width=28, variant="column")
    # Not asked for: the variant that fits, said and recorded.
    auto = RowAttention(in_channels=512, rows=7, feature_height=7, feature_width=28)
    assert auto.variant == "column" and auto.resolved_args == {"variant": "column"}
    assert "411 M parameters" in auto.note
    small = RowAttention(in_channels=16, rows=3, feature_height=3, feature_width=6)
    assert small.variant == "full" and small.note is None


def test_recognizer_measures_feature_geometry_into_the_spec():
    model = _model("row-attention")
    assert model.spec["neck"]["args"] == {"rows": 3, "variant": "full", "feature_height": 3,
                                          "feature_width": 6}
    logits = model(torch.zeros(2, 1, 48, 48))
    assert logits.shape == (2, 3, 6, 6)  # [B, H, T, K]
    again = Recognizer(model.spec, 6)  # a checkpoint's spec rebuilds without the input size
    again.load_state_dict(model.state_dict())


def test_stretch_decoding_splits_rows_and_keeps_a_repeat_across_the_boundary():
    model = _model("multirow-stretch")  # 3 text rows x 6 columns -> 18 frames, 6 per row
    logits = torch.full((1, 18, 6), -10.0)
    logits[0, :, 0] = 10.0  # blank everywhere ...
    for t, k in ((1, 2), (2, 2), (4, 3), (5, 2), (6, 2), (13, 5)):
        logits[0, t, 0], logits[0, t, k] = -10.0, 10.0
    (rows, confs), = model.decode(logits)
    # row 0 ends with class 2 at frame 5, row 1 starts with it at frame 6: two characters
    assert rows == [[2, 3, 2], [2], [5]] and len(confs) == 3
    beam = model.decode(logits, beam_width=4)[0][0]
    assert beam == rows


def test_row_attention_loss_is_the_mean_of_per_row_ctc_losses():
    """Eq. 10: 1/(BH) sum_i sum_j CTCLoss(x_j^(i), y_j^(i))."""
    model = _model("row-attention", classes=8)
    charset = Charset(list("abcdefg"))
    collate = Collate(InputSpec(48, 48, "stretch", rows=3), charset)
    from PIL import Image

    im = Image.new("L", (48, 48), 255)
    batch = collate([Sample(im, ["ab", "c", "defg"], "0"), Sample(im, ["g", "fe"], "1")])
    assert batch["row_target_lengths"].tolist() == [2, 1, 4, 1, 2, 0]  # padded with an empty row
    loss, terms_logged, n = SupervisedCTC(charset).loss(model, batch, torch.device("cpu"))
    assert set(terms_logged) == {"ctc"}
    logits = model(batch["images"])  # [2, 3, T, K]
    rows = [["ab", "c", "defg"], ["g", "fe", ""]]
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)  # torch's default reduction, one row at a time
    terms = []
    for i in range(2):
        for j in range(3):
            lp = logits[i, j].log_softmax(-1)[:, None]  # [T, 1, K]
            target = torch.tensor([charset.encode(rows[i][j])], dtype=torch.long).reshape(1, -1)
            terms.append(ctc(lp, target, torch.tensor([lp.shape[0]]),
                             torch.tensor([len(rows[i][j])])))
    assert n == 2
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)


def test_collate_drops_samples_with_more_rows_than_the_model_reads():
    from PIL import Image

    collate = Collate(InputSpec(48, 48, "stretch", rows=2), Charset(list("ab")))
    im = Image.new("L", (48, 48), 255)
    batch = collate([Sample(im, ["a", "b", "a"], "0"), Sample(im, ["ab"], "1")])
    assert batch["broken"] == 1 and batch["labels"] == ["ab"]
    assert batch["row_target_lengths"].tolist() == [2, 0]


# ----------------------------------------------------------------------------- denoisers
def test_denoiser_with_zero_output_is_the_identity():
    den = Denoiser(variant="line", base=4, depth=3)
    nn.init.zeros_(den.output_layer.weight)
    nn.init.zeros_(den.output_layer.bias)
    den.eval()
    v = torch.rand(2, 1, 37, 50)  # not a multiple of 2^depth: padded and cropped back
    assert torch.equal(den.clean(v), v)
    assert den(v).shape == v.shape


def test_line_ddecae_learns_a_positive_correction_on_a_black_line_over_white():
    torch.manual_seed(0)
    den = Denoiser(variant="line", base=8, depth=2)
    v = torch.ones(4, 1, 32, 32)
    v[:, :, 15:17, :] = 0.0  # a black line over white paper
    clean = torch.ones_like(v)
    opt = torch.optim.Adam(den.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.mse_loss(den(v), den.target(v, clean)).backward()
        opt.step()
    den.eval()
    with torch.no_grad():
        out = den(v)
        cleaned = den.clean(v)
    assert float(den.target(v, clean)[:, :, 15:17].min()) == 1.0  # target: +1 on the line
    assert float(out[:, :, 15:17].mean()) > 0.5  # learned: positive there ...
    assert float(out[:, :, :10].abs().mean()) < 0.1  # ... and about nothing on paper
    assert float(cleaned[:, :, 15:17].mean()) > 0.5  # the line is mostly gone


def test_plain_ddecae_outputs_the_clean_image_itself():
    den = Denoiser(variant="plain", base=4, depth=2)
    nn.init.zeros_(den.output_layer.weight)
    nn.init.zeros_(den.output_layer.bias)
    den.eval()
    v = torch.zeros(1, 1, 16, 16)
    assert torch.allclose(den.clean(v), torch.full_like(v, 0.5))  # (tanh(0) + 1) / 2
    assert torch.equal(den.target(v, torch.ones_like(v)), torch.ones_like(v))


def test_recognizer_keeps_an_attached_denoiser_frozen_and_in_eval_mode():
    model = _model("multirow-stretch")
    den = Denoiser(variant="line", base=4, depth=2)
    nn.init.zeros_(den.output_layer.weight)
    nn.init.zeros_(den.output_layer.bias)
    x = torch.rand(1, 1, 48, 48) * 2 - 1
    before = model.eval()(x)
    model.set_denoiser({"net": den.config(), "mean": 0.5, "std": 0.5}, den.state_dict())
    model.train()
    assert not model.denoiser.training
    assert all(not p.requires_grad for p in model.denoiser.parameters())
    assert torch.allclose(model.clean(x), x, atol=1e-6)  # zero correction: unchanged input
    assert torch.allclose(model.eval()(x), before, atol=1e-5)
    assert any(k.startswith("denoiser.") for k in model.state_dict())
    rebuilt = Recognizer(model.spec, 6)  # the spec carries the denoiser's configuration
    rebuilt.load_state_dict(model.state_dict())


def test_row_loss_layouts_equal_the_other_necks_losses():
    """--row-loss: joined = one CTC over the rows in reading order; per-row on a
    stretched sequence = one CTC per row over that row's frames."""
    from ocrkit.methods.supervised import ctc_loss
    from ocrkit.models.heads.ctc import CTCHead

    torch.manual_seed(0)
    head = CTCHead()
    b, rows, t, k = 2, 3, 5, 7
    batch = {"targets": torch.tensor([1, 2, 3, 4, 5, 6, 1, 2]),
             "target_lengths": torch.tensor([4, 4]),
             "row_target_lengths": torch.tensor([1, 2, 1, 2, 0, 2])}
    per_row = torch.randn(b, rows, t, k)
    joined = ctc_loss(head, per_row, batch, torch.device("cpu"), row_loss="joined")
    want = head.loss(per_row.reshape(b, rows * t, k), batch["targets"], batch["target_lengths"])
    assert torch.isclose(joined, want)
    stretched = per_row.reshape(b, rows * t, k)
    spans = [(0, 5), (5, 10), (10, 15)]
    split = ctc_loss(head, stretched, batch, torch.device("cpu"), row_loss="per-row",
                     spans=spans)
    assert torch.isclose(split, ctc_loss(head, per_row, batch, torch.device("cpu")))
    with pytest.raises(Exception, match="equal"):
        ctc_loss(head, stretched, batch, torch.device("cpu"), row_loss="per-row",
                 spans=[(0, 4), (4, 10), (10, 15)])
