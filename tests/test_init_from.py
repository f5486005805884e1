"""``train --init-from MODEL.pt``: fine-tuning a trained recognizer on new data. The
run starts from the model's weights with its architecture, input and charset, and
refuses in one line what would contradict them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ocrkit.checkpoint import load_checkpoint, save_checkpoint
from ocrkit.errors import UsageError
from ocrkit.train.run import load_init_model
from conftest import one_line_error
from test_seqclr import write_folder  # digit strings, labelled

MODEL = ["--backbone-arg", "channels=(8,16,16,32)", "--sequence-arg", "hidden=16",
         "--sequence-arg", "layers=1", "--height", "32", "--width", "64"]
LOOP = ["-b", 4, "-w", 0, "--no-augment", "-q"]
ENCODER = ("backbone.", "neck.", "sequence.")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A trained recognizer (digits) and a second data set to fine-tune it on."""
    from click.testing import CliRunner

    from ocrkit.cli import cli

    root = tmp_path_factory.mktemp("init-from")
    write_folder(root / "a", 24, 1)
    write_folder(root / "b", 16, 2)
    with open(root / "b" / "gt.txt", "a", encoding="utf-8") as fh:  # 'x': not in A's charset
        for i in range(3):
            shutil.copy(root / "b" / f"{i:03d}.png", root / "b" / f"x{i}.png")
            fh.write(f"x{i}.png\t{i}x{i}\n")
    res = CliRunner().invoke(cli, ["train", "--train", str(root / "a"), "-o", str(root / "A"),
                                   *MODEL, "--max-steps", "4", *map(str, LOOP)])
    assert res.exit_code == 0, res.output
    return root


def weights(path) -> dict:
    return {k: v for k, v in load_checkpoint(str(path))["state_dict"].items()
            if v.is_floating_point() and "running_" not in k}


def test_fine_tuning_starts_from_the_models_weights_and_keeps_its_charset(base, cli, tmp_path):
    a = load_checkpoint(str(base / "A" / "best.pt"))
    out = tmp_path / "B"
    args = ["train", "--train", base / "b", "-o", out, "--init-from", base / "A" / "best.pt",
            "--max-steps", 1, "--lr", "1e-3", "--warmup", 0, "--seed", 1, *LOOP[:-1]]
    # labels with characters the model cannot write: the usual policy, naming the charset
    one_line_error(cli(*args), 2, "the charset of --init-from", "--unknown skip")
    res = cli(*args, "--unknown", "skip")
    assert res.exit_code == 0, res.stderr
    assert "warning: --unknown skip" in res.stderr and "the charset of --init-from" in res.stderr
    assert "weights from" in res.stderr
    b = load_checkpoint(str(out / "last.pt"))
    assert b["charset"] == a["charset"] and "x" not in b["charset"]
    assert b["spec"] == a["spec"] and b["input"] == a["input"]
    assert b["init_from"]["source"] == str(base / "A" / "best.pt")
    assert b["init_from"]["steps"] == 4 and b["init_from"]["frozen"] is False
    # one Adam step of lr 1e-3 moves each weight by about 1e-3: every tensor is A's, moved
    before, after = weights(base / "A" / "best.pt"), weights(out / "last.pt")
    assert before.keys() == after.keys()
    moved = {k: float((after[k] - before[k]).abs().max()) for k in before}
    assert max(moved.values()) < 3e-3, moved
    assert any(m > 0 for m in moved.values())
    config = json.loads((out / "config.json").read_text())["options"]
    assert config["init_from"] == str(base / "A" / "best.pt") and "backbone" not in config
    # --resume continues the fine-tuning run, its model from the same file
    res = cli("train", "-o", out, "--resume", "--max-steps", 2, "-q")
    assert res.exit_code == 0, res.stderr
    assert load_checkpoint(str(out / "last.pt"))["meta"]["step"] == 2


def test_init_from_with_freeze_encoder_trains_only_classifier_and_head(base, cli, tmp_path):
    out = tmp_path / "probe"
    res = cli("train", "--train", base / "b", "-o", out, "--init-from", base / "A" / "best.pt",
              "--freeze-encoder", "--unknown", "skip", "--max-steps", 2, "--lr", "1e-2", *LOOP)
    assert res.exit_code == 0, res.stderr
    a = load_checkpoint(str(base / "A" / "best.pt"))["state_dict"]
    b = load_checkpoint(str(out / "last.pt"))["state_dict"]
    encoder = [k for k in a if k.startswith(ENCODER)]
    assert encoder and all(torch.equal(a[k], b[k]) for k in encoder)  # BatchNorm stats too
    assert any("running_var" in k for k in encoder)
    assert not torch.equal(a["classifier.fc.weight"], b["classifier.fc.weight"])


