"""Multi-row recognition and box-line removal from the CLI: list, train each multi-row
neck, infer with rows, train-denoiser, denoise, and --denoiser on train/evaluate/infer."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ocrkit.checkpoint import load_checkpoint

MODEL = ["--backbone-arg", "channels=(8,16,16,16)", "--backbone-arg", "width_stride=8",
         "--sequence-arg", "hidden=16", "--sequence-arg", "layers=1", "-b", "8", "-w", "0", "-q"]
TINY = [*MODEL, "--height", "48", "--width", "48"]
DEN = ["--base", "4", "--depth", "2", "-b", "8", "-w", "0", "-q"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory, cjk_font):
    """3-row images without and with box lines (64x64, 2 columns, 12-character alphabet)."""
    from click.testing import CliRunner

    from ocrkit.cli import cli

    root = tmp_path_factory.mktemp("m3")
    common = ["--rows", 3, "--width", 64, "--height", 64, "--cols", 2, "--charset-size", 12,
              "--font", cjk_font, "-w", 1, "-q", "--test-fraction", 0.25]
    for name, extra in (("plain", []), ("box", ["--box-lines"])):
        res = CliRunner().invoke(cli, ["synth", "-n", 24, "--out", str(root / name), *extra,
                                       *map(str, common)])
        assert res.exit_code == 0, res.output
    return root


def test_list_necks_shows_the_multirow_necks(cli):
    res = cli("list", "necks")
    assert res.exit_code == 0
    names = {line.split()[1] for line in res.stdout.splitlines() if line.strip()}
    assert {"cap", "multirow-stretch", "row-attention"} <= names


@pytest.mark.parametrize("neck", ["multirow-stretch", "row-attention"])
def test_train_each_multirow_neck_then_infer_rows_and_evaluate_rows(cli, sets, tmp_path, neck):
    out = tmp_path / neck
    res = cli("train", "--train", sets / "plain/train", "--val", sets / "plain/test", "-o", out,
              "--rows", 3, "--neck", neck, "--max-steps", 2, "--val-every", 2, *TINY)
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(str(out / "best.pt"))
    assert ckpt["input"]["rows"] == 3 and ckpt["spec"]["neck"]["args"]["rows"] == 3
    assert ckpt["spec"]["neck"]["args"]["feature_height"] == 3  # 48 px / 16

    res = cli("infer", "-m", out / "best.pt", sets / "plain/test")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == 6
    for rec in records:
        assert len(rec["rows"]) == 3 and rec["text"] == "\n".join(rec["rows"])

    res = cli("evaluate", out / "best.pt", sets / "plain/test", "-q")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["samples"] == 6 and result["row_level"]["samples"] == 18


@pytest.mark.parametrize("variant,features", [("full", "conv"), ("column", "input")])
def test_row_attention_in_reading_order_everywhere(cli, sets, tmp_path, variant, features):
    """--row-sequence reading-order (and either reading of Eq. 6): stored in the spec, read
    back by evaluate, infer, ONNX export (--verify parity) and distill."""
    out = tmp_path / "ro"
    res = cli("train", "--train", sets / "plain/train", "--val", sets / "plain/test", "-o", out,
              "--rows", 3, "--neck", "row-attention", "--neck-arg", f"variant={variant}",
              "--neck-arg", f"features={features}",
              "--row-sequence", "reading-order", "--max-steps", 2, *TINY)
    assert res.exit_code == 0, res.output
    spec = load_checkpoint(str(out / "best.pt"))["spec"]
    assert spec["row_sequence"] == "reading-order"
    assert spec["neck"]["args"]["features"] == features
    res = cli("infer", "-m", out / "best.pt", sets / "plain/test")
    assert all(len(json.loads(x)["rows"]) == 3 for x in res.stdout.splitlines())
    assert json.loads(cli("evaluate", out / "best.pt", sets / "plain/test", "-q").stdout)[
        "row_level"]["samples"] == 18
    res = cli("export", out / "best.pt", "-o", tmp_path / "ro.onnx", "--verify", "--samples",
              sets / "plain/test")
    assert res.exit_code == 0 and json.loads(res.stdout)["verify"]["texts_match"]
    res = cli("distill", "--teacher", out / "best.pt", "--train", sets / "plain/train",
              "-o", tmp_path / "kd", "--max-steps", 1, "-b", 8, "-w", 0, "-q")
    assert res.exit_code == 0, res.output
    student = load_checkpoint(str(tmp_path / "kd/best.pt"))["spec"]
    assert student["row_sequence"] == "reading-order"
    assert student["neck"]["args"]["features"] == features


def test_reading_order_needs_a_neck_that_returns_rows(cli, sets, tmp_path):
    res = cli("train", "--train", sets / "plain/train", "-o", tmp_path / "r", "--rows", 3,
              "--neck", "multirow-stretch", "--row-sequence", "reading-order", "--max-steps", 1,
              *TINY)
    assert res.exit_code == 2 and "returns one sequence per image" in res.stderr


@pytest.mark.parametrize("neck", ["multirow-stretch", "row-attention"])
def test_row_loss_swaps_the_ctc_layout_of_either_neck(cli, sets, tmp_path, neck):
    layout = "per-row" if neck == "multirow-stretch" else "joined"
    res = cli("train", "--train", sets / "plain/train", "-o", tmp_path / "r", "--rows", 3,
              "--neck", neck, "--row-loss", layout, "--max-steps", 2, *TINY)
    assert res.exit_code == 0, res.output
    config = json.load(open(tmp_path / "r" / "config.json"))
    assert config["options"]["row_loss"] == layout
    res = cli("train", "--train", sets / "plain/train", "-o", tmp_path / "s",
              "--row-loss", layout, "--max-steps", 1, *TINY)
    assert res.exit_code == 2 and "--row-loss" in res.stderr and "--rows" in res.stderr


def test_rows_need_a_multirow_neck(cli, sets, tmp_path):
    res = cli("train", "--train", sets / "plain/train", "-o", tmp_path / "r", "--rows", 3,
              "--max-steps", 1, *TINY)
    assert res.exit_code == 2
    assert "--rows 3 needs a multi-row neck (multirow-stretch or row-attention), not 'cap'" \
        in res.stderr


def test_row_attention_rejects_a_feature_map_with_too_few_rows(cli, sets, tmp_path):
    res = cli("train", "--train", sets / "plain/train", "-o", tmp_path / "r", "--rows", 3,
              "--neck", "row-attention", "--max-steps", 1, *MODEL, "--height", "32",
              "--width", "48")
    assert res.exit_code == 2
    assert "feature map has 2 rows, fewer than the 3 text rows" in res.stderr


@pytest.fixture(scope="module")
def denoiser(sets, tmp_path_factory):
    from click.testing import CliRunner

    from ocrkit.cli import cli

    out = tmp_path_factory.mktemp("den") / "line"
    res = CliRunner().invoke(cli, ["train-denoiser", "--data", str(sets / "box"), "-o", str(out),
                                   "--max-steps", "3", "--val-every", "3",
                                   "--val-fraction", "0.25", *DEN])
    assert res.exit_code == 0, res.output
    return out


def test_train_denoiser_on_a_box_lines_folder(denoiser, sets):
    summary_ckpt = load_checkpoint(str(denoiser / "best.pt"))
    assert summary_ckpt["kind"] == "denoiser"
    assert summary_ckpt["denoiser"] == {"variant": "line", "base": 4, "depth": 2,
                                        "in_channels": 1}
    assert summary_ckpt["input"]["size"] == [64, 64]  # the data's own size
    val = [json.loads(line) for line in (denoiser / "metrics.jsonl").read_text().splitlines()
           if "val" in line]
    assert val and {"psnr", "input_psnr", "mse"} <= set(val[-1]["val"])
    # 5 of box/train's 18 pairs held out; box/test (6 pairs) is never read
    assert val[-1]["val"]["samples"] == 5


def test_train_denoiser_never_validates_on_the_test_split(cli, sets, tmp_path):
    res = cli("train-denoiser", "--data", sets / "box", "-o", tmp_path / "noval",
              "--max-steps", 2, "--val-every", 1, *DEN)
    assert res.exit_code == 0, res.output
    log = (tmp_path / "noval/metrics.jsonl").read_text()
    assert '"val"' not in log  # no validation at all, not DATA/test's
    assert (tmp_path / "noval/best.pt").is_file()  # the last step
    res = cli("train-denoiser", "--data", sets / "box", "-o", tmp_path / "both",
              "--val", sets / "box/test", "--val-fraction", 0.1, "--max-steps", 1, *DEN)
    assert res.exit_code == 2 and "--val and --val-fraction" in res.stderr


def test_train_denoiser_plain_variant_and_bad_data(cli, sets, tmp_path):
    res = cli("train-denoiser", "--data", sets / "box", "-o", tmp_path / "plain",
              "--variant", "plain", "--max-steps", 1, *DEN)
    assert res.exit_code == 0, res.output
    assert load_checkpoint(str(tmp_path / "plain/best.pt"))["denoiser"]["variant"] == "plain"
    res = cli("train-denoiser", "--data", sets / "plain/train", "-o", tmp_path / "x",
              "--max-steps", 1, *DEN)
    assert res.exit_code == 2
    assert "no record has a clean twin" in res.stderr and "--box-lines" in res.stderr


def test_denoise_writes_cleaned_images(cli, denoiser, sets, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    src = sorted((sets / "box/test/images/0000").glob("*[0-9].png"))[:2]
    res = cli("denoise", "-m", denoiser / "best.pt", *src, bad, "-o", tmp_path / "clean")
    assert res.exit_code == 1  # the unreadable input is reported, the others written
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r.get("error") for r in records] == [None, None, "not an image (unknown or "
                                                  "unsupported format)"]
    for rec, path in zip(records, src):
        with Image.open(rec["out"]) as im, Image.open(path) as orig:
            assert im.size == orig.size and im.mode == "L"


def test_denoiser_chains_before_recognition_in_train_evaluate_and_infer(cli, denoiser, sets,
                                                                          tmp_path):
    out = tmp_path / "crnn"
    res = cli("train", "--train", sets / "box/train", "--val", sets / "box/test", "-o", out,
              "--rows", 3, "--neck", "multirow-stretch", "--max-steps", 2, "--val-every", 2,
              "--denoiser", denoiser / "best.pt", "--height", "64", "--width", "64", *MODEL)
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(str(out / "best.pt"))
    assert ckpt["spec"]["denoiser"]["net"]["variant"] == "line"  # carried by the checkpoint
    assert any(k.startswith("denoiser.") for k in ckpt["state_dict"])

    plain = cli("infer", "-m", out / "best.pt", sets / "box/test")
    chained = cli("infer", "-m", out / "best.pt", sets / "box/test", "--denoiser",
                  denoiser / "best.pt")
    assert plain.exit_code == chained.exit_code == 0
    assert plain.stdout == chained.stdout  # the same denoiser, embedded or given

    res = cli("evaluate", out / "best.pt", sets / "box/test", "--denoiser", denoiser / "best.pt",
              "-q")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["samples"] == 6

    # the ONNX graph holds the denoiser too: same texts as torch
    res = cli("export", out / "best.pt", "--format", "onnx", "-o", tmp_path / "m.onnx",
              "--verify", "--samples", sets / "box/test")
    assert res.exit_code == 0, res.output
    verify = json.loads(res.stdout)["verify"]
    assert verify["texts_match"] and verify["max_abs_diff"] < 1e-3


def test_checkpoint_kinds_are_not_confused(cli, denoiser, sets, tmp_path):
    res = cli("infer", "-m", denoiser / "best.pt", sets / "box/test")
    assert res.exit_code == 2
    assert "denoiser checkpoint, not a recognizer: pass it with --denoiser" in res.stderr
    rec = tmp_path / "rec"
    res = cli("train", "--train", sets / "plain/train", "-o", rec, "--rows", 3, "--neck",
              "multirow-stretch", "--max-steps", 1, *TINY)
    assert res.exit_code == 0, res.output
    res = cli("evaluate", rec / "best.pt", sets / "box/test", "--denoiser", rec / "best.pt")
    assert res.exit_code == 2
    assert "not a denoiser checkpoint" in res.stderr
