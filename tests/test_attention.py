"""The attention head (ASTER / DTRB-style Bahdanau decoder): teacher forcing, greedy and
beam decoding, the end symbol, the extras unified KD reads, RGB end to end through the
CLI (train, evaluate, infer, export --verify) and distillation between attention
recognizers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ocrkit.models.classifiers.linear import linear
from ocrkit.models.heads.attention import IGNORE, AttentionHead, sequence_log_prob
from ocrkit.models.recognizer import Recognizer, make_spec


def _head(num_classes: int = 6, seed: int = 0, **kw) -> tuple[AttentionHead, torch.nn.Module]:
    torch.manual_seed(seed)
    args = {"hidden": 16, "embed_dim": 8, "max_length": 5, **kw}
    head = AttentionHead(in_channels=12, num_classes=num_classes, **args).eval()
    return head, linear(in_channels=head.out_channels, num_classes=num_classes).eval()


def _model(num_classes: int = 6, channels: int = 1, lstm: int = 8, **head_args) -> Recognizer:
    torch.manual_seed(0)
    spec = make_spec("vgg-small", "cap", "bilstm", "linear", "attention",
                     backbone_args={"channels": (8, 8, 16, 16)},
                     sequence_args={"hidden": lstm, "layers": 1},
                     head_args={"hidden": 16, "embed_dim": 8, "max_length": 5, **head_args},
                     in_channels=channels)
    return Recognizer(spec, num_classes, input_size=(32, 64)).eval()


# ------------------------------------------------------------------------- the head
def test_targets_append_the_end_symbol_and_padding_steps_count_in_no_loss():
    head, _ = _head()
    t = head.targets(torch.tensor([3, 4, 5, 2]), torch.tensor([3, 1]))
    assert t.tolist() == [[3, 4, 5, 0], [2, 0, IGNORE, IGNORE]]
    logits = torch.randn(2, 4, 6)
    per = head.loss(logits, t, reduction="none")
    assert per.shape == (2, 4) and float(per[1, 2:].abs().sum()) == 0.0
    changed = logits.clone()
    changed[1, 2:] = torch.randn(2, 6) * 10  # the padding steps' logits do not matter
    assert torch.equal(head.loss(changed, t), head.loss(logits, t))
    expected = torch.nn.functional.cross_entropy(logits[t != IGNORE], t[t != IGNORE])
    assert torch.isclose(head.loss(logits, t), expected)


def test_teacher_forcing_is_causal_and_greedy_steps_are_teacher_forced_on_their_own_prefix():
    head, clf = _head()
    frames = torch.randn(3, 7, 12)
    with torch.no_grad():
        targets = torch.tensor([[3, 4, 5, 0], [2, 0, IGNORE, IGNORE], [1, 1, 1, 0]])
        forced = head(frames, clf, targets=targets)
        assert forced.shape == (3, 4, 6)
        changed = targets.clone()
        changed[0, 1] = 5  # step t reads targets < t only
        again = head(frames, clf, targets=changed)
        assert torch.equal(forced[:, :2], again[:, :2])
        assert not torch.allclose(forced[0, 2], again[0, 2])
        head.stop_early = False
        greedy = head(frames, clf)
        assert greedy.shape == (3, 6, 6)  # max_length + 1 steps
        prefix = greedy.argmax(-1)  # greedy feeds back its own argmax
        assert torch.allclose(head(frames, clf, targets=prefix), greedy, atol=1e-6)


def test_extras_hold_per_step_glimpses_and_attention_maps():
    head, clf = _head()
    frames = torch.randn(2, 7, 12)
    for targets in (torch.tensor([[3, 4, 0], [2, 0, IGNORE]]), None):
        extras: dict = {}
        with torch.no_grad():
            logits = head(frames, clf, targets=targets, extras=extras)
        steps = logits.shape[1]
        assert extras["glimpses"].shape == (2, steps, 12)
        assert extras["attention"].shape == (2, steps, 7)
        assert torch.allclose(extras["attention"].sum(-1), torch.ones(2, steps), atol=1e-5)
        # a glimpse is the attention-weighted sum of the frames (the context vector)
        assert torch.allclose(extras["glimpses"], extras["attention"] @ frames, atol=1e-5)
    model = _model()
    out = model(torch.rand(2, 1, 32, 64), outputs=True, targets=torch.tensor([[3, 0], [1, 0]]))
    assert out.extras["glimpses"].shape == (2, 2, out.context.shape[-1])
    assert out.extras["attention"].shape == (2, 2, out.context.shape[1])


def test_decoding_cuts_at_the_end_symbol_and_stops_once_every_line_has_ended():
    head, _ = _head()
    logits = torch.full((2, 4, 6), -5.0)
    for i, ids in enumerate(([3, 2, 0, 1], [0, 4, 4, 4])):
        logits[i, torch.arange(4), torch.tensor(ids)] = 5.0
    (ids0, conf0), (ids1, conf1) = head.decode(logits)
    p = torch.softmax(logits[0, 0], -1)[3]
    assert ids0 == [3, 2] and conf0 == pytest.approx(float(p))
    assert ids1 == [] and conf1 == pytest.approx(float(torch.softmax(logits[1, 0], -1)[0]))

    class EndsAtOnce(torch.nn.Module):  # the end symbol wins from the first step
        def forward(self, x):
            out = torch.zeros(*x.shape[:-1], 6)
            out[..., 0] = 10.0
            return out

    with torch.no_grad():
        assert head(torch.randn(2, 7, 12), EndsAtOnce()).shape == (2, 1, 6)
        head.stop_early = False
        assert head(torch.randn(2, 7, 12), EndsAtOnce()).shape == (2, 6, 6)


def test_a_reading_that_never_ends_is_returned_with_confidence_zero():
    """A word longer than max_length (or a rambling decoder) never emits the end
    symbol: its letters may be confident, the reading is cut off - greedy and beam
    report it at confidence 0, so a threshold catches it."""
    head, _ = _head()
    logits = torch.full((2, 6, 6), -5.0)
    for i, ids in enumerate(([3, 2, 4, 1, 5, 2], [3, 2, 4, 1, 5, 0])):
        logits[i, torch.arange(6), torch.tensor(ids)] = 5.0
    (ids0, conf0), (ids1, conf1) = head.decode(logits)
    assert ids0 == [3, 2, 4, 1, 5, 2] and conf0 == 0.0
    assert ids1 == [3, 2, 4, 1, 5] and conf1 > 0.99

    class NeverEnds(torch.nn.Module):  # class 3 always wins, the end symbol never
        def forward(self, x):
            out = torch.zeros(*x.shape[:-1], 6)
            out[..., 3] = 10.0
            return out

    frames = torch.randn(2, 7, 12)
    with torch.no_grad():
        for width in (1, 3):
            for ids, conf in head.beam_search(frames, NeverEnds(), width):
                assert ids == [3] * 6 and conf == 0.0  # max_length 5 + the end step


def test_options_are_checked():
    with pytest.raises(ValueError, match="cell='rnn'"):
        AttentionHead(in_channels=4, num_classes=3, cell="rnn")
    with pytest.raises(ValueError, match="max_length=0"):
        AttentionHead(in_channels=4, num_classes=3, max_length=0)
    with pytest.raises(ValueError, match="readout='glimpse'"):
        AttentionHead(in_channels=4, num_classes=3, readout="glimpse")
    gru = AttentionHead(in_channels=4, num_classes=3, cell="gru", hidden=8)
    assert isinstance(gru.cell, torch.nn.GRUCell) and gru.embed.num_embeddings == 4  # + [GO]
    assert gru.out_channels == 8 + 4  # the classifier reads [state ; glimpse]
    assert AttentionHead(in_channels=4, num_classes=3, hidden=8, readout="state"
                         ).out_channels == 8


# ------------------------------------------------------------------------- a trained toy
def test_joint_ctc_classifies_the_frames_and_joins_the_training_loss():
    from ocrkit.charset import Charset
    from ocrkit.methods.supervised import SupervisedCTC

    plain, joint = _model(), _model(ctc_weight=0.5)
    assert not any(k.startswith("head.ctc_proj") for k in plain.state_dict())  # old keys
    extra = {k: v for k, v in joint.state_dict().items() if k not in plain.state_dict()}
    assert sorted(extra) == ["head.ctc_proj.bias", "head.ctc_proj.weight"]
    joint.load_state_dict({**plain.state_dict(), **extra})
    images = torch.rand(2, 1, 32, 64)
    flat, lengths = torch.tensor([3, 4, 5]), torch.tensor([2, 1])
    targets = joint.head.targets(flat, lengths)
    out = joint(images, outputs=True, targets=targets)
    frames = out.context
    assert torch.allclose(out.extras["ctc_logits"], joint.head.ctc_proj(frames))
    expected = torch.nn.CTCLoss(blank=0, zero_infinity=True)(
        out.extras["ctc_logits"].log_softmax(-1).transpose(0, 1), flat,
        torch.full((2,), frames.shape[1]), lengths)
    ctc = joint.head.ctc_loss(out.extras["ctc_logits"], flat, lengths)
    assert torch.isclose(ctc, expected)
    with torch.no_grad():  # inference is the decoder's alone
        assert torch.equal(plain(images), joint(images))
    # the method adds the CTC term with its weight (the training loss reads it)
    batch = {"images": images, "targets": flat, "target_lengths": lengths}
    method = SupervisedCTC(Charset(list("abcde")))
    loss = method.loss(joint, batch, torch.device("cpu"))
    assert set(loss.terms) >= {"ce", "aux_ctc"}
    assert torch.isclose(loss.total, loss.terms["ce"] + 0.5 * loss.terms["aux_ctc"], atol=1e-5)
    loss.total.backward()
    assert joint.head.ctc_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ctc_weight=-1"):
        _head(ctc_weight=-1)


def _glyph_line(ids: list[int]) -> torch.Tensor:
    """Three glyphs (1 a bar, 2 a dash, 3 a block) in 20-px cells of a 32x64 line."""
    img = torch.zeros(1, 32, 64)
    for k, c in enumerate(ids):
        x = 4 + 20 * k
        if c == 1:
            img[0, 6:26, x + 6:x + 10] = 1
        elif c == 2:
            img[0, 14:18, x:x + 16] = 1
        else:
            img[0, 8:24, x + 2:x + 14] = 1
    return img * 2 - 1


def _glyph_batch(g: torch.Generator, n: int):
    seqs = [torch.randint(1, 4, (int(torch.randint(1, 4, (1,), generator=g)),),
                          generator=g).tolist() for _ in range(n)]
    return torch.stack([_glyph_line(s) for s in seqs]), seqs


def test_a_trained_toy_reads_and_its_teacher_forced_and_greedy_outputs_agree():
    model = _model(num_classes=4, lstm=16, max_length=4, hidden=32)
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x, seqs = _glyph_batch(g, 16)
        targets = model.head.targets(torch.tensor([c for s in seqs for c in s]),
                                     torch.tensor([len(s) for s in seqs]))
        model.train()
        loss = model.head.loss(model(x, targets=targets), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, seqs = _glyph_batch(g, 32)
    targets = model.head.targets(torch.tensor([c for s in seqs for c in s]),
                                 torch.tensor([len(s) for s in seqs]))
    with torch.no_grad():
        greedy = [rows[0] for rows, _ in model.decode(model(x))]
        forced = model(x, targets=targets).argmax(-1)
    assert sum(a == b for a, b in zip(greedy, seqs)) >= 30
    for i, seq in enumerate(seqs):  # teacher-forced on the label: the label and its end
        got = forced[i, :len(seq) + 1].tolist()
        assert (got == seq + [0]) == (greedy[i] == seq)


# ------------------------------------------------------------------------- beam search
def test_beam_width_one_is_greedy_decoding():
    for seed in range(5):
        head, clf = _head(seed=seed)
        frames = torch.randn(4, 7, 12)
        beam = [hyps[0] for hyps in head.search(frames, clf, 1, keep_greedy=False)]
        with torch.no_grad():
            greedy = head.decode(head(frames, clf))
        for (ids, conf, _), (g_ids, g_conf) in zip(beam, greedy):
            assert ids == g_ids and conf == pytest.approx(g_conf, abs=1e-6)


@pytest.mark.parametrize("end_bias", [0.0, -2.0])
def test_a_wide_beam_finds_the_most_probable_text_and_reports_its_log_probability(end_bias):
    """Classes {end, 1, 2}, at most 3 characters: 15 texts end within the 4 steps and 16
    never end; a beam of 40 holds every prefix, so its n-best list is all 31 texts, most
    probable first, each with its own log-probability (short texts win with
    ``end_bias`` 0, long ones with a rare end symbol)."""
    texts = [list(s) for n in range(5) for s in itertools.product([1, 2], repeat=n)]
    unlike_greedy = 0
    for seed in range(6):
        head, clf = _head(num_classes=3, seed=seed, max_length=3)
        with torch.no_grad():
            clf.fc.weight.mul_(4)  # peaked steps: texts differ widely in probability
            clf.fc.bias[0] += end_bias
        frames = torch.randn(2, 7, 12)
        found = head.search(frames, clf, 40, keep_greedy=False)
        greedy = head.search(frames, clf, 1, keep_greedy=False)
        unlike_greedy += sum(a[0][0] != b[0][0] for a, b in zip(found, greedy))
        for i, hyps in enumerate(found):
            every = head.log_prob(frames[i:i + 1].expand(len(texts), -1, -1), clf, texts)
            assert hyps[0][0] == texts[int(every.argmax())]
            assert sorted(tuple(h[0]) for h in hyps) == sorted(tuple(t) for t in texts)
            own = head.log_prob(frames[i:i + 1].expand(len(hyps), -1, -1), clf,
                                [h[0] for h in hyps])
            assert torch.allclose(torch.tensor([h[2] for h in hyps]), own, atol=1e-4)
            assert all(a[2] >= b[2] for a, b in zip(hyps, hyps[1:]))
    assert unlike_greedy > 0  # the search found what greedy decoding misses


def test_beam_search_never_scores_below_greedy_decoding():
    """A plain beam can end below greedy (the greedy prefix drops out, the survivors
    pay more later); on these seeds it does, and the head's beam never does."""
    below_plain = 0
    for seed in range(6):
        head, clf = _head(num_classes=8, seed=seed, max_length=6)
        with torch.no_grad():
            clf.fc.weight.mul_(6)  # peaked steps: greedy's early choices matter more
        frames = torch.randn(4, 7, 12)
        with torch.no_grad():
            greedy = head.decode(head(frames, clf))
        greedy_lp = head.log_prob(frames, clf, [ids for ids, _ in greedy])
        for width in (2, 3):
            texts = [ids for ids, _ in head.beam_search(frames, clf, width)]
            assert (head.log_prob(frames, clf, texts) >= greedy_lp - 1e-5).all()
        plain = [hyps[0] for hyps in head.search(frames, clf, 2, keep_greedy=False)]
        below_plain += sum(lp < float(g) - 1e-5 for (_, _, lp), g in zip(plain, greedy_lp))
    assert below_plain > 0


