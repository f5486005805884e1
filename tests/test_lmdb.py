"""ocrkit build-lmdb and stats: standard keys, bad images, label formats, map growth."""

from __future__ import annotations

import json
from pathlib import Path
import os
import shutil

import lmdb
import pytest
from PIL import Image

from conftest import read_labels
import data_tools.lmdb as lmdb_mod
from data_tools.labels import read_labels as read_label_folder


def open_env(path):
    return lmdb.open(str(path), readonly=True, lock=False)


def test_build_lmdb_standard_keys_multirow_labels(cli, tmp_path, multirow_set):
    out = tmp_path / "m3.lmdb"
    res = cli("build-lmdb", multirow_set, out, "-q")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_samples"] == 12
    labels = read_labels(multirow_set)
    with open_env(out).begin() as txn:
        assert txn.get(b"num-samples") == b"12"
        assert txn.get(b"image-000000000") is None  # numbered from 1
        for n, rec in enumerate(labels, 1):
            assert txn.get(b"label-%09d" % n).decode() == "\n".join(rec["rows"])
            with open(os.path.join(multirow_set, rec["image"]), "rb") as fh:
                assert txn.get(b"image-%09d" % n) == fh.read()  # bytes as they were
        assert txn.get(b"label-000000013") is None
        meta = json.loads(txn.get(b"meta"))
    chars = sorted({c for r in labels for row in r["rows"] for c in row})
    assert meta["charset"] == "".join(chars)
    assert (out / "charset.txt").read_text(encoding="utf-8").split("\n")[:-1] == chars
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]  # no temp left behind


