"""What other tools need from ocrkit's files: ONNX a third party decodes from its
metadata alone, RapidOCR running an export unchanged, runs replayed from their
config.json, plugins named in checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ocrkit.checkpoint import load_checkpoint

TINY = ["--backbone-arg", "channels=(8,16,16,32)", "--sequence-arg", "hidden=16",
        "--sequence-arg", "layers=1", "--height", "32", "--width", "160", "-b", "8", "-w", "0",
        "-q"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, cjk_font):
    """Lines of 3 to 12 characters and a recognizer trained on them for a few steps."""
    from ocrkit.cli import cli

    root = tmp_path_factory.mktemp("interop")
    invoke = CliRunner().invoke
    for args in (["synth", "-n", 40, "--seed", 1, "--min-cols", 3, "--cols", 12,
                  "--charset-size", 12, "--font", cjk_font, "--out", root / "lines", "-w", 1,
                  "-q"],
                 ["train", "--train", root / "lines", "-o", root / "run", "--max-steps", 12,
                  *TINY]):
        res = invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    return root


def cropped_lines(folder, out, count: int = 20) -> list:
    """Synth lines cut to their text (plus a margin), as a detector would: widths vary."""
    out.mkdir(exist_ok=True)
    paths = []
    for p in sorted(folder.glob("*.png"))[:count]:
        im = Image.open(p).convert("L")
        ink = np.argwhere(np.asarray(im) < 128)
        x1 = int(ink[:, 1].max()) + 4 if len(ink) else im.width
        target = out / p.name
        im.crop((0, 0, min(im.width, x1), im.height)).save(target)
        paths.append(target)
    return paths


def hand_decode(onnx_path: str, image: Image.Image) -> str:
    """Read one line the way the file's metadata says, with nothing from ocrkit."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["blank_index"] == "0" and meta["output"].startswith("logits")
    chars = meta["character"].split("\n")
    height = int(meta["input"].split(",")[2])  # "image [batch, 1, 32, width], any width"
    grey = image.convert("L")  # "Pillow's convert('L')"
    width = round(grey.width * height / grey.height)  # "width = round(w * H / h)"
    arr = np.asarray(grey.resize((width, height), Image.Resampling.BILINEAR), np.float32)
    mean, std = (float(v) for v in meta["scale"].split("- ")[1].rstrip(")").split(") / "))
    x = ((arr / 255 - mean) / std)[None, None]
    logits = session.run(None, {"image": x})[0][0]  # [frames, classes]
    best = logits.argmax(-1)
    out, prev = [], 0
    for k in best:  # "argmax per frame, merge repeats, drop class 0"
        if k != prev and k != 0:
            out.append(chars[k - 1])
        prev = k
    return "".join(out)