def test_greedy_log_probability_sums_up_to_the_end_symbol():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4)
    logits[:, :, 0] = -50.0  # no end symbol ...
    logits[0, 2, 0] = 50.0  # ... but at step 2 of the first text; steps 3-4 do not count
    logp = torch.log_softmax(logits, -1)
    got = sequence_log_prob(logits)
    assert float(got[0]) == pytest.approx(float(logp[0, :3].max(-1).values.sum()), abs=1e-5)
    assert float(got[1]) == pytest.approx(float(logp[1].max(-1).values.sum()), abs=1e-5)


def test_predict_routes_a_beam_width_to_the_heads_beam_search():
    from ocrkit.charset import Charset
    from ocrkit.predict import predict_texts

    charset = Charset(list("abcde"))
    for seed in range(40):  # a model whose beam differs from its greedy reading
        model = _model(num_classes=6)
        torch.manual_seed(seed)
        for p in model.head.parameters():
            torch.nn.init.normal_(p, std=0.5)
        images = torch.rand(4, 1, 32, 64) * 2 - 1
        with torch.no_grad():
            greedy, _, _ = predict_texts(model, images, charset)
            beam, confs, _ = predict_texts(model, images, charset, beam_width=3)
            direct = model.head.beam_search(model.encode(images), model.classifier, 3)
        assert beam == [charset.decode(ids) for ids, _ in direct]
        assert confs == pytest.approx([conf for _, conf in direct])
        if beam != greedy:
            return
    pytest.fail("no seed gave a beam reading unlike the greedy one")


