"""ocrkit synth: determinism, layouts, corpus order, box lines, fonts, bad input."""

from __future__ import annotations

import filecmp
import json
import os

import numpy as np
import pytest
from conftest import one_line_error, read_labels
from PIL import Image

from data_tools.synth.corpus import normalise_running

RARE = "\U0002A6A5"  # 𪚥: a CJK Extension B character Noto Sans CJK does not draw


def tree(folder) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


def test_same_seed_same_bytes_for_any_worker_count(cli, tmp_path, cjk_font):
    a, b = tmp_path / "A", tmp_path / "B"
    for out, workers in ((a, 1), (b, 2)):
        res = cli("synth", "--rows", 7, "-n", 60, "--seed", 1, "--out", out,
                  "--workers", workers, "--font", cjk_font, "-q")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["images"] == 60
    ta, tb = tree(a), tree(b)
    assert ta.keys() == tb.keys() and all(ta[k] == tb[k] for k in ta)
    labels = read_labels(a)
    assert len(labels) == 60
    for rec in labels:
        assert len(rec["rows"]) == 7 and all(row for row in rec["rows"])
        with Image.open(a / rec["image"]) as im:
            assert im.mode == "L" and im.size == (224, 224)
    # A different seed gives different text.
    cli("synth", "--rows", 7, "-n", 2, "--seed", 2, "--out", tmp_path / "C", "-w", 1,
        "--font", cjk_font, "-q")
    assert read_labels(tmp_path / "C")[0]["rows"] != labels[0]["rows"]


@pytest.mark.parametrize("rotate", [0, 1.5])
def test_box_lines_write_image_clean_twin_and_mask(cli, tmp_path, cjk_font, rotate):
    out = tmp_path / "box"
    res = cli("synth", "--rows", 10, "--box-lines", "-n", 4, "--out", out, "-w", 1,
              "--font", cjk_font, "--noise", 5, "--rotate", rotate, "-q")
    assert res.exit_code == 0, res.output
    for rec in read_labels(out):
        image = np.asarray(Image.open(out / rec["image"]), dtype=int)
        clean = np.asarray(Image.open(out / rec["clean"]), dtype=int)
        mask = np.asarray(Image.open(out / rec["mask"]).convert("L")) > 0
        assert image.shape == clean.shape == mask.shape == (224, 224)
        assert 0.02 < mask.mean() < 0.5  # a grid, not nothing and not everything
        # Same noise and geometry: the twin differs from the input only under the lines.
        assert np.abs(image - clean)[~mask].max() <= 1
        assert np.abs(image - clean)[mask].mean() > 30
        if not rotate:  # excel-like: 11 full-width row separators (outer box included)
            full = mask.mean(axis=1) > 0.8
            assert (np.diff(full.astype(int)) == 1).sum() + full[0] == 11


def test_corpus_is_read_in_book_order(cli, tmp_path, cjk_font):
    text = "第一章　科学边界\n\n汪淼觉得，来找他的这四个人是一个奇怪的组合。\n两名警察和两名军人，" * 3
    corpus = tmp_path / "novel.txt"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / "s"
    res = cli("synth", "--corpus", corpus, "--rows", 2, "--cols", 6, "--min-cols", 3,
              "-n", 9, "--out", out, "-w", 2, "--font", cjk_font, "-q")
    assert res.exit_code == 0, res.output
    joined = "".join("".join(rec["rows"]) for rec in read_labels(out))
    normalised = normalise_running(text)
    assert "\u3000" not in normalised and "\n" not in normalised
    assert joined == normalised[: len(joined)]
    lengths = {len(r) for rec in read_labels(out) for r in rec["rows"]}
    assert lengths <= set(range(3, 7)) and len(lengths) > 1


