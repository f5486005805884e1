"""Light-Former (Li et al. 2022, §III-C): the decoder's faithful properties, the head
contract (the head calls the classifier; teacher forcing; per-position loss), RGB
input and the CLI chain train / train-emu / evaluate / infer / export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ocrkit.models.heads.lightformer import IGNORE, LightFormerHead
from ocrkit.models.recognizer import Recognizer, make_spec


def _head(**kw) -> LightFormerHead:
    torch.manual_seed(0)
    args = {"in_channels": 32, "num_classes": 20, "d_model": 32, "heads": 4, "max_length": 8}
    args.update(kw)
    return LightFormerHead(**args)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_does_not_depend_on_the_number_of_units_and_there_is_no_ffn():
    sizes = {layers: _count(_head(layers=layers)) for layers in (1, 3, 6)}
    assert len(set(sizes.values())) == 1
    head = _head()
    assert all(unit.ffn is None and unit.norm3 is None for unit in head.units)
    assert not [n for n, m in head.named_modules() if isinstance(m, torch.nn.Linear)
                and 32 not in (m.in_features, m.out_features)]
    # Table IV's baseline: unshared units with feed-forward blocks grow with the units
    unit = _count(head.units[0])
    assert _count(_head(share=False, layers=3)) - _count(_head(share=False, layers=1)) == 2 * unit
    big = _count(_head(share=False, layers=3, ffn=128))
    assert big - _count(_head(share=False, layers=3)) == 3 * (32 * 128 + 128 + 128 * 32 + 32 + 64)


def _model(classifier="linear", **head_args) -> Recognizer:
    torch.manual_seed(0)
    spec = make_spec("vgg-small", "tokens", None, classifier, "lightformer",
                     backbone_args={"channels": (8, 8, 16, 32)},
                     classifier_args={"bits": 16} if classifier == "multihot" else {},
                     head_args={"d_model": 32, "heads": 4, "max_length": 6, "dropout": 0.0,
                                **head_args})
    return Recognizer(spec, 12, input_size=(32, 64))


def test_targets_append_the_end_symbol_and_pad_with_ignore():
    head = _head()
    t = head.targets(torch.tensor([3, 4, 5, 7]), torch.tensor([3, 1]))
    assert t.tolist() == [[3, 4, 5, 0], [7, 0, IGNORE, IGNORE]]


@pytest.mark.parametrize("classifier", ["linear", "multihot"])
def test_teacher_forcing_is_causal_and_greedy_decoding_reproduces_it(classifier):
    model = _model(classifier).eval()
    images = torch.rand(2, 1, 32, 64)
    targets = torch.tensor([[3, 4, 5, 0], [7, 0, IGNORE, IGNORE]])
    with torch.no_grad():
        logits = model(images, targets=targets)
        assert logits.shape == (2, 4, 12)
        changed = targets.clone()
        changed[0, 2] = 9  # a later token changes nothing before it
        again = model(images, targets=changed)
        assert torch.allclose(logits[:, :3], again[:, :3], atol=1e-5)
        assert not torch.allclose(logits[0, 3], again[0, 3])
        greedy = model(images)  # decoding feeds back its own argmax
        ids = greedy.argmax(-1)
        forced = model(images, targets=torch.cat([ids, ids[:, :1]], 1)[:, :greedy.shape[1]])
    assert 1 <= greedy.shape[1] <= 7
    assert torch.allclose(forced, greedy, atol=1e-4)


def test_outputs_carry_the_decoders_glimpses_and_attention():
    model = _model().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 64), outputs=True,
                    targets=torch.tensor([[1, 2, 0], [3, 0, IGNORE]]))
    tokens = out.visual.shape[1]  # 2 x 4 cells of the 32 x 64 map
    assert out.extras["glimpses"].shape == (2, 3, 32)
    assert out.extras["attention"].shape == (2, 3, tokens)
    assert torch.allclose(out.extras["attention"].sum(-1), torch.ones(2, 3), atol=1e-5)


def test_per_position_emu_regulariser_counts_only_real_positions():
    model = _model("multihot").train()
    targets = torch.tensor([[3, 4, 0], [7, 0, IGNORE]])
    logits = model(torch.rand(2, 1, 32, 64), targets=targets)
    per = model.head.loss(logits, targets, reduction="none")
    assert per.shape == (2, 3) and float(per[1, 2].detach()) == 0.0
    mask = targets != IGNORE
    clf = model.classifier
    beta = clf._beta.detach().reshape(2, 3)
    aux = clf.aux_loss(torch.full((2, 3), 1e-6), mask)  # every real position below beta_hat
    assert torch.isclose(aux["emu_reg"].detach(), -clf.lam * beta[mask].sum() / mask.sum())
    assert torch.isclose(aux["beta"], beta[mask].mean())


def test_resize_pad_and_augmentation_keep_colour():
    from ocrkit.data.augment import Augment
    from ocrkit.data.transforms import ResizePad

    im = Image.new("RGB", (60, 20), (250, 240, 230))
    im.paste((200, 20, 20), (10, 5, 30, 15))
    arr, width = ResizePad(32, 128, channels=3)(im)
    assert arr.shape == (3, 32, 128) and width == 96
    assert arr[0, 16, 30] > 0.7 and arr[1, 16, 30] < 0.2  # red stays red
    assert np.allclose(arr[:, :, 100], arr[:, :1, 100])  # padded with the paper colour
    out = Augment(p=1.0)(im, np.random.default_rng(0))
    assert out.mode == "RGB"
    grey = Augment(p=1.0)(im.convert("L"), np.random.default_rng(0))
    assert out.size == grey.size  # one geometry for every channel, the same as grey


# ------------------------------------------------------------------------- CLI
def _synth(folder, cjk_font, *args):
    from click.testing import CliRunner

    from ocrkit.cli import cli

    res = CliRunner().invoke(cli, ["synth", "--rows", "1", *args, "--font", cjk_font,
                                   "--out", str(folder), "-w", "1", "-q"])
    assert res.exit_code == 0, res.output
    return folder


@pytest.mark.parametrize("classifier", ["linear", "multihot"])
def test_auxiliary_ctc_classifies_the_image_tokens_and_adds_nothing_else(classifier):
    plain, joint = _model(classifier), _model(classifier, ctc_weight=0.5)
    assert _count(plain) == _count(joint)
    joint.load_state_dict(plain.state_dict())
    images = torch.rand(2, 1, 32, 64)
    targets = torch.tensor([[3, 4, 0], [7, 0, IGNORE]])
    joint.train()
    out = joint(images, outputs=True, targets=targets)
    h, w = out.extras["feature_size"]
    assert out.visual.shape[1] == h * w and h > 1
    tokens = w  # the tokens neck's cells, averaged per column
    assert out.extras["ctc_logits"].shape == (2, w, 12)
    memory = joint.head.memory_proj(out.visual)
    assert torch.allclose(joint.head._columns(memory, out.extras)[:, 1],
                          memory[:, h:2 * h].mean(1), atol=1e-6)
    if classifier == "multihot":  # the decoder's call is the one EMU's regulariser reads
        assert joint.classifier._beta.shape[:2] == (2, 3)
    flat, lengths = torch.tensor([3, 4, 7]), torch.tensor([2, 1])
    expected = torch.nn.CTCLoss(blank=0, zero_infinity=True)(
        out.extras["ctc_logits"].log_softmax(-1).transpose(0, 1), flat,
        torch.full((2,), tokens), lengths)
    assert torch.isclose(joint.head.ctc_loss(out.extras["ctc_logits"], flat, lengths), expected)
    joint.load_state_dict(plain.state_dict())  # the training forward moved BatchNorm's stats
    plain.eval(), joint.eval()
    with torch.no_grad():  # inference is the decoder's alone
        assert torch.equal(plain(images), joint(images))
    with pytest.raises(ValueError, match="ctc_weight=-1: at least 0"):
        _head(ctc_weight=-1)


def test_auxiliary_ctc_is_a_logged_term_of_the_training_loss(lf_data, tmp_path, cli):
    out = tmp_path / "run"
    res = cli("train", "--train", lf_data, "-o", out, "--head", "lightformer", "--neck",
              "tokens", "--sequence", "none", *SMALL, "--head-arg", "ctc_weight=0.25")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in open(out / "metrics.jsonl") if '"terms"' in line]
    terms = records[-1]["terms"]
    assert terms["aux_ctc"] > 0
    assert records[-1]["loss"] == pytest.approx(terms["ce"] + 0.25 * terms["aux_ctc"], rel=1e-4)
    assert json.load(open(out / "config.json"))["spec"]["head"]["args"]["ctc_weight"] == 0.25


@pytest.fixture(scope="module")
def lf_data(tmp_path_factory, cjk_font):
    return _synth(tmp_path_factory.mktemp("lf") / "s1", cjk_font, "--cols", "5", "-n", "24",
                  "--seed", "4")


SMALL = ["--max-steps", "4", "--val-every", "2", "-b", "8", "-w", "0", "-q", "--no-augment",
         "--backbone", "vgg-small", "--backbone-arg", "channels=(8,8,16,32)",
         "--head-arg", "d_model=32", "--head-arg", "heads=4", "--head-arg", "max_length=8",
         "--height", "32", "--width", "96"]


@pytest.mark.parametrize("command,embed_map", [("train", None), ("train-emu", "proj"),
                                               ("train-emu", "linear")])
def test_lightformer_trains_evaluates_infers_and_exports(lf_data, tmp_path, cli, command,
                                                         embed_map):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "run"
    extra = ["--bits", "16", "--channels", "3", "--embed-map", embed_map] \
        if command == "train-emu" else ["--neck", "tokens", "--sequence", "none"]
    res = cli(command, "--train", lf_data, "--val", lf_data, "-o", out, "--head", "lightformer",
              *SMALL, *extra)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in open(out / "metrics.jsonl") if '"terms"' in line]
    assert "ce" in records[-1]["terms"]
    cfg = json.load(open(out / "config.json"))
    assert cfg["spec"]["neck"]["name"] == "tokens" and cfg["spec"]["head"]["name"] == "lightformer"
    res = cli("evaluate", out / "best.pt", lf_data, "-q")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["clp"] == pytest.approx(
        summary["best_metric"])
    image = sorted((lf_data / "images").rglob("*.png"))[0]
    res = cli("infer", "-m", out / "best.pt", image)
    assert res.exit_code == 0 and json.loads(res.stdout)["path"] == str(image)
    res = cli("export", out / "best.pt", "-o", out / "m.onnx", "--verify")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["verify"]["texts_match"] is True
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "m.onnx"))
    channels = 3 if command == "train-emu" else 1
    for batch, width in ((1, 40), (3, 200)):  # any batch and line width
        got = session.run(None, {"image": np.zeros((batch, channels, 32, width), np.float32)})[0]
        assert got.shape[:2] == (batch, 9)
    meta = session.get_modelmeta().custom_metadata_map
    assert "first class 0" in meta["decode"]
    res = cli("info", out / "best.pt", "-q")
    info = json.loads(res.stdout)
    assert set(info["parts"]) == {"backbone", "head", "classifier"}
    if command == "train":  # softmax: r*N*d weights and N biases
        soft = info["softmax"]
        assert soft["d"] == 32 and soft["formula_bytes"] == 4 * soft["N"] * 32
        assert soft["classifier_bytes"] == soft["formula_bytes"] + 4 * soft["N"]
    else:  # the formula, plus a K x d embedding map of its own when asked for
        emu = info["emu"]
        assert emu["embed_map_bytes"] == (4 * 16 * 32 if embed_map == "linear" else 0)
        assert emu["classifier_bytes"] == emu["formula_bytes"] + emu["embed_map_bytes"]


def test_labels_longer_than_the_decoder_reads_are_refused_before_training(lf_data, tmp_path,
                                                                         cli):
    from tests.conftest import one_line_error

    args = [a if a != "max_length=8" else "max_length=3" for a in SMALL]
    res = cli("train", "--train", lf_data, "-o", tmp_path / "r", "--head", "lightformer",
              "--neck", "tokens", "--sequence", "none", *args)
    one_line_error(res, 2, "max_length=")
    assert not (tmp_path / "r").exists()


def test_distill_dml_between_lightformer_peers(lf_data, tmp_path, cli):
    """Two autoregressive peers learn from each other: both decoders teacher-forced on
    the same targets, the KL per decoding step (a CTC/autoregressive pair is refused:
    tests/test_attention.py)."""
    import json

    res = cli("distill", "--kd-mode", "dml", "--student-preset", "none", "--train", lf_data,
              "-o", tmp_path / "d", "--head", "lightformer", "--neck", "tokens", "--sequence",
              "none", "--max-steps", "2", "-q", "-w", "0")
    assert res.exit_code == 0, res.output
    with open(tmp_path / "d" / "metrics.jsonl", encoding="utf-8") as fh:
        terms = [json.loads(line) for line in fh if '"terms"' in line][-1]["terms"]
    assert {"ce", "teacher_ce", "dml"} <= set(terms)


@pytest.fixture(scope="module")
def read_data(tmp_path_factory, cjk_font):
    return _synth(tmp_path_factory.mktemp("lf-read") / "c20", cjk_font, "--cols", "4",
                  "--charset-size", "20", "-n", "300", "--test-fraction", "0.2", "--seed", "3")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "train-emu"])
def test_lightformer_learns_to_read_held_out_lines(read_data, tmp_path, cli, command):
    """The decoder reads, not just runs: 300 steps on 240 lines of a 20-character set
    read held-out lines far above what a language model of the labels alone gets (the
    decoder's first validation, before it attends to the image, is at about 0.2)."""
    extra = ["--bits", "64"] if command == "train-emu" else []
    res = cli(command, "--train", read_data / "train", "--val", read_data / "test", "-o",
              tmp_path / "run", "--head", "lightformer", "--neck", "tokens", "--sequence", "none",
              "--backbone", "vgg-small", "--backbone-arg", "channels=(16,32,48,64)",
              "--head-arg", "d_model=64", "--head-arg", "heads=4", "--head-arg", "max_length=8",
              "--height", "32", "--width", "128", "--channels", "1", "--max-steps", "300",
              "--val-every", "300", "-b", "16", "-w", "0", "--no-augment", "-q", *extra)
    assert res.exit_code == 0, res.output
    val = json.loads(res.stdout.strip().splitlines()[-1])["last_val"]
    assert val["samples"] == 60
    assert val["one_minus_ned"] >= 0.4, val