def test_truncated_image_is_skipped_and_reported(cli, tmp_path, multirow_set):
    data = tmp_path / "data"
    shutil.copytree(multirow_set, data)
    victim = read_labels(data)[4]["image"]
    raw = (data / victim).read_bytes()
    (data / victim).write_bytes(raw[: len(raw) // 2])
    res = cli("build-lmdb", data, tmp_path / "db")
    assert res.exit_code == 0, res.output
    assert "skipped 1 bad images" in res.stderr and victim.split("/")[-1] in res.stderr
    assert json.loads(res.stdout)["num_samples"] == 11
    with open_env(tmp_path / "db").begin() as txn:
        assert txn.get(b"num-samples") == b"11"
        assert txn.get(b"label-000000005").decode() == "\n".join(read_labels(data)[5]["rows"])
    # --strict refuses and writes nothing.
    res = cli("build-lmdb", data, tmp_path / "strict", "--strict")
    assert res.exit_code == 1 and "--strict" in res.stderr
    assert not (tmp_path / "strict").exists()


def test_existing_lmdb_needs_overwrite(cli, tmp_path, multirow_set):
    out = tmp_path / "db"
    assert cli("build-lmdb", multirow_set, out, "-q").exit_code == 0
    res = cli("build-lmdb", multirow_set, out)
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    assert cli("build-lmdb", multirow_set, multirow_set, out, "--overwrite", "-q").exit_code == 0
    with open_env(out).begin() as txn:
        assert txn.get(b"num-samples") == b"24"


def test_map_grows_instead_of_reserving(tmp_path, multirow_set, monkeypatch):
    monkeypatch.setattr(lmdb_mod, "INITIAL_MAP", 64 << 10)  # 64 KiB: far too small
    monkeypatch.setattr(lmdb_mod, "BATCH", 2)
    items = list(read_label_folder(multirow_set)) * 10
    report = lmdb_mod.write_lmdb(items, str(tmp_path / "db"))
    assert report.written == 120
    reader = lmdb_mod.LmdbReader(str(tmp_path / "db"))
    assert len(reader) == 120 and reader.get(119)[1] == items[119].label


def _write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("L", (40, 16), 255).save(folder / name)


@pytest.mark.parametrize("fmt", ["tsv", "text-renderer", "mmocr", "space"])
def test_other_tools_label_formats(cli, tmp_path, fmt):
    folder = tmp_path / fmt
    _write_images(folder, ["a.png", "b.jpg"])
    labels = {"a.png": "你好 world", "b.jpg": "第二"}
    if fmt == "tsv":
        (folder / "gt.txt").write_text("".join(f"{k}\t{v}\n" for k, v in labels.items()),
                                       encoding="utf-8")
    elif fmt == "text-renderer":
        (folder / "labels.json").write_text(json.dumps(
            {"labels": {k.split(".")[0]: v for k, v in labels.items()}}), encoding="utf-8")
    elif fmt == "mmocr":
        (folder / "textrecog_train.json").write_text(json.dumps({"metainfo": {}, "data_list": [
            {"img_path": k, "instances": [{"text": v}]} for k, v in labels.items()]}),
            encoding="utf-8")
    else:
        (folder / "labels.txt").write_text("".join(f"{k} {v}\n" for k, v in labels.items()),
                                           encoding="utf-8")
    res = cli("build-lmdb", folder, tmp_path / "db", "-q")
    assert res.exit_code == 0, res.output
    with open_env(tmp_path / "db").begin() as txn:
        got = {txn.get(b"label-%09d" % n).decode() for n in (1, 2)}
    assert got == set(labels.values())


@pytest.mark.parametrize("layout", ["text-renderer-v1", "paddleocr", "mmocr-prefix",
                                    "trdg-image-root"])
def test_layouts_of_other_tools(cli, tmp_path, layout):
    """Image names without suffix (text_renderer v1), PaddleOCR's rec_gt_*.txt with paths
    from the dataset root, MMOCR paths under a data prefix, --image-root."""
    root = tmp_path / layout
    labels = {"00000000": "你好 world", "00000001": "第二"}
    extra = []
    if layout == "text-renderer-v1":  # default/tmp_labels.txt: "00000000 label", 00000000.jpg
        _write_images(root, [f"{k}.jpg" for k in labels])
        (root / "tmp_labels.txt").write_text("".join(f"{k} {v}\n" for k, v in labels.items()),
                                             encoding="utf-8")
    elif layout == "paddleocr":  # train_data/rec/rec_gt_train.txt, paths from train_data/
        _write_images(root / "rec" / "train", [f"{k}.png" for k in labels])
        (root / "rec" / "rec_gt_train.txt").write_text(
            "".join(f"rec/train/{k}.png\t{v}\n" for k, v in labels.items()), encoding="utf-8")
        root = root / "rec"
    elif layout == "mmocr-prefix":  # data_prefix img_path='textrecog_imgs/train/'
        _write_images(root / "textrecog_imgs" / "train", [f"{k}.jpg" for k in labels])
        (root / "textrecog_train.json").write_text(json.dumps({"metainfo": {}, "data_list": [
            {"img_path": f"{k}.jpg", "instances": [{"text": v}]} for k, v in labels.items()]}),
            encoding="utf-8")
    else:
        _write_images(tmp_path / "pictures", [f"{k}.png" for k in labels])
        root.mkdir()
        (root / "labels.txt").write_text("".join(f"{k}.png {v}\n" for k, v in labels.items()),
                                         encoding="utf-8")
        extra = ["--image-root", tmp_path / "pictures"]
    res = cli("build-lmdb", root, tmp_path / "db", "-q", *extra)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_samples"] == 2
    with open_env(tmp_path / "db").begin() as txn:
        assert {txn.get(b"label-%09d" % n).decode() for n in (1, 2)} == set(labels.values())


def test_no_image_found_is_an_error_not_an_empty_lmdb(cli, tmp_path):
    folder = tmp_path / "lost"
    folder.mkdir()
    (folder / "gt.txt").write_text("nowhere.png\tlabel\n", encoding="utf-8")
    res = cli("build-lmdb", folder, tmp_path / "db")
    assert res.exit_code == 1 and "no readable image" in res.stderr
    assert not (tmp_path / "db").exists()


def test_lmdb_keys_from_zero_and_the_same_lmdb_twice(cli, tmp_path, multirow_set):
    """text_renderer numbers its keys from 0; lmdb 3.x refuses a second open of one
    database in a process (train --train X --val X)."""
    import lmdb

    from data_tools.lmdb import LmdbReader
    from ocrkit.data import open_dataset

    db = tmp_path / "tr"
    items = read_labels(multirow_set)[:3]
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, rec in enumerate(items):
            txn.put(b"image-%09d" % i, (Path(multirow_set) / rec["image"]).read_bytes())
            txn.put(b"label-%09d" % i, "\n".join(rec["rows"]).encode())
            txn.put(b"size-%09d" % i, b"64,64")
        txn.put(b"num-samples", b"3")
    env.close()
    reader = LmdbReader(str(db))
    assert reader.first == 0 and list(reader.labels()) == ["\n".join(r["rows"]) for r in items]
    assert json.loads(cli("stats", db, "-q").stdout)["samples"] == 3
    both = open_dataset([str(db), str(db)])  # the same database twice in one process
    assert len(both) == 6 and both[5].rows == items[2]["rows"] and both[0].image is not None


def test_missing_label_file_and_malformed_lines(cli, tmp_path):
    folder = tmp_path / "nolabels"
    _write_images(folder, ["a.png"])
    res = cli("build-lmdb", folder, tmp_path / "db")
    assert res.exit_code == 2 and "no label file" in res.stderr
    (folder / "gt.txt").write_text("a.png\tok\nbroken line without tab\n", encoding="utf-8")
    res = cli("build-lmdb", folder, tmp_path / "db")
    assert res.exit_code == 0 and "no tab" in res.stderr
    assert json.loads(res.stdout)["num_samples"] == 1


def test_stats_lmdb_folder_scan_and_unknown_chars(cli, tmp_path, multirow_set):
    root = tmp_path / "lmdbs"
    root.mkdir()
    for name in ("a", "b"):
        assert cli("build-lmdb", multirow_set, root / name, "-q").exit_code == 0
    labels = read_labels(multirow_set)
    first_row = labels[0]["rows"][0]
    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("\n".join(sorted(set(first_row))) + "\n", encoding="utf-8")
    res = cli("stats", root, "--charset", dict_file)
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["samples"] == 24 and stats["rows_histogram"] == {"3": 24}
    total = sum(len("".join(r["rows"])) for r in labels)
    assert stats["characters"] == 2 * total
    all_chars = {c for r in labels for row in r["rows"] for c in row}
    assert set(stats["unknown"]) == all_chars - set(first_row)
    assert stats["samples_with_unknown"] == 24
    assert "samples" in res.stderr  # the table
