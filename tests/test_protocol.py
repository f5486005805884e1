"""`ocrkit evaluate --protocol`: exact scoring (today's) and the English scene-text
benchmarks' lower-alnum scoring, on hand-made cases and through the CLI on a gt.txt
folder of photo-like crops of any size and aspect."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ocrkit.metrics import evaluate_strings, normalize


@pytest.mark.parametrize("label,read,exact,lower_alnum", [
    ("I'M", "im", False, True),
    ("Ha-ha!", "haha", False, True),
    ("e", "é", False, False),  # an accent is a different letter, and no a-z letter at all
    ("Café", "CAFE", False, False),  # "caf" against "cafe": é is removed, not folded
    ("Café", "caf", False, True),  # ... on both sides (DTRB's test.py)
    ("$4.99", "499", False, True),
    ("New York", "newyork", False, True),  # spaces go too
    ("Straße", "strasse", False, False),
    ("OK", "OK", True, True),
])
def test_hand_made_cases(label, read, exact, lower_alnum):
    assert (evaluate_strings([read], [label])["accuracy"] == 1.0) is exact
    assert (evaluate_strings([read], [label], "lower-alnum")["accuracy"] == 1.0) is lower_alnum


def test_lower_alnum_keeps_rows_and_scores_every_metric_on_the_normalised_strings():
    assert normalize("Ha-ha!\nI'M 24/7", "lower-alnum") == "haha\nim247"
    assert normalize("Ha-ha!", "exact") == "Ha-ha!"
    got = evaluate_strings(["HELLO world", "ab"], ["Hello, World!", "a-c"], "lower-alnum")
    assert got["accuracy"] == 0.5 and got["cer"] == pytest.approx(1 / 12)  # "helloworld", "ac"
    with pytest.raises(ValueError, match="lower-alnum"):
        normalize("x", "lower")


# ------------------------------------------------------------------------- the CLI
LABELS = ["I'M", "Ha-ha!", "e", "Café", "!!", "24/7", ""]
READS = ["im", "haha", "é", "cafe", "", "247", ""]
SIZES = [(10, 200), (600, 12), (1, 1), (57, 33), (300, 90), (33, 400), (40, 40)]  # any aspect


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Noise 'photos' of odd sizes (tall, wide, 1x1) with a gt.txt, and a tiny RGB
    attention recognizer to read them."""
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.models.recognizer import Recognizer, make_spec

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    lines = []
    for i, ((w, h), label) in enumerate(zip(SIZES, LABELS)):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(folder / f"p{i}.png")
        lines.append(f"p{i}.png\t{label}")
    (folder / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    spec = make_spec("vgg-small", "cap", "bilstm", "linear", "attention",
                     backbone_args={"channels": (8, 8, 16, 16)},
                     sequence_args={"hidden": 8, "layers": 1},
                     head_args={"hidden": 16, "embed_dim": 8, "max_length": 6}, in_channels=3)
    chars = list("0123456789abcdefghijklmnopqrstuvwxyz")
    model = Recognizer(spec, len(chars) + 1, input_size=(32, 64))
    save_checkpoint(str(folder / "m.pt"), {
        "spec": model.spec, "charset": chars, "state_dict": model.state_dict(),
        "input": {"height": 32, "width": 64, "policy": "keep-ratio", "channels": 3,
                  "mean": 0.5, "std": 0.5, "rows": 1}})
    return folder


def _reading(monkeypatch, reads):
    """The model reads ``reads``, in the dataset's order."""
    queue = iter(reads)

    def fake(model, images, charset, beam_width=None):
        texts = [next(queue) for _ in range(images.shape[0])]
        return texts, [0.9] * len(texts), [[t] for t in texts]

    monkeypatch.setattr("ocrkit.evaluate.predict_texts", fake)


def test_evaluate_reports_the_protocol_with_exact_scores_beside_it(photos, cli, monkeypatch):
    _reading(monkeypatch, READS)
    res = cli("evaluate", photos / "m.pt", photos, "--protocol", "lower-alnum", "-w", "0")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["protocol"] == "lower-alnum" and out["samples"] == 7
    # right: I'M, Ha-ha!, "!!" (emptied, against empty), 24/7, "" (empty label and
    # reading); wrong: é, Café
    assert out["accuracy"] == pytest.approx(5 / 7)
    assert out["exact"]["accuracy"] == pytest.approx(1 / 7) and out["exact"]["samples"] == 7
    assert out["labels_emptied"] == 1  # "!!"; the empty label was empty already
    assert re.search(r"accuracy|ilp", res.stderr) and "lower-alnum" in res.stderr  # the table


def test_exact_is_the_default_and_unchanged(photos, cli, monkeypatch):
    _reading(monkeypatch, LABELS[:3] + READS[3:])
    res = cli("evaluate", photos / "m.pt", photos, "-w", "0", "-q")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["protocol"] == "exact" and out["accuracy"] == pytest.approx(4 / 7)
    assert "exact" not in out and "labels_emptied" not in out


def test_characters_the_model_cannot_output_are_warned_about_per_protocol(photos, cli,
                                                                         monkeypatch):
    _reading(monkeypatch, READS)
    res = cli("evaluate", photos / "m.pt", photos, "-w", "0")
    assert "cannot output" in res.stderr  # exact: I ' M H - ! é C ... are not in 0-9 a-z
    _reading(monkeypatch, READS)
    res = cli("evaluate", photos / "m.pt", photos, "-w", "0", "--protocol", "lower-alnum")
    assert "cannot output" not in res.stderr  # lowered and stripped, all are in its charset


@pytest.mark.parametrize("batch", ["1", "7"])
def test_photos_of_any_size_and_aspect_are_read(photos, cli, tmp_path, batch):
    """A real model on tall, wide and 1x1 crops, alone in a batch or together."""
    gallery = tmp_path / "worst.html"
    res = cli("evaluate", photos / "m.pt", photos, "-b", batch, "-w", "0", "-q",
              "--protocol", "lower-alnum", "--errors", "3", "--errors-out", gallery)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["samples"] == 7 and out["broken_samples"] == 0
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", gallery.read_text())
    assert pngs and all(Image.open(io.BytesIO(base64.b64decode(p))).mode == "RGB"
                        for p in pngs)  # the gallery shows what an RGB model saw