def test_onnx_metadata_alone_decodes_like_ocrkit_infer(cli, run, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert cli("export", run / "run/best.pt", "-o", onnx_path).exit_code == 0
    images = cropped_lines(run / "lines/images/0000", tmp_path / "crops")
    widths = {Image.open(p).width for p in images}
    assert len(widths) > 5  # lines of varied widths
    res = cli("infer", "-m", run / "run/best.pt", "-b", 1, *images)
    assert res.exit_code == 0
    ours = [json.loads(line)["text"] for line in res.stdout.splitlines()]
    theirs = [hand_decode(str(onnx_path), Image.open(p)) for p in images]
    assert theirs == ours


def test_rapidocr_runs_the_rapidocr_profile_unchanged(cli, run, tmp_path):
    # the test extra pins rapidocr-onnxruntime: a missing install fails here, never skips
    import onnxruntime as ort
    import rapidocr_onnxruntime.ch_ppocr_rec as rapid

    onnx_path = tmp_path / "rapid.onnx"
    res = cli("export", run / "run/best.pt", "-o", onnx_path, "--profile", "rapidocr",
              "--verify", "--samples", run / "lines")
    assert res.exit_code == 0 and json.loads(res.stdout)["verify"]["texts_match"]
    recognizer = rapid.TextRecognizer({
        "model_path": str(onnx_path), "rec_img_shape": [3, 48, 320], "rec_batch_num": 6,
        "intra_op_num_threads": -1, "inter_op_num_threads": -1, "use_cuda": False,
        "use_dml": False})
    images = [np.asarray(Image.open(p).convert("RGB"))[..., ::-1].copy()  # BGR, as cv2 reads
              for p in cropped_lines(run / "lines/images/0000", tmp_path / "crops", 8)]
    results, _ = recognizer(images)
    # The same file through plain onnxruntime on RapidOCR's own preprocessing, decoded
    # with ocrkit's charset: RapidOCR reads blank, characters and space where ocrkit
    # put them.
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    chars = load_checkpoint(str(run / "run/best.pt"))["charset"]
    for image, (text, conf) in zip(images, results):
        x = recognizer.resize_norm_img(image, max(320 / 48, image.shape[1] / image.shape[0]))
        probs = session.run(None, {"x": x[None].astype(np.float32)})[0][0]
        assert probs.shape[-1] == len(chars) + 2 and np.allclose(probs.sum(-1), 1, atol=1e-4)
        best, expected, prev = probs.argmax(-1), [], 0
        for k in best:
            if k != prev and 0 < k <= len(chars):
                expected.append(chars[k - 1])
            prev = k
        assert text == "".join(expected) and 0 <= conf <= 1


def test_config_json_reruns_a_run_and_flags_override(cli, run, tmp_path):
    config = json.loads((run / "run/config.json").read_text())
    assert config["command"] == "train" and config["options"]["max_steps"] == 12
    res = cli("train", "--config", run / "run/config.json", "-o", tmp_path / "again",
              "--max-steps", 3)
    assert res.exit_code == 0, res.output
    a = load_checkpoint(str(run / "run/best.pt"))
    b = load_checkpoint(str(tmp_path / "again/best.pt"))
    assert a["spec"] == b["spec"] and a["input"] == b["input"] and b["meta"]["step"] == 3
    again = json.loads((tmp_path / "again/config.json").read_text())["options"]
    assert again["max_steps"] == 3 and again["backbone_args"] == config["options"]["backbone_args"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    res = cli("train", "--config", bad, "-o", tmp_path / "x")
    assert res.exit_code == 2 and 'holds no "options"' in res.stderr


def test_distill_config_replays_only_what_was_given(cli, run, tmp_path):
    out = tmp_path / "kd"
    res = cli("distill", "--teacher", run / "run/best.pt", "--train", run / "lines", "-o", out,
              "--max-steps", 2, "-b", 8, "-w", 0, "-q")
    assert res.exit_code == 0, res.output
    options = json.loads((out / "config.json").read_text())["options"]
    assert "backbone" not in options and options["teacher"].endswith("best.pt")
    res = cli("distill", "--config", out / "config.json", "-o", tmp_path / "kd2")
    assert res.exit_code == 0, res.output
    assert load_checkpoint(str(tmp_path / "kd2/best.pt"))["spec"] == load_checkpoint(
        str(out / "best.pt"))["spec"]  # the same half-width student


def test_a_missing_plugin_is_named_with_its_distribution(run, tmp_path):
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.errors import UsageError
    from ocrkit.models.recognizer import build_model

    ckpt = load_checkpoint(str(run / "run/best.pt"))
    assert ckpt["spec"]["backbone"]["dist"] == "ocrkit"
    ckpt["spec"]["backbone"] = {"name": "tiny-cnn", "args": {}, "dist": "ocrkit-tinycnn",
                                "version": "0.1.0"}
    path = tmp_path / "plugin.pt"
    save_checkpoint(str(path), ckpt)
    with pytest.raises(UsageError, match="pip install ocrkit-tinycnn"):
        build_model(load_checkpoint(str(path)))


@pytest.mark.slow
def test_the_plugin_guides_examples_install_and_train(run, tmp_path):
    """plugins/README.md's neck, classifier and head, packaged as a plugin, train."""
    import os
    import re
    import subprocess
    import sys

    guide = open(os.path.join(os.path.dirname(__file__), "..", "plugins", "README.md"),
                 encoding="utf-8").read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "setup(" not in b]
    site = tmp_path / "site"
    (site / "ocrkit_mything").mkdir(parents=True)
    (site / "ocrkit_mything" / "__init__.py").write_text("\n\n".join(blocks), encoding="utf-8")
    info = site / "ocrkit_mything-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ocrkit-mything\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[ocrkit.necks]\nmax-pool = ocrkit_mything:max_pool\n"
        "[ocrkit.classifiers]\ncosine = ocrkit_mything:cosine\n"
        "[ocrkit.heads]\nctc-temp = ocrkit_mything:ctc_temp\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-m", "ocrkit", "train", "--train", str(run / "lines"), "-o",
         str(tmp_path / "r"), "--max-steps", "2", "--neck", "max-pool", "--classifier", "cosine",
         "--classifier-arg", "scale=8.0", "--head", "ctc-temp", "--head-arg", "temperature=2.0",
         *TINY], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    spec = load_checkpoint(str(tmp_path / "r/best.pt"))["spec"]
    assert spec["classifier"]["dist"] == "ocrkit-mything"
    bad = subprocess.run([sys.executable, "-m", "ocrkit", "train", "--train", str(run / "lines"),
                          "-o", str(tmp_path / "b"), "--max-steps", "1", "--classifier", "cosine",
                          "--classifier-arg", "scale=-1.0", *TINY],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "scale must be positive" in bad.stderr