def test_corpus_exhaustion_wraps_or_stops(cli, tmp_path, cjk_font):
    corpus = tmp_path / "short.txt"
    corpus.write_text("天地玄黄宇宙洪荒", encoding="utf-8")
    res = cli("synth", "--corpus", corpus, "--cols", 3, "-n", 5, "--out", tmp_path / "w",
              "-w", 1, "--font", cjk_font)
    assert res.exit_code == 0
    assert "wrapped" in res.stderr
    assert "".join(r["rows"][0] for r in read_labels(tmp_path / "w")) == "天地玄黄宇宙洪荒天地玄黄宇宙洪"
    res = cli("synth", "--corpus", corpus, "--cols", 3, "-n", 5, "--out", tmp_path / "s",
              "-w", 1, "--font", cjk_font, "--on-exhausted", "stop", "-q")
    assert res.exit_code == 0
    assert [r["rows"][0] for r in read_labels(tmp_path / "s")] == ["天地玄", "黄宇宙"]


def test_lines_mode_with_a_latin_font(cli, tmp_path, latin_font):
    corpus = tmp_path / "words.txt"
    words = ["hello", "World", "  scene   text ", "", "recognition", "OCR"]
    corpus.write_text("\n".join(words), encoding="utf-8")
    out = tmp_path / "en"
    res = cli("synth", "--corpus", corpus, "--corpus-mode", "lines", "--font", latin_font,
              "-n", 5, "--out", out, "-w", 1, "-q")
    assert res.exit_code == 0, res.output
    assert [r["rows"][0] for r in read_labels(out)] == [
        "hello", "World", "scene text", "recognition", "OCR"]
    gt = (out / "gt.txt").read_text(encoding="utf-8").splitlines()
    assert gt[2].split("\t") == [read_labels(out)[2]["image"], "scene text"]


@pytest.mark.parametrize("policy,expect", [("skip", "天地玄黄"), ("replace", "天地?玄黄")])
def test_unknown_character_policies(cli, tmp_path, cjk_font, policy, expect):
    corpus = tmp_path / "c.txt"
    corpus.write_text(f"天地{RARE}玄黄", encoding="utf-8")
    res = cli("synth", "--corpus", corpus, "--cols", 5, "-n", 1, "--out", tmp_path / policy,
              "-w", 1, "--font", cjk_font, "--unknown", policy)
    assert res.exit_code == 0, res.output
    assert RARE in res.stderr  # the warning names the character
    assert read_labels(tmp_path / policy)[0]["rows"][0] == (expect * 2)[:5]  # wraps


def test_font_lacking_glyphs_is_an_error_before_rendering(cli, tmp_path, cjk_font, latin_font):
    corpus = tmp_path / "c.txt"
    corpus.write_text(f"天地{RARE}玄黄", encoding="utf-8")
    res = cli("synth", "--corpus", corpus, "-n", 1, "--out", tmp_path / "o", "--font", cjk_font)
    one_line_error(res, 2, RARE, "--unknown")
    assert not (tmp_path / "o" / "labels.jsonl").exists()
    # A Latin font cannot draw the Chinese default corpus at all.
    res = cli("synth", "-n", 1, "--out", tmp_path / "o2", "--font", latin_font)
    one_line_error(res, 2, "embedded corpus")


def test_no_usable_font(cli, tmp_path, monkeypatch):
    import data_tools.synth.fonts as fonts

    monkeypatch.setattr(fonts, "pip_font_files", lambda: [])
    monkeypatch.setattr(fonts, "system_font_files", lambda lang=None: [])
    res = cli("synth", "-n", 1, "--out", tmp_path / "o")
    one_line_error(res, 2, "no usable font", "ocrkit[fonts]")
    empty = tmp_path / "nofonts"
    empty.mkdir()
    one_line_error(cli("synth", "-n", 1, "--out", tmp_path / "o", "--font-dir", empty), 2,
                   "no .ttf")
    one_line_error(cli("synth", "-n", 1, "--out", tmp_path / "o", "--font", empty / "x.ttf"), 2,
                   "no such file")
    bogus = tmp_path / "bogus.ttf"
    bogus.write_bytes(b"not a font")
    one_line_error(cli("synth", "-n", 1, "--out", tmp_path / "o", "--font", bogus), 2,
                   "not a font")