def test_a_narrow_batch_is_padded_so_the_backbone_gives_frames():
    from ocrkit.charset import Charset
    from ocrkit.predict import predict_texts

    from ocrkit.predict import at_least_square

    model = _model()
    texts, _, _ = predict_texts(model, torch.rand(1, 1, 32, 3), Charset(list("abcde")))
    assert len(texts) == 1
    narrow = torch.rand(2, 3, 32, 5)
    padded = at_least_square(model, narrow)
    assert padded.shape == (2, 3, 32, 32) and torch.equal(padded[..., :5], narrow)
    assert torch.equal(padded[..., 31], narrow[..., 4])  # the last column, repeated

    class MultiRow:  # built for one feature-map size: its input is never changed
        spec = {"neck": {"name": "row-attention", "args": {"feature_width": 4}}}

    tall = torch.rand(1, 1, 64, 32)
    assert at_least_square(MultiRow(), tall) is tall


# ------------------------------------------------------------------------- the CLI, RGB
WORDS = ["ab", "ba", "abc", "ca", "cab", "bc", "a", "acb"]
COLOURS = [(200, 30, 30), (20, 120, 200), (30, 160, 60), (240, 200, 40)]


@pytest.fixture(scope="module")
def rgb_words(tmp_path_factory):
    """Coloured word crops of several sizes with a gt.txt (path<TAB>label)."""
    folder = tmp_path_factory.mktemp("rgb") / "words"
    folder.mkdir()
    lines = []
    for i, word in enumerate(WORDS * 2):
        w, h = 30 + 11 * len(word) + 3 * i, 14 + i % 5
        im = Image.new("RGB", (w, h), COLOURS[i % 4])
        ImageDraw.Draw(im).text((3, 1), word, fill=COLOURS[(i + 2) % 4])
        im.save(folder / f"w{i}.png")
        lines.append(f"w{i}.png\t{word}")
    (folder / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


TINY = ["--backbone-arg", "channels=(8,8,16,16)", "--sequence-arg", "hidden=8",
        "--sequence-arg", "layers=1", "--head-arg", "hidden=16", "--head-arg", "embed_dim=8",
        "--height", "32", "--width", "96", "-b", "8", "-w", "0", "-q", "--no-augment"]


def test_rgb_attention_recognizer_trains_evaluates_infers_and_exports(rgb_words, tmp_path,
                                                                       cli):
    out = tmp_path / "run"
    res = cli("train", "--train", rgb_words, "--val", rgb_words, "-o", out, "--head",
              "attention", "--channels", "3", "--max-length", "4", "--max-steps", "3",
              "--val-every", "3", *TINY)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in open(out / "metrics.jsonl") if '"terms"' in line]
    assert "ce" in records[-1]["terms"]
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["input"]["channels"] == 3 and ckpt["spec"]["in_channels"] == 3
    assert ckpt["spec"]["head"] == {**ckpt["spec"]["head"], "name": "attention"}
    assert ckpt["spec"]["head"]["args"]["max_length"] == 4
    res = cli("evaluate", out / "best.pt", rgb_words, "-q", "--beam-width", "2",
              "--protocol", "lower-alnum")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["protocol"] == "lower-alnum" and result["samples"] == len(WORDS) * 2
    assert result["exact"]["samples"] == len(WORDS) * 2
    image = rgb_words / "w0.png"
    res = cli("infer", "-m", out / "best.pt", image, "--beam-width", "3")
    assert res.exit_code == 0 and json.loads(res.stdout)["path"] == str(image)
    assert "greedily" not in res.stderr  # beam search is real for this head
    pytest.importorskip("onnxruntime")
    res = cli("export", out / "best.pt", "-o", out / "m.onnx", "--verify", "--samples",
              rgb_words)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["verify"]["texts_match"] is True
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "m.onnx"))
    for batch, width in ((1, 40), (3, 200)):  # any batch and width; every step is in the graph
        got = session.run(None, {"image": np.zeros((batch, 3, 32, width), np.float32)})[0]
        assert got.shape == (batch, 5, ckpt["state_dict"]["classifier.fc.weight"].shape[0])
    meta = session.get_modelmeta().custom_metadata_map
    assert "[batch, 5, classes]" in meta["output"] and "first class 0" in meta["decode"]