def test_what_contradicts_the_model_is_refused_in_one_line(base, cli, tmp_path):
    model = base / "A" / "best.pt"
    common = ["train", "--train", base / "b", "--max-steps", 1, *LOOP]
    res = cli(*common, "-o", tmp_path / "c1", "--init-from", model, "--backbone", "vgg-small",
              "--height", 48)
    one_line_error(res, 2, "--init-from", "leave out", "--backbone", "--height")
    (tmp_path / "chars.txt").write_text("0\n1\n", encoding="utf-8")
    res = cli(*common, "-o", tmp_path / "c2", "--init-from", model, "--charset",
              tmp_path / "chars.txt")
    one_line_error(res, 2, "leave out --charset")
    res = cli(*common, "-o", tmp_path / "c3", "--freeze-encoder")
    one_line_error(res, 2, "--freeze-encoder", "--init-encoder", "--init-from")
    for name in ("c1", "c2", "c3"):
        assert not (tmp_path / name).exists()


def test_what_cannot_train_is_named(base, tmp_path):
    ckpt = load_checkpoint(str(base / "A" / "best.pt"))
    encoder = {**ckpt, "kind": "encoder"}
    save_checkpoint(str(tmp_path / "enc.pt"), encoder)
    with pytest.raises(UsageError, match="--init-from .* encoder checkpoint, expected a "
                                         "recognizer .*--init-encoder"):
        load_init_model(str(tmp_path / "enc.pt"))
    # EMU's deployed classifier (bit-packed codes) cannot train; its last.pt's network can
    spec = json.loads(json.dumps(ckpt["spec"]))
    spec["classifier"] = {"name": "multihot", "args": {"packed": True, "bits": 8}}
    save_checkpoint(str(tmp_path / "packed.pt"), {**ckpt, "spec": spec})
    with pytest.raises(UsageError, match="deployable form .* last.pt"):
        load_init_model(str(tmp_path / "packed.pt"))
    net = {k: v + 1 for k, v in ckpt["state_dict"].items() if v.is_floating_point()}
    save_checkpoint(str(tmp_path / "last.pt"), {
        **ckpt, "spec": spec, "train_state": {"net": net, "identity": {"spec": ckpt["spec"]}}})
    init = load_init_model(str(tmp_path / "last.pt"))
    assert init["spec"] == ckpt["spec"] and init["state_dict"] is not None
    assert all(torch.equal(init["state_dict"][k], net[k]) for k in net)


def test_an_attention_model_fine_tunes_with_its_head_and_length(base, cli, tmp_path):
    a = tmp_path / "attn"
    res = cli("train", "--train", base / "a", "-o", a, *MODEL, "--head", "attention",
              "--max-length", 8, "--max-steps", 2, *LOOP)
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "attn-ft"
    res = cli("train", "--train", base / "a", "-o", out, "--init-from", a / "best.pt",
              "--max-steps", 1, "--seed", 3, *LOOP)
    assert res.exit_code == 0, res.stderr
    before, after = load_checkpoint(str(a / "best.pt")), load_checkpoint(str(out / "best.pt"))
    assert after["spec"]["head"] == before["spec"]["head"]
    assert after["spec"]["head"]["args"]["max_length"] == 8
    moved = [float((after["state_dict"][k] - v).abs().max())
             for k, v in weights(a / "best.pt").items()]
    assert 0 < max(moved) < 3e-3


def test_a_colour_model_fine_tunes_on_colour_images(base, cli, tmp_path):
    """The fine-tuning run reads its data as the model does (RGB here, not grey): its
    validation during training and `evaluate` of its best.pt agree."""
    import numpy as np
    from PIL import Image

    colour = tmp_path / "colour"
    colour.mkdir()
    for src in (base / "a").iterdir():
        if src.suffix == ".png":
            grey = np.asarray(Image.open(src).convert("L"), dtype=np.float32) / 255
            rgb = np.stack([grey, 1 - 0.6 * grey, 0.3 + 0.2 * grey], -1)
            Image.fromarray((255 * rgb).astype(np.uint8)).save(colour / src.name)
        else:
            shutil.copy(src, colour / src.name)
    a = tmp_path / "rgb"
    res = cli("train", "--train", colour, "-o", a, *MODEL, "--channels", 3, "--max-steps", 3,
              *LOOP)
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "rgb-ft"
    res = cli("train", "--train", colour, "--val", colour, "-o", out, "--init-from",
              a / "best.pt", "--max-steps", 2, "--val-every", 2, *LOOP)
    assert res.exit_code == 0, res.stderr
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    during = [r["val"] for r in records if "val" in r][-1]
    res = cli("evaluate", out / "best.pt", colour, "-q")
    assert res.exit_code == 0, res.stderr
    after = json.loads(res.stdout)
    assert during["confidence"]["mean_confidence"] == pytest.approx(
        after["confidence"]["mean_confidence"], abs=1e-5)