def test_bad_input_is_a_one_line_usage_error(cli, tmp_path, cjk_font):
    f = ("--font", cjk_font)
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\t\n", encoding="utf-8")
    one_line_error(cli("synth", "--corpus", empty, "--out", tmp_path / "a", *f), 2, "empty")
    one_line_error(cli("synth", "-n", 0, "--out", tmp_path / "a", *f), 2, "--count")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(cli("synth", "-n", 1, "--out", blocker, *f), 2, "is a file")
    one_line_error(cli("synth", "-n", 1, "--out", blocker / "sub", *f), 2, "cannot write")
    one_line_error(cli("synth", "--rows", 10, "--height", 40, "--out", tmp_path / "a", *f), 2,
                   "bad size")
    one_line_error(cli("synth", "--cols", 50, "--width", 100, "--out", tmp_path / "a", *f), 2,
                   "bad size")
    one_line_error(cli("synth", "--width", -3, "--out", tmp_path / "a", *f), 2, "bad size")
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("中文".encode("gbk"))
    one_line_error(cli("synth", "--corpus", gbk, "--out", tmp_path / "a", *f), 2, "not UTF-8")
    one_line_error(cli("synth", "--shard", "0/4", "--out", tmp_path / "a", *f), 2, "K")


def test_existing_dataset_is_not_overwritten_by_accident(cli, tmp_path, cjk_font):
    out = tmp_path / "d"
    assert cli("synth", "-n", 2, "--out", out, "-w", 1, "--font", cjk_font, "-q").exit_code == 0
    before = (out / "labels.jsonl").read_bytes()
    one_line_error(cli("synth", "-n", 3, "--out", out, "--font", cjk_font), 2, "--overwrite")
    assert (out / "labels.jsonl").read_bytes() == before
    res = cli("synth", "-n", 3, "--out", out, "-w", 1, "--font", cjk_font, "--overwrite", "-q")
    assert res.exit_code == 0 and len(read_labels(out)) == 3


def test_outputs_meta_charset_gt_preview(cli, tmp_path, cjk_font):
    out = tmp_path / "s1"
    res = cli("synth", "-n", 6, "--seed", 3, "--out", out, "-w", 1, "--font", cjk_font,
              "--preview", "-q")
    assert res.exit_code == 0
    labels = read_labels(out)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    used = sorted({c for r in labels for c in r["rows"][0]})
    assert meta["charset"] == "".join(used)
    assert (out / "charset.txt").read_text(encoding="utf-8").split("\n")[:-1] == used
    assert meta["seed"] == 3 and meta["counts"]["images"] == 6 and meta["complete"] is True
    assert meta["fonts"][0]["path"] == cjk_font
    gt = [line.split("\t") for line in (out / "gt.txt").read_text(encoding="utf-8").splitlines()]
    assert gt == [[r["image"], r["rows"][0]] for r in labels]
    with Image.open(out / "images" / "0000" / "00000000.png") as im:
        assert im.size == (256, 32)
    with Image.open(out / "preview.png") as im:
        assert im.width > 256 and im.height > 32


def test_train_test_split_and_shards(cli, tmp_path, cjk_font):
    full = tmp_path / "full"
    f = ("--font", cjk_font, "-w", 1, "-q", "--seed", 4)
    assert cli("synth", "-n", 10, "--out", full, "--test-fraction", 0.2, *f).exit_code == 0
    train, test = read_labels(full / "train"), read_labels(full / "test")
    assert len(train) == 8 and len(test) == 2
    # Tail split: the test text follows the training text in book order.
    assert [r["image"] for r in test] == ["images/0000/00000008.png", "images/0000/00000009.png"]
    parts = []
    for k in (1, 2, 3):
        out = tmp_path / f"part{k}"
        res = cli("synth", "-n", 10, "--out", out, "--test-fraction", 0.2, "--shard", f"{k}/3", *f)
        assert res.exit_code == 0
        parts.append(out)
    merged = {s: [r for p in parts for r in read_labels(p / s)] for s in ("train", "test")}
    assert merged["train"] == train and merged["test"] == test
    for rec in train:
        owner = next(p for p in parts if (p / "train" / rec["image"]).exists())
        assert filecmp.cmp(owner / "train" / rec["image"], full / "train" / rec["image"],
                           shallow=False)