def test_onnx_parity_of_a_gru_decoder(tmp_path):
    pytest.importorskip("onnxruntime")
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.export import export_onnx, verify_onnx

    model = _model(channels=3, cell="gru")
    save_checkpoint(str(tmp_path / "m.pt"), {
        "spec": model.spec, "charset": list("abcde"), "state_dict": model.state_dict(),
        "input": {"height": 32, "width": 64, "policy": "keep-ratio", "channels": 3,
                  "mean": 0.5, "std": 0.5, "rows": 1}})
    export_onnx(str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20 + 5 * i, 30 + 40 * i, 3), np.uint8))
              for i in range(4)]
    check = verify_onnx(str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"), images)
    assert check["texts_match"] and check["max_abs_diff"] < 1e-4


def test_max_length_is_the_heads_and_is_refused_where_it_means_nothing(rgb_words, tmp_path,
                                                                      cli):
    from tests.conftest import one_line_error

    base = ["train", "--train", rgb_words, "--channels", "3", "--max-steps", "1", *TINY]
    res = cli(*base, "-o", tmp_path / "a", "--max-length", "5")
    one_line_error(res, 2, "--max-length", "CTC")
    res = cli(*base, "-o", tmp_path / "b", "--head", "attention", "--max-length", "5",
              "--head-arg", "max_length=6")
    one_line_error(res, 2, "contradicts")
    res = cli(*base, "-o", tmp_path / "c", "--head", "attention", "--max-length", "2")
    one_line_error(res, 2, "max_length=3")  # "abc" has 3 characters
    assert not any((tmp_path / d).exists() for d in "abc")


# ------------------------------------------------------------------------- distillation
def _pair(same: bool, mode: str = "paper"):
    from ocrkit.methods.distill import DistillNet, KDConfig

    student, teacher = _model(), _model()
    if not same:
        torch.manual_seed(1)
        for p in teacher.parameters():
            torch.nn.init.normal_(p, std=0.3)
    cfg = KDConfig(mode=mode, lambda_hint=0.0, lambda_lstm=0.0 if not same else 0.2,
                   temperature=2.0)
    return DistillNet(student, teacher, cfg), student, teacher


def _batch():
    lengths = torch.tensor([3, 1, 2])
    return {"targets": torch.tensor([1, 2, 3, 4, 5, 1]), "target_lengths": lengths,
            "widths": torch.tensor([64, 40, 64])}, torch.rand(3, 1, 32, 64)


@pytest.mark.parametrize("mode", ["paper", "dml"])
def test_distilling_an_attention_model_into_itself_costs_nothing(mode):
    net, _, _ = _pair(same=True, mode=mode)
    batch, images = _batch()
    with torch.no_grad():
        terms = net.eval()(images, batch)
    kd = {"paper": {"soft", "lstm"}, "dml": {"dml"}}[mode]
    labels = {"paper": {"ce"}, "dml": {"ce", "teacher_ce"}}[mode]
    assert set(terms) == kd | labels
    assert all(abs(float(terms[k])) < 1e-6 for k in kd), terms


def test_the_step_kl_reads_the_teachers_logits_teacher_forced_on_the_same_prefix():
    from ocrkit.methods.kd_losses import soft_kl

    net, student, teacher = _pair(same=False)
    batch, images = _batch()
    net.eval()
    with torch.no_grad():
        terms = net(images, batch)
        targets = student.head.targets(batch["targets"], batch["target_lengths"])
        s, t = student(images, targets=targets), teacher(images, targets=targets)
    mask = targets != IGNORE
    assert float(terms["soft"]) > 1e-3  # a teacher swapped for the student would give 0
    assert float(terms["soft"]) == pytest.approx(float(soft_kl(s, t, 2.0, mask=mask)), rel=1e-4)
    # padding steps are not in it: with every step counted the value differs
    assert float(soft_kl(s, t, 2.0)) != pytest.approx(float(terms["soft"]), rel=1e-3)
    assert float(terms["ce"]) == pytest.approx(float(student.head.loss(s, targets)), rel=1e-5)


@pytest.fixture(scope="module")
def attention_teacher(rgb_words, tmp_path_factory):
    from click.testing import CliRunner

    from ocrkit.cli import cli

    out = tmp_path_factory.mktemp("teacher") / "t"
    res = CliRunner().invoke(cli, [str(a) for a in (
        "train", "--train", rgb_words, "-o", out, "--head", "attention", "--channels", "3",
        "--max-steps", "2", *TINY)])
    assert res.exit_code == 0, res.output
    return out / "best.pt"


def test_distill_cli_between_attention_recognizers(rgb_words, attention_teacher, tmp_path,
                                                   cli):
    from tests.conftest import one_line_error

    common = ["distill", "--teacher", attention_teacher, "--train", rgb_words, "--max-steps",
              "2", "-b", "8", "-w", "0", "-q", "--no-augment", "--lambda-lstm", "0"]
    res = cli(*common, "-o", tmp_path / "d")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in open(tmp_path / "d" / "metrics.jsonl")
               if '"terms"' in line]
    assert {"ce", "soft"} <= set(records[-1]["terms"]) and "ctc" not in records[-1]["terms"]
    ckpt = torch.load(tmp_path / "d" / "best.pt", weights_only=True)
    assert ckpt["spec"]["head"]["name"] == "attention"
    res = cli(*common, "-o", tmp_path / "e", "--kd-mode", "ctc-mean-kl")
    one_line_error(res, 2, "ctc-mean-kl", "decoding step")
    res = cli(*common, "-o", tmp_path / "f", "--student-preset", "none", "--head", "ctc")
    one_line_error(res, 2, "same kind of head")
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()