def test_synthesize_alias_and_embedded_charset_limit(cli, tmp_path, cjk_font):
    out = tmp_path / "small"
    res = cli("synthesize", "-n", 20, "--charset-size", 50, "--out", out, "-w", 1,
              "--font", cjk_font, "-q")
    assert res.exit_code == 0, res.output
    chars = {c for r in read_labels(out) for c in r["rows"][0]}
    punctuation = set("，。、！？；：")
    assert len(chars - punctuation) <= 50
    assert json.loads(res.stdout)["charset_size"] == len(chars)


def test_full_disk_mid_run_keeps_a_valid_prefix_and_resume_finishes_it(cli, tmp_path, cjk_font,
                                                                       monkeypatch):
    import errno

    import data_tools.synth.generate as gen
    import data_tools.synth.workers as workers

    args = ("-n", 100, "--cols", 4, "--test-fraction", 0.2, "-w", 1, "--font", cjk_font, "-q")
    monkeypatch.setattr(gen, "CHUNK", 8)
    assert cli("synth", "--out", tmp_path / "ref", *args).exit_code == 0
    real_save, calls = workers._save, {"n": 0}

    def flaky_save(image, path, quality):
        calls["n"] += 1
        if calls["n"] > 40:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(image, path, quality)

    monkeypatch.setattr(workers, "_save", flaky_save)
    out = tmp_path / "full"
    res = cli("synth", "--out", out, *args)
    one_line_error(res, 1, "No space left on device", "synth --resume --out")
    labels = read_labels(out / "train")
    assert 0 < len(labels) <= 40 and len(labels) % 8 == 0
    assert all((out / "train" / rec["image"]).is_file() for rec in labels)  # no label without image
    assert json.loads((out / "train" / "meta.json").read_text())["complete"] is False
    # Every reader refuses the incomplete set and says how to finish it.
    for cmd in (("build-lmdb", out / "train", tmp_path / "x.lmdb"), ("stats", out / "train")):
        res = cli(*cmd)
        if cmd[0] == "stats":
            assert res.exit_code == 0 and json.loads(res.stdout)["incomplete"] is True
            assert "synth --resume --out" in res.stderr
        else:
            one_line_error(res, 2, "incomplete", f"synth --resume --out {out}")
    monkeypatch.setattr(workers, "_save", real_save)
    assert cli("synth", "--resume", "--out", out, "-q").exit_code == 0
    for split in ("train", "test"):
        for name in ("labels.jsonl", "gt.txt", "meta.json", "charset.txt"):
            assert (out / split / name).read_bytes() == (tmp_path / "ref" / split / name).read_bytes()
        for rec in read_labels(out / split):
            assert (out / split / rec["image"]).read_bytes() == \
                (tmp_path / "ref" / split / rec["image"]).read_bytes()
    one_line_error(cli("synth", "--resume", "--out", out), 2, "complete")


def test_a_font_replaced_on_disk_is_checked_again(tmp_path, cjk_font, latin_font):
    """Glyph answers are kept per face for the whole process; a file replaced under the
    same path (another face) must not inherit them."""
    import shutil

    from data_tools.synth.fonts import FontSpec, GlyphChecker

    path = tmp_path / ("face" + os.path.splitext(cjk_font)[1])
    shutil.copyfile(cjk_font, path)
    assert GlyphChecker(FontSpec(str(path))).draws("中")
    assert GlyphChecker(FontSpec(str(path))).draws("中")  # the kept answer
    shutil.copyfile(latin_font, path)
    assert not GlyphChecker(FontSpec(str(path))).draws("中")
