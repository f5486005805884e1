"""Fault injection from the CLI: every case of the reliability catalogues (issues 9 and 24).

Each test runs the command a user would, then checks the exit code, that stderr
is one ``ocrkit: error: ...`` line (never a traceback), and that nothing outside
the command's own outputs changed (files hashed before and after).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import one_line_error
from PIL import Image

from ocrkit.checkpoint import load_checkpoint

TINY = ["--backbone-arg", "channels=(8,16,16,32)", "--sequence-arg", "hidden=16",
        "--sequence-arg", "layers=1", "--height", "32", "--width", "96", "-b", "8", "-w", "0"]


# ----------------------------------------------------------------------------- helpers
def snapshot(*roots) -> dict[str, str]:
    """Path -> sha256 of every file under ``roots`` (hidden files included)."""
    out = {}
    for root in map(str, roots):
        if os.path.isfile(root):
            out[root] = hashlib.sha256(open(root, "rb").read()).hexdigest()
            continue
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    out[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def ocrkit(*args, check: bool = False, **kw):
    proc = subprocess.run([sys.executable, "-m", "ocrkit", *map(str, args)], capture_output=True,
                          text=True, **kw)
    if check and proc.returncode:
        raise AssertionError(proc.stderr[-2000:])
    return proc


class Proc:
    """A finished subprocess with click-result-like attributes."""

    def __init__(self, proc) -> None:
        self.exit_code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory, cjk_font):
    """A synth folder, its LMDB and a model trained for 2 steps (shared, read-only)."""
    root = tmp_path_factory.mktemp("faults")
    run = CliRunner().invoke

    def ok(*args):
        from ocrkit.cli import cli

        res = run(cli, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res

    ok("synth", "-n", 24, "--seed", 3, "--cols", 4, "--charset-size", 12, "--font", cjk_font,
       "--out", root / "set", "-w", 1, "-q")
    ok("synth", "-n", 4, "--seed", 4, "--rows", 3, "--cols", 3, "--charset-size", 12,
       "--font", cjk_font, "--out", root / "m3", "-w", 1, "-q")
    ok("build-lmdb", root / "set", root / "set.lmdb", "-q")
    ok("train", "--train", root / "set.lmdb", "-o", root / "run", "--max-steps", 2, "-q", *TINY)
    return root


@pytest.fixture
def cp(tmp_path, world):
    """Copy of the shared world for tests that may (wrongly) modify it."""
    import shutil

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(world / name, dst) if (world / name).is_dir() else shutil.copy(world / name, dst)
        return dst
    return copy


# ============================================================================ data loss
def test_build_lmdb_overwrite_replaces_only_its_own_lmdb_and_never_an_input(cli, cp, tmp_path):
    data = cp("set")
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    before = snapshot(data, mine)
    one_line_error(cli("build-lmdb", data, mine, "--overwrite"), 2, "not an LMDB written by")
    one_line_error(cli("build-lmdb", data, data, "--overwrite"), 2, "is the input")
    one_line_error(cli("build-lmdb", data, tmp_path, "--overwrite"), 2, "contains the input")
    one_line_error(cli("build-lmdb", data, data / "gt.txt", "--overwrite"), 2, "lies in the input")
    one_line_error(cli("build-lmdb", data, data / "labels.jsonl", "--overwrite"), 2, "lies in the input")
    assert snapshot(data, mine) == before
    # What it may replace: its own LMDB and a single file.
    out = tmp_path / "ok.lmdb"
    assert cli("build-lmdb", data, out, "-q").exit_code == 0
    one_line_error(cli("build-lmdb", data, out), 2, "already exists", "--overwrite")
    assert cli("build-lmdb", data, out, "--overwrite", "-q").exit_code == 0
    single = tmp_path / "old.lmdb"
    single.write_text("a file")
    assert cli("build-lmdb", data, single, "--overwrite", "-q").exit_code == 0
    assert (single / "data.mdb").is_file()
    assert snapshot(data, mine) == before


def test_train_refuses_an_existing_run_without_resume_or_overwrite(cli, world, cp, tmp_path):
    run = cp("run")
    before = snapshot(run)
    args = ["train", "--train", world / "set.lmdb", "-o", run, "--max-steps", 1, "-q", *TINY]
    one_line_error(cli(*args), 2, "already holds a run", "last.pt at step 2", "--resume", "--overwrite")
    assert snapshot(run) == before
    one_line_error(cli(*args, "--resume", "--overwrite"), 2, "not both")
    # A folder that is not a run folder is never written, even with --overwrite.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    one_line_error(cli(*args[:4], mine, *args[5:], "--overwrite"), 2, "not an ocrkit run folder")
    assert (mine / "notes.txt").read_text() == "keep" and len(os.listdir(mine)) == 1
    # --overwrite starts over: the run files are replaced, anything else is kept.
    (run / "notes.txt").write_text("mine")
    res = cli(*args, "--overwrite")
    assert res.exit_code == 0, res.output
    assert load_checkpoint(str(run / "last.pt"))["meta"]["step"] == 1
    assert (run / "notes.txt").read_text() == "mine"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # not mixed with the old


def test_a_run_folder_being_written_is_locked(cli, world, tmp_path):
    from ocrkit.outputs import FolderLock

    out = tmp_path / "busy"
    out.mkdir()
    with FolderLock(str(out), "train").acquire():
        line = one_line_error(cli("train", "--train", world / "set.lmdb", "-o", out, "--max-steps", 1,
                            *TINY), 2, "is being written by", "ocrkit train")
        assert f"pid {os.getpid()}" in line
        one_line_error(cli("synth", "-n", 2, "--out", out), 2, "is being written by")
    assert os.listdir(out) == []  # the lock file goes with its holder


def test_denoise_never_writes_over_its_inputs(cli, world, cp, tmp_path):
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.models.denoise import Denoiser

    den = tmp_path / "den.pt"
    net = Denoiser(base=4, depth=2)
    save_checkpoint(str(den), {"kind": "denoiser", "denoiser": net.config(),
                               "input": {"size": [32, 96]}, "state_dict": net.state_dict()})
    data = cp("set")
    before = snapshot(data)
    one_line_error(cli("denoise", "-m", den, data / "images", "-o", data / "images"), 2, "is the input")
    one_line_error(cli("denoise", "-m", den, data / "images", "-o", data), 2, "contains the input")
    assert snapshot(data) == before
    # An output folder inside an input folder is written, and not read back as input.
    res = cli("denoise", "-m", den, data / "images", "-o", data / "images" / "clean")
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 24
    assert {k: v for k, v in snapshot(data).items() if "/clean/" not in k} == before
    one_line_error(cli("denoise", "-m", den, data / "images", "-o", data / "images" / "clean"), 2,
             "already holds files", "--overwrite")


def test_export_keeps_an_existing_file_and_a_failed_verify_replaces_nothing(cli, world, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"a good, verified model")
    one_line_error(cli("export", world / "run/best.pt", "-o", target), 2, "already exists",
             "--overwrite")
    res = cli("export", world / "run/best.pt", "-o", target, "--overwrite", "--verify",
              "--tolerance", "-1")
    one_line_error(res, 1, "--verify", "was not written")
    assert target.read_bytes() == b"a good, verified model"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no temporary file left
    assert cli("export", world / "run/best.pt", "-o", target, "--overwrite", "--verify"
               ).exit_code == 0
    assert target.read_bytes().startswith(b"\x08")  # an ONNX protobuf now


def test_one_bad_input_is_one_error_record(cli, world, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 M pixels in a few kB
    good = sorted((world / "set/images/0000").glob("*.png"))
    inputs = [*good[:10], bomb, tmp_path / "missing.png", good[10]]
    res = cli("infer", "-m", world / "run/best.pt", "-b", 32, *inputs)
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["path"] for r in recs] == [str(p) for p in inputs]
    assert recs[10]["error"].startswith("too large: 400,000,000 pixels")
    assert recs[11]["error"] == "no such file"
    assert all("text" in r for i, r in enumerate(recs) if i not in (10, 11))


def test_low_confidence_texts_are_marked_and_counted(cli, world):
    images = sorted((world / "set/images/0000").glob("*.png"))[:6]
    plain = [json.loads(x) for x in cli("infer", "-m", world / "run/best.pt", *images).stdout
             .splitlines()]
    confs = sorted(r["confidence"] for r in plain)
    threshold = (confs[2] + confs[3]) / 2 if confs[2] < confs[3] else confs[3] + 1e-6
    res = cli("infer", "-m", world / "run/best.pt", "--min-confidence", threshold, *images)
    assert res.exit_code == 0
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["text"] for r in recs] == [r["text"] for r in plain]  # nothing dropped
    low = [r.get("low_confidence", False) for r in recs]
    assert low == [r["confidence"] < threshold for r in recs] and any(low)
    assert f"{sum(low)} texts read with confidence below {threshold}" in res.stderr
    assert all("low_confidence" not in r for r, marked in zip(recs, low) if not marked)
    one_line_error(cli("infer", "-m", world / "run/best.pt", "--min-confidence", 1.5,
                       *images), 2, "--min-confidence")


def test_evaluate_reports_how_far_confidence_can_be_trusted(cli, world):
    res = cli("evaluate", world / "run/best.pt", world / "set.lmdb")
    cal = json.loads(res.stdout)["confidence"]
    assert cal["samples"] == 24 and 0 <= cal["ece"] <= 1
    kept = [x["kept"] for x in cal["levels"]]
    assert [x["min_confidence"] for x in cal["levels"]] == [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
    assert kept == sorted(kept, reverse=True)  # a higher threshold never keeps more
    assert cal["accuracy"] == json.loads(res.stdout)["accuracy"]
    assert "calibration error (ECE)" in res.stderr and "wrong texts read with" in res.stderr


def test_evaluate_checks_its_gallery_before_and_prints_results_first(cli, world, tmp_path):
    out = tmp_path / "new" / "sub" / "worst.html"
    res = cli("evaluate", world / "run/best.pt", world / "set.lmdb", "--errors", 3,
              "--errors-out", out, "-q")
    assert res.exit_code == 0 and json.loads(res.stdout)["samples"] == 24
    assert "ocrkit evaluate" in out.read_text(encoding="utf-8")
    assert cli("evaluate", world / "run/best.pt", world / "set.lmdb", "--errors", 3,
               "--errors-out", out, "-q").exit_code == 0  # its own gallery is replaced
    notes = tmp_path / "notes.html"
    notes.write_text("mine")
    res = cli("evaluate", world / "run/best.pt", world / "set.lmdb", "--errors", 3,
              "--errors-out", notes)
    one_line_error(res, 2, "--errors-out", "not an ocrkit gallery")
    assert res.stdout == "" and notes.read_text() == "mine"  # refused before the work


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_training_saves_last_pt_when_stopped_by_a_signal(world, tmp_path, sig, code):
    out = tmp_path / "run"
    args = ["train", "--train", world / "set.lmdb", "-o", out, "--max-steps", 100000,
            "--log-every", 1, "--save-every", 100000, "-q", *TINY]
    proc = subprocess.Popen([sys.executable, "-m", "ocrkit", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        log = out / "metrics.jsonl"
        if log.is_file() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    one_line_error(Proc(subprocess.CompletedProcess(args, proc.returncode, "", stderr)), code,
             "saved", "last.pt", "--resume")
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert load_checkpoint(str(out / "last.pt"))["meta"]["step"] == steps[-1] >= 5
    assert not (out / ".ocrkit.lock").exists()


def test_build_lmdb_interrupted_or_killed_leaves_no_temporary_database(world, tmp_path):
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sorted((world / "set/images/0000").glob("*.png"))[0], data / "a.png")
    os.mkfifo(data / "b.png")  # reading it blocks: the build is caught mid-way
    (data / "gt.txt").write_text("a.png\t天\nb.png\t地\n", encoding="utf-8")
    out = tmp_path / "out.lmdb"

    def temps():
        return [n for n in os.listdir(tmp_path) if n.startswith(".out.lmdb.tmp")]

    for sig, code in ((signal.SIGTERM, 143), (signal.SIGKILL, -9)):
        proc = subprocess.Popen([sys.executable, "-m", "ocrkit", "build-lmdb", str(data),
                                 str(out), "-q"], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not temps() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert temps(), "the build never started"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code and "Traceback" not in err
        if sig == signal.SIGTERM:
            assert temps() == [] and "terminated" in err
    assert len(temps()) == 1  # left by kill -9 ...
    os.remove(data / "b.png")
    shutil.copy(data / "a.png", data / "b.png")
    ocrkit("build-lmdb", data, out, "-q", check=True)
    assert temps() == [] and (out / "data.mdb").is_file()  # ... and removed by the next build


def test_an_interrupted_synth_folder_is_refused_with_how_to_finish_it(cli, world, cp, tmp_path):
    data = cp("set")
    meta = json.loads((data / "meta.json").read_text())
    meta["complete"] = False
    (data / "meta.json").write_text(json.dumps(meta))
    for args in (("build-lmdb", data, tmp_path / "x.lmdb"),
                 ("evaluate", world / "run/best.pt", data),
                 ("train", "--train", data, "-o", tmp_path / "r", "--max-steps", 1, *TINY)):
        one_line_error(cli(*args), 2, "incomplete", "synth --resume --out")
    assert not (tmp_path / "r").exists()
    (data / "meta.json").unlink()  # interrupted before this version wrote meta.json first
    one_line_error(cli("build-lmdb", data, tmp_path / "x.lmdb"), 2, "interrupted", "--overwrite")


# ====================================================================== silent wrong answers
def test_every_image_mode_reads_as_the_same_text(cli, world, tmp_path):
    src = Image.open(sorted((world / "set/images/0000").glob("*.png"))[0]).convert("L")
    a = np.asarray(src)
    rgba = np.zeros((*a.shape, 4), np.uint8)
    rgba[..., 3] = 255 - a  # black ink on a transparent background
    variants = {
        "l.png": src,
        "i16.png": Image.fromarray(a.astype(np.uint16) * 257),
        "i32.tif": Image.fromarray(a.astype(np.int32) * 257),
        "f.tif": Image.fromarray(a.astype(np.float32) / 255),
        "rgba.png": Image.fromarray(rgba),
        "la.png": Image.merge("LA", (src, Image.new("L", src.size, 255))),
    }
    paths = []
    for name, im in variants.items():
        (tmp_path / name).write_bytes(png_bytes(im, "TIFF" if name.endswith("tif") else "PNG"))
        paths.append(tmp_path / name)
    res = cli("infer", "-m", world / "run/best.pt", *paths)
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len({(r["text"], r["confidence"]) for r in recs}) == 1, recs


def test_unknown_label_characters_follow_a_stated_policy(cli, world, tmp_path):
    charset = tmp_path / "dict.txt"
    chars = load_checkpoint(str(world / "run/best.pt"))["charset"]
    charset.write_text("\n".join(chars[:-3]) + "\n", encoding="utf-8")  # 3 characters missing
    base = ["train", "--train", world / "set.lmdb", "--charset", charset, "--max-steps", 1,
            *TINY]
    # Not asked: refused when more than 5 % of the labels would change ...
    one_line_error(cli(*base, "-o", tmp_path / "default"), 2, "labels hold", "more than 5%",
                   "--unknown skip trains anyway")
    assert not (tmp_path / "default").exists()
    # ... asked: trained, and said.
    res = cli(*base, "-o", tmp_path / "skip", "--unknown", "skip")
    assert res.exit_code == 0 and "--unknown skip" in res.stderr and "labels hold" in res.stderr
    one_line_error(cli(*base, "-o", tmp_path / "err", "--unknown", "error"), 2, "outside the charset",
             "--unknown skip", "--replacement")
    one_line_error(cli(*base, "-o", tmp_path / "rep", "--unknown", "replace"), 2, "--replacement")
    res = cli(*base, "-o", tmp_path / "rep2", "--unknown", "replace", "--replacement", chars[0])
    assert res.exit_code == 0 and "trained as" in res.stderr
    assert not (tmp_path / "err").exists() and not (tmp_path / "rep").exists()


def test_evaluate_says_which_samples_it_could_not_use(cli, world, cp):
    data = cp("set")
    lines = (data / "gt.txt").read_text(encoding="utf-8").splitlines()
    (data / lines[0].split("\t")[0]).write_bytes(b"not an image")
    lines.append("broken line without a tab")
    (data / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "labels.jsonl").unlink()  # read gt.txt
    res = cli("evaluate", world / "run/best.pt", data)
    assert res.exit_code == 0
    result = json.loads(res.stdout)
    assert result["samples"] == 23 and result["broken_samples"] == 1
    assert result["malformed_label_lines"] == 1
    assert "1 samples could not be used" in res.stderr and "not an image" in res.stderr
    assert "1 malformed label lines skipped" in res.stderr and "no tab" in res.stderr


def test_gt_txt_bom_tabs_encoding_and_empty_labels(cli, world, tmp_path):
    import shutil

    data = tmp_path / "gt"
    data.mkdir()
    for i, p in enumerate(sorted((world / "set/images/0000").glob("*.png"))[:4]):
        shutil.copy(p, data / f"{i}.png")
    (data / "gt.txt").write_bytes("\ufeff0.png\t天地\n1.png\t玄\t黄\n2.png\t \n3.png\t宇\n"
                                  .encode("utf-8"))
    res = cli("build-lmdb", data, tmp_path / "a.lmdb")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["num_samples"] == 3 and summary["malformed_label_lines"] == 1
    assert summary["empty_labels"] == 1
    assert "gt.txt:2: 2 tabs" in res.stderr and "empty or whitespace" in res.stderr
    from data_tools.lmdb import LmdbReader

    assert list(LmdbReader(str(tmp_path / "a.lmdb")).labels()) == ["天地", " ", "宇"]
    (data / "gt.txt").write_bytes("0.png\t天\n1.png\t".encode() + "地".encode("gbk") + b"\n")
    one_line_error(cli("build-lmdb", data, tmp_path / "b.lmdb"), 2, "gt.txt:2: not UTF-8",
             "column 7", "iconv")


def test_inputs_unlike_the_training_input_are_flagged(cli, world):
    images = sorted((world / "m3/images/0000").glob("*.png"))
    res = cli("infer", "-m", world / "run/best.pt", *images[:2])
    assert res.exit_code == 0
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert all("rows of text" in r["warning"] and "reads one row" in r["warning"] for r in recs)
    assert "2 inputs look unlike" in res.stderr
    line = sorted((world / "set/images/0000").glob("*.png"))[0]
    assert "warning" not in json.loads(cli("infer", "-m", world / "run/best.pt", line).stdout)
    res = cli("evaluate", world / "run/best.pt", world / "m3", "-q")
    assert json.loads(res.stdout)["unlike_training_input"] == 4


def test_resume_refuses_another_model_input_or_kind(cli, world, cp, tmp_path):
    run = cp("run")
    before = snapshot(run)
    base = ["train", "--train", world / "set.lmdb", "-o", run, "--max-steps", 3, "--resume"]
    tiny = list(TINY)
    one_line_error(cli(*base, *tiny[:1], "channels=(8,16,16,16)", *tiny[2:]), 2,
             "--backbone-arg channels", "[8, 16, 16, 32]", "[8, 16, 16, 16]")
    h = tiny.index("--height")
    one_line_error(cli(*base, *tiny[:h + 1], "48", *tiny[h + 2:]), 2, "--height = 32", "48")
    assert snapshot(run) == before


# ====================================================================== one-line errors
def _mount_tmpfs(path, size: str, readonly: bool = False) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "400k"):
        pytest.skip("needs root and tmpfs to fill a disk")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk, leave: int) -> None:
    """Fill ``disk`` until about ``leave`` bytes are free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "ab") as fh:
        fh.write(b"\0" * max(0, free - leave))


def test_full_disk_is_one_line_and_loses_nothing(world, tiny_disk, cjk_font):
    before = snapshot(world)
    res = Proc(ocrkit("synth", "-n", 400, "--rows", 5, "--font", cjk_font, "--out",
                      tiny_disk / "s", "-w", 1, "-q"))
    one_line_error(res, 1, "No space left on device", "synth --resume")
    subprocess.run(["rm", "-rf", str(tiny_disk / "s")], check=True)
    _fill(tiny_disk, 24 << 10)
    res = Proc(ocrkit("build-lmdb", world / "set", tiny_disk / "a.lmdb", "-q"))
    one_line_error(res, 1, "No space left on device", "nothing was replaced")
    assert os.listdir(tiny_disk) == ["filler"]  # no temporary database left
    _fill(tiny_disk, 0)
    res = Proc(ocrkit("train", "--train", world / "set.lmdb", "-o", tiny_disk / "run",
                      "--max-steps", 2, "-q", *TINY))
    one_line_error(res, 1, "No space left on device")
    assert snapshot(world) == before


def test_read_only_targets_are_refused_before_the_work(world, tmp_path):
    ro = tmp_path / "ro"
    if not _mount_tmpfs(ro, "64k", readonly=True):
        pytest.skip("needs root and tmpfs for a read-only file system")
    try:
        for args in (("synth", "-n", 2, "--out", ro / "s"),
                     ("build-lmdb", world / "set", ro / "a.lmdb"),
                     ("train", "--train", world / "set.lmdb", "-o", ro / "r", "--max-steps", 1),
                     ("export", world / "run/best.pt", "-o", ro / "m.onnx"),
                     ("evaluate", world / "run/best.pt", world / "set.lmdb", "--errors", 1,
                      "--errors-out", ro / "e.html")):
            one_line_error(Proc(ocrkit(*args)), 2, "cannot write there", "read-only")
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


@pytest.mark.parametrize("arg, needle", [
    (("--backbone-arg", "channels=abc"), "channels must be 4 positive integers"),
    (("--backbone-arg", "channels=(16,32)"), "channels must be 4 positive integers"),
    (("--sequence-arg", "hidden=0"), "hidden_size must be greater than zero"),
    (("--sequence-arg", "layers=-1"), "num_layers must be greater than zero"),
    (("--backbone-arg", "width_stride=0"), "width_stride must be 4 or 8"),
    (("--backbone-arg", "colour=1"), "unexpected keyword argument 'colour'"),
    (("--lr", "-1"), "--lr"), (("--lr", "nan"), "not a finite number"),
    (("--val-every", "0"), "--val-every"), (("--batch-size", "0"), "--batch-size"),
    (("-w", "-1"), "--workers -1"), (("--warmup", "2"), "--warmup"),
    (("--height", "4"), "at least 8"),
    (("--domain-weight", "handwriting"), "--domain-weight handwriting: give NAME=N"),
])
def test_bad_training_options_are_one_line_usage_errors(cli, world, tmp_path, arg, needle):
    out = tmp_path / "r"
    one_line_error(cli("train", "--train", world / "set.lmdb", "-o", out, "--max-steps", 1, *TINY,
                 *arg), 2, needle)
    assert not out.exists()


def test_bad_evaluate_options_and_exact_limit(cli, world):
    ck, data = world / "run/best.pt", world / "set.lmdb"
    one_line_error(cli("evaluate", ck, data, "-b", 0), 2, "--batch-size")
    one_line_error(cli("evaluate", ck, data, "-w", -1), 2, "--workers -1")
    one_line_error(cli("evaluate", ck, data, "--limit", 0), 2, "--limit")
    res = cli("evaluate", ck, data, "--limit", 5, "-b", 4, "-q")
    assert json.loads(res.stdout)["samples"] == 5
    res = cli("evaluate", ck, data, "-w", 1000, "--limit", 4)
    assert res.exit_code == 0 and "--workers 1000 capped at" in res.stderr


def test_train_without_validation_prints_strict_json(cli, world, tmp_path):
    res = cli("train", "--train", world / "set.lmdb", "-o", tmp_path / "r", "--max-steps", 1,
              "-q", *TINY)
    summary = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert summary["best_metric"] is None


@pytest.mark.parametrize("content, message", [
    (b"", "empty file, not a checkpoint"),
    (b"\x00\x01" + np.random.default_rng(0).bytes(2048), "not a PyTorch checkpoint"),
    (b"hello\n", "not a PyTorch checkpoint"),
    (b"PK\x03\x04 truncated", "a truncated or corrupt checkpoint (its zip archive cannot be read)"),
])
def test_garbage_checkpoints_are_named_for_what_they_are(cli, world, tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    line = one_line_error(cli("evaluate", path, world / "set.lmdb"), 2)
    assert line == f"ocrkit: error: {path}: {message}"  # whole, not cut mid-word


def test_a_recognizer_resume_of_a_denoiser_run_and_wrong_kinds(cli, world, tmp_path):
    import torch

    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.models.denoise import Denoiser

    run = tmp_path / "den"
    run.mkdir()
    net = Denoiser(base=4, depth=2)
    save_checkpoint(str(run / "last.pt"), {
        "kind": "denoiser", "denoiser": net.config(), "input": {"size": [32, 96]},
        "state_dict": net.state_dict(), "train_state": {"step": torch.tensor(1)}})
    one_line_error(cli("train", "--train", world / "set.lmdb", "-o", run, "--resume", "--max-steps", 2,
                 *TINY), 2, "denoiser checkpoint")


def test_quiet_silences_library_warnings(cli, world, monkeypatch):
    import warnings

    import ocrkit.predict as predict

    real = predict.Predictor.__init__

    def noisy(self, *a, **kw):
        warnings.warn("a library says something\nover two lines", UserWarning)
        real(self, *a, **kw)

    monkeypatch.setattr(predict.Predictor, "__init__", noisy)
    with warnings.catch_warnings():
        res = cli("evaluate", world / "run/best.pt", world / "set.lmdb", "-q")
    assert res.exit_code == 0 and res.stderr == ""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        res = cli("evaluate", world / "run/best.pt", world / "set.lmdb", "--limit", 2)
    assert "ocrkit: warning: a library says something over two lines" in res.stderr


def test_skip_reasons_carry_no_python_internals(cli, cp, tmp_path):
    data = cp("set")
    first = (data / "gt.txt").read_text(encoding="utf-8").splitlines()[0].split("\t")[0]
    (data / first).write_bytes(b"GIF89a garbage")
    res = cli("build-lmdb", data, tmp_path / "x.lmdb")
    assert res.exit_code == 0
    assert "skipped 1 bad images" in res.stderr
    assert "0x" not in res.stderr and "<_io" not in res.stderr and "object at" not in res.stderr


def test_export_verify_with_a_bad_sample_image(cli, world, tmp_path):
    samples = tmp_path / "imgs"
    samples.mkdir()
    (samples / "bad.png").write_bytes(b"nope")
    one_line_error(cli("export", world / "run/best.pt", "-o", tmp_path / "m.onnx", "--verify",
                 "--samples", samples), 2, "no readable image")
    assert not (tmp_path / "m.onnx").exists()
    import shutil

    shutil.copy(sorted((world / "set/images/0000").glob("*.png"))[0], samples / "good.png")
    res = cli("export", world / "run/best.pt", "-o", tmp_path / "m.onnx", "--verify",
              "--samples", samples)
    assert res.exit_code == 0 and "skipped 1 unreadable" in res.stderr


# ================================================== round two (issue 24): no hang, no silence
def _sub(*args, timeout: float = 90, **kw) -> Proc:
    """``python -m ocrkit ARGS`` under a timeout (a hang fails the test, never the suite)."""
    try:
        return Proc(ocrkit(*args, timeout=timeout, **kw))
    except subprocess.TimeoutExpired:
        pytest.fail(f"ocrkit {' '.join(map(str, args[:3]))} ... did not end in {timeout} s")


def _labelled(folder, world, labels: list[str], image_bytes: bytes | None = None):
    """A gt.txt folder of the world's images (or ``image_bytes``) with ``labels``."""
    import shutil

    folder.mkdir()
    images = sorted((world / "set/images/0000").glob("*.png"))
    lines = []
    for i, label in enumerate(labels):
        name = f"{i}.png"
        if image_bytes is None:
            shutil.copy(images[i % len(images)], folder / name)
        else:
            (folder / name).write_bytes(image_bytes)
        lines.append(f"{name}\t{label}")
    (folder / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_no_usable_sample_is_refused_before_training_never_a_hang(world, tmp_path):
    charset = tmp_path / "latin.txt"
    charset.write_text("A\nB\nC\n", encoding="utf-8")
    out = tmp_path / "r"
    res = _sub("train", "--train", world / "set.lmdb", "--charset", charset, "-o", out,
               "--max-steps", 5, *TINY, timeout=60)
    one_line_error(res, 2, "no training sample left", "24 of 24 labels",
                   "outside --charset")
    assert not out.exists()
    # A teacher whose charset does not cover the data: the same line, naming the teacher.
    latin = _labelled(tmp_path / "latin", world, ["ABC", "CAB", "BCA", "AAB"])
    res = _sub("distill", "--teacher", world / "run/best.pt", "--train", latin, "-o", out,
               "--max-steps", 5, "-b", 4, "-w", 0, timeout=60)
    one_line_error(res, 2, "no training sample left", "4 of 4", "the teacher's charset")
    assert not out.exists()


def test_an_epoch_of_unusable_batches_is_an_error_not_a_spin(world, tmp_path):
    data = _labelled(tmp_path / "broken", world, ["天地"] * 8, image_bytes=b"not an image")
    out = tmp_path / "r"
    res = _sub("train", "--train", data, "-o", out, "--max-steps", 5, *TINY, timeout=60)
    one_line_error(res, 1, "no usable training sample", "a whole epoch",
                   "not an image")


_SLOW = """
import os, sys, time
phase, marker, args = sys.argv[1], sys.argv[2], sys.argv[3:]
import ocrkit.data.datasets as ds
import ocrkit.train.loop as loop

def touch():  # one line per slow call
    with open(marker, "a") as fh:
        fh.write("x\\n")

if phase == "validation":
    real = ds.FolderDataset.__getitem__
    def slow(self, i):
        touch(); time.sleep(1.0); return real(self, i)
    ds.FolderDataset.__getitem__ = slow
elif phase == "loading":
    real, calls = ds.LmdbDataset.__getitem__, [0]
    def slow(self, i):
        calls[0] += 1
        if calls[0] > 16:
            touch(); time.sleep(0.3)
        return real(self, i)
    ds.LmdbDataset.__getitem__ = slow
elif phase == "saving":
    real = loop.save_checkpoint
    def slow(path, payload):
        touch(); time.sleep(2.0); return real(path, payload)
    loop.save_checkpoint = slow
sys.argv = ["ocrkit", *args]
from ocrkit.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["loading", "validation", "saving"])
def test_sigterm_ends_a_run_within_seconds_at_any_point(world, tmp_path, phase):
    script = tmp_path / "slow.py"
    script.write_text(_SLOW)
    marker, out = tmp_path / "marker", tmp_path / "run"
    tiny = [a if a != "8" else "2" for a in TINY]  # batches of 2: a validation batch is 2 s
    args = ["train", "--train", world / "set.lmdb", "--val", world / "set", "-o", out,
            "--max-steps", 10000, "--val-every", 3, "--save-every", 3, "-q", *tiny]
    proc = subprocess.Popen([sys.executable, str(script), phase, str(marker), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1][-2000:]
    time.sleep(0.3)
    calls = len(marker.read_text().splitlines())
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"SIGTERM during {phase} was ignored")
    took = time.time() - sent
    # Seconds, however loaded the machine: what the run did after the signal is counted
    # too - at most the validation batch in progress (2 images; the whole set is 24) ...
    after = len(marker.read_text().splitlines()) - calls
    if phase == "validation":
        assert after <= 2, f"validation read {after} more images after SIGTERM"
    elif phase == "saving":  # ... and last.pt once (the write in progress may be best.pt)
        assert after <= 1, f"{after} more checkpoint writes after SIGTERM"
    assert took < 30, f"SIGTERM during {phase} took {took:.1f} s to end the run"
    one_line_error(Proc(subprocess.CompletedProcess(args, proc.returncode, "", stderr)), 143,
                   "terminated")
    if "saved" in stderr:
        assert load_checkpoint(str(out / "last.pt"))["meta"]["step"] >= 1
    else:
        assert "nothing to save" in stderr and not (out / "last.pt").exists()
    assert not (out / ".ocrkit.lock").exists()


def test_labels_longer_than_the_frames_are_counted_never_silent(world, tmp_path):
    import torch

    from ocrkit.models.heads.ctc import CTCHead, frames_needed

    # Why it matters: CTC with zero_infinity turns an impossible alignment into loss 0.
    assert frames_needed([3, 3, 4]) == 4 and frames_needed([1, 2, 3]) == 3
    logits = torch.randn(1, 3, 6)
    assert CTCHead().loss(logits, torch.tensor([1, 1, 2]), torch.tensor([3])).item() == 0.0
    # Every label infeasible: refused before training, with the width that fits.
    out = tmp_path / "all"
    res = _sub("train", "--train", world / "set.lmdb", "-o", out, "--max-steps", 5, *TINY,
               "--width", 8, timeout=60)
    one_line_error(res, 2, "no training label fits", "2 CTC frames", "--width 24 would fit")
    assert not out.exists()
    # Some infeasible: a warning with the share, and a count in every logged step.
    data = _labelled(tmp_path / "mixed", world, ["天地"] * 8 + ["天地玄黄宇宙洪荒日月盈昃"] * 8)
    out = tmp_path / "some"
    res = _sub("train", "--train", data, "-o", out, "--max-steps", 4, "--log-every", 1,
               *TINY[:-6], "--height", 32, "--width", 32, "-b", 16, "-w", 0, timeout=60)
    assert res.exit_code == 0, res.stderr
    assert "8 of 16 training labels (50.0 %) need more CTC frames" in res.stderr
    assert "--width 48 would fit" in res.stderr
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["infeasible_samples"] for r in records] == [8, 8, 8, 8]
    assert json.loads(res.stdout)["infeasible_samples"] == 32


def _truncated_and_corrupt(world, tmp_path):
    import shutil

    trunc, bad = tmp_path / "trunc.lmdb", tmp_path / "bad.lmdb"
    shutil.copytree(world / "set.lmdb", trunc)
    shutil.copytree(world / "set.lmdb", bad)
    size = os.path.getsize(trunc / "data.mdb")
    os.truncate(trunc / "data.mdb", size // 3)  # an interrupted copy
    with open(bad / "data.mdb", "r+b") as fh:  # every page but the two meta pages
        fh.seek(8192)
        fh.write(b"\xff" * (size - 8192))
    return trunc, bad


def test_a_truncated_or_corrupt_lmdb_is_one_line_never_sigbus(world, tmp_path):
    trunc, bad = _truncated_and_corrupt(world, tmp_path)
    for db, what in ((trunc, "truncated LMDB"), (bad, "corrupt LMDB")):
        for args in (("stats", db), ("evaluate", world / "run/best.pt", db),
                     ("train", "--train", db, "-o", tmp_path / "r", "--max-steps", 1, *TINY)):
            line = one_line_error(_sub(*args, timeout=60), 2, str(db), what,
                                  "copy it again", "build-lmdb")
            assert "report it" not in line
    assert not (tmp_path / "r").exists()


def test_a_corrupt_page_read_in_a_loader_worker_is_one_line(world, tmp_path):
    import shutil

    db = tmp_path / "bad.lmdb"
    shutil.copytree(world / "set.lmdb", db)
    data = (db / "data.mdb").read_bytes()
    pages = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    page = max(i for i, p in enumerate(pages)  # a leaf of images only, the last one
               if b"image-0" in p and b"label-" not in p and b"num-samples" not in p and b"domain-" not in p)
    with open(db / "data.mdb", "r+b") as fh:
        fh.seek(page * 4096)
        fh.write(b"\xff" * 4096)
    assert _sub("stats", db, "-q").exit_code == 0  # header and labels read fine ...
    res = _sub("evaluate", world / "run/best.pt", db, "-w", 1, "-q", timeout=60)
    line = one_line_error(res, 2, str(db), "corrupt LMDB", "copy it again")  # ... images not
    assert "DataLoader" not in line and "Original Traceback" not in line


def test_distill_refuses_a_teacher_charset_that_misses_the_data_unless_asked(cli, world, tmp_path):
    from ocrkit.checkpoint import save_checkpoint

    chars = load_checkpoint(str(world / "run/best.pt"))["charset"]
    labels = [chars[i % 3] + "ABC" for i in range(8)]  # every label loses 3 characters
    data = _labelled(tmp_path / "latin", world, labels)
    base = ["distill", "--teacher", world / "run/best.pt", "--train", data, "--max-steps", 2,
            "-b", 4, "-w", 0, "-q"]
    one_line_error(cli(*base, "-o", tmp_path / "a"), 2, "8 of 8 labels",
                   "the teacher's charset", "more than 5%", "--unknown skip")
    assert not (tmp_path / "a").exists()
    res = cli(*base, "-o", tmp_path / "b", "--unknown", "skip")
    assert res.exit_code == 0, res.stderr
    # --resume with another teacher: refused, naming both.
    ckpt = load_checkpoint(str(world / "run/best.pt"))
    ckpt["state_dict"] = {k: v + 1 if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    other = tmp_path / "other.pt"
    save_checkpoint(str(other), {k: v for k, v in ckpt.items() if k not in ("format", "version")})
    before = snapshot(tmp_path / "b")
    resumed = [a if a != world / "run/best.pt" else other for a in base]
    line = one_line_error(cli(*resumed, "-o", tmp_path / "b", "--unknown", "skip", "--resume",
                              "--max-steps", 3), 2, "--resume", "distilled from",
                          str(world / "run/best.pt"), str(other))
    assert "sha256" in line and snapshot(tmp_path / "b") == before


def test_resume_takes_the_runs_own_options_and_says_when_the_schedule_changes(cli, world,
                                                                               tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--train", world / "set.lmdb", "-o", out, "--max-steps", 2, "-q",
               *TINY).exit_code == 0
    # No model options, no data: the run's own, from its config.json.
    res = cli("train", "-o", out, "--resume")
    assert res.exit_code == 0, res.stderr
    assert "options not given here are the run's own" in res.stderr
    assert load_checkpoint(str(out / "last.pt"))["meta"]["step"] == 2
    res = cli("train", "-o", out, "--resume", "--max-steps", 4)
    assert res.exit_code == 0, res.stderr
    assert "planned for 2 steps and now runs to 4" in res.stderr
    assert "learning-rate schedule is recomputed" in res.stderr
    assert load_checkpoint(str(out / "last.pt"))["meta"]["step"] == 4
    # A model option given differently: named, never "None".
    line = one_line_error(cli("train", "-o", out, "--resume", "--max-steps", 5,
                              "--backbone-arg", "width_stride=4"), 2,
                          "--backbone-arg channels", "does not give it")
    assert "None" not in line


def test_a_full_disk_or_file_size_limit_while_saving_replaces_nothing(world, tmp_path):
    import resource
    import shutil

    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    before = snapshot(run / "last.pt")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    res = _sub("train", "--train", world / "set.lmdb", "-o", run, "--resume", "--max-steps", 3,
               "-q", *TINY, preexec_fn=limit, timeout=60)
    line = one_line_error(res, 1, "File too large", "while writing", "last.pt",
                          "nothing was replaced")
    assert "enforce fail" not in line and "unexpected" not in line
    assert snapshot(run / "last.pt") == before
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_unknown_replace_without_a_replacement_says_it_is_needed(cli, world, tmp_path):
    line = one_line_error(cli("train", "--train", world / "set.lmdb", "-o", tmp_path / "r",
                              "--max-steps", 1, "--unknown", "replace", *TINY), 2,
                          "--unknown replace needs --replacement")
    assert "None" not in line and not (tmp_path / "r").exists()


def test_config_keys_that_name_no_option_are_warned_about(cli, world, tmp_path):
    config = json.loads((world / "run/config.json").read_text())
    config["options"]["lrr"] = 0.5
    config["options"]["max_step"] = 3
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    res = cli("train", "--config", path, "-o", tmp_path / "r", "--max-steps", 1, "-q")
    assert res.exit_code == 0, res.stderr
    assert "'lrr' is not an option of this command" in res.stderr and "'lr' (--lr)" in res.stderr
    assert "'max_step' is not an option" in res.stderr and "--max-steps" in res.stderr


def test_non_positive_component_sizes_are_plain_usage_errors(cli, world, tmp_path):
    res = cli("train", "--train", world / "set.lmdb", "-o", tmp_path / "r", "--max-steps", 1,
              "--head", "lightformer", "--neck", "tokens", "--sequence", "none",
              "--head-arg", "d_model=0", *TINY[:2], "-b", 4, "-w", 0)
    line = one_line_error(res, 2, "d_model=0", "must be an integer >= 1")
    assert "division" not in line and "warning" not in res.stderr


def test_row_attention_with_every_other_option_at_its_default_trains(cli, world, tmp_path):
    out = tmp_path / "r"
    res = cli("train", "--train", world / "m3", "-o", out, "--rows", 3, "--neck",
              "row-attention", "--max-steps", 1, "-b", 4, "-w", 0)
    assert res.exit_code == 0, res.stderr
    assert "variant=column" in res.stderr and "variant=full would need" in res.stderr
    spec = load_checkpoint(str(out / "best.pt"))["spec"]
    assert spec["neck"]["args"]["variant"] == "column"
    # A variant that fits is the paper's full one, and an explicit choice is kept.
    small = ["--height", 48, "--width", 32, "--backbone-arg", "channels=(8,16,16,16)"]
    res = cli("train", "--train", world / "m3", "-o", tmp_path / "f", "--rows", 3, "--neck",
              "row-attention", "--max-steps", 1, "-b", 4, "-w", 0, "-q", *small)
    assert res.exit_code == 0, res.stderr
    assert load_checkpoint(str(tmp_path / "f/best.pt"))["spec"]["neck"]["args"]["variant"] == "full"


# ============================== round two (issue 24): items 8, 9, 10 and 13
MULTIROW = ["--rows", "3", "--height", "96", "--width", "96", "--neck", "multirow-stretch",
            "--backbone-arg", "channels=(8,16,16,32)", "--sequence-arg", "hidden=16",
            "--sequence-arg", "layers=1", "-b", "4", "-w", "0"]


@pytest.fixture(scope="module")
def mrun(world, tmp_path_factory):
    """A 3-row model trained one step on world/m3 (96x96 inputs)."""
    from ocrkit.cli import cli

    out = tmp_path_factory.mktemp("mrun") / "run"
    res = CliRunner().invoke(cli, ["train", "--train", str(world / "m3"), "-o", str(out),
                                   "--max-steps", "1", "-q", *MULTIROW], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out / "best.pt"


def _records(res) -> list[dict]:
    return [json.loads(line) for line in res.stdout.splitlines()]


# ============================================================ 8: export --verify's JSON
def test_a_failed_export_verify_says_so_on_stdout_too(cli, world, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"a good, verified model")
    res = cli("export", world / "run/best.pt", "-o", target, "--overwrite", "--verify",
              "--tolerance", "-1")
    one_line_error(res, 1, "--verify", "was not written")
    out = json.loads(res.stdout)
    # texts agree; only the logits are beyond --tolerance: the JSON must not read as success
    assert out["verify"]["texts_match"] is True and out["verify"]["within_tolerance"] is False
    assert out["ok"] is False and out["written"] is False and out["verified"] is False
    assert "was not written" in out["error"] and out["verify"]["tolerance"] == -1
    assert target.read_bytes() == b"a good, verified model"
    res = cli("export", world / "run/best.pt", "-o", target, "--overwrite", "--verify")
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["ok"] is True and out["written"] is True
    assert out["verified"] is True and out["verify"]["within_tolerance"] is True
    assert "error" not in out
    res = cli("export", world / "run/best.pt", "-o", tmp_path / "plain.onnx")
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["written"] is True and out["verified"] is None


# ============================================================ 9: synth folders and sizes
def test_synth_into_an_interrupted_folder_offers_resume(cli, tmp_path, cjk_font, monkeypatch):
    import data_tools.synth.generate as generate

    out, whole = tmp_path / "s", tmp_path / "whole"

    def synth(where, *more):
        return cli("synth", "-n", 6, "--seed", 2, "--charset-size", 12, "--font", cjk_font,
                   "--out", where, "-w", 1, *more)

    render, calls = generate.render_range, []

    def interrupted(bounds):
        calls.append(bounds)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the first chunk
        return render(bounds)

    monkeypatch.setattr(generate, "CHUNK", 2)
    monkeypatch.setattr(generate, "render_range", interrupted)
    one_line_error(synth(out, "-q"), 130, "incomplete", "synth --resume --out")
    monkeypatch.setattr(generate, "render_range", render)
    assert json.loads((out / "meta.json").read_text())["complete"] is False
    before = snapshot(out)
    line = one_line_error(synth(out), 2, "interrupted", f"ocrkit synth --resume --out {out}",
                          "--overwrite")
    assert line.index("--resume") < line.index("--overwrite")  # finishing it comes first
    assert snapshot(out) == before
    # The advice works: --resume finishes it, the same bytes as an uninterrupted run.
    assert cli("synth", "--resume", "--out", out, "-q").exit_code == 0
    assert synth(whole, "-q").exit_code == 0
    assert (out / "labels.jsonl").read_bytes() == (whole / "labels.jsonl").read_bytes()
    # A folder that --resume cannot finish (no saved settings) is told only --overwrite.
    meta = json.loads((whole / "meta.json").read_text())
    meta["complete"] = False
    (whole / "meta.json").write_text(json.dumps(meta))
    line = one_line_error(synth(whole), 2, "cannot be resumed", "--overwrite")
    assert "synth --resume" not in line


@pytest.mark.parametrize("size, needles", [
    (("--width", 60000, "--height", 60000), ("--width 60000 --height 60000",
                                             "3,600,000,000 pixels", "100,000,000")),
    (("--width", 70000), ("--width 70000", "at most 65500 px")),
    (("--height", 70000, "--rows", 100), ("--height 70000", "at most 65500 px")),
    (("--cols", 3000), ("--cols 3000", "75012 px wide", "at most 65500 px")),
    (("--rows", 3, "--cols", 100, "--height", 2000), ("--cols 100", "pixels", "100,000,000")),
    (("--cols", 0, "--width", 100), ("--cols 0", "at least 1")),
    (("--min-cols", 0), ("--min-cols 0", "at least 1")),
])
def test_synth_refuses_sizes_it_cannot_write_before_any_work(cli, tmp_path, cjk_font, size,
                                                              needles):
    out = tmp_path / "big"
    one_line_error(cli("synth", "-n", 1, *size, "--font", cjk_font, "--out", out, "-w", 1),
                   2, "bad size", *needles)
    assert not out.exists()


# ============================================================ 10: no input, odd inputs
def test_infer_without_any_input_image_is_a_usage_error(cli, world, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("infer", "-m", world / "run/best.pt", empty)
    one_line_error(res, 2, "no input image found in", str(empty), ".png")
    assert res.stdout == ""
    (empty / "notes.txt").write_text("not an image")
    one_line_error(cli("infer", "-m", world / "run/best.pt", empty), 2, "no input image")
    for stdin in ("", "\n\n"):
        res = cli("infer", "-m", world / "run/best.pt", "-", input=stdin)
        one_line_error(res, 2, "no input image", "stdin")
        assert res.stdout == ""
    den = tmp_path / "den.pt"
    _tiny_denoiser(den)
    res = cli("denoise", "-m", den, empty, "-o", tmp_path / "clean")
    one_line_error(res, 2, "no input image found in")
    assert not (tmp_path / "clean").exists()
    # Inputs that exist as arguments are still read (and a missing one is a record).
    line = sorted((world / "set/images/0000").glob("*.png"))[0]
    res = cli("infer", "-m", world / "run/best.pt", empty, line)
    assert res.exit_code == 0 and len(_records(res)) == 1


def _tiny_denoiser(path) -> None:
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.models.denoise import Denoiser

    net = Denoiser(base=4, depth=2)
    save_checkpoint(str(path), {"kind": "denoiser", "denoiser": net.config(),
                                "input": {"size": [32, 96]}, "state_dict": net.state_dict()})


def test_degenerate_images_are_flagged_and_ordinary_lines_are_not(cli, world, tmp_path):
    lines = sorted((world / "set/images/0000").glob("*.png"))
    Image.new("L", (1, 1), 255).save(tmp_path / "dot.png")
    Image.new("L", (200, 5), 255).save(tmp_path / "strip.png")
    res = cli("infer", "-m", world / "run/best.pt", tmp_path / "dot.png", tmp_path / "strip.png",
              *lines)
    assert res.exit_code == 0
    recs = _records(res)
    assert recs[0]["warning"].startswith("1x1 image is too small to hold a character")
    assert recs[1]["warning"].startswith("200x5 image is too small to hold a character")
    assert all("warning" not in r for r in recs[2:])  # the model's own kind: no warning
    assert "2 inputs look unlike" in res.stderr


def test_a_line_given_to_a_multirow_model_is_flagged(cli, world, mrun, tmp_path):
    line = sorted((world / "set/images/0000").glob("*.png"))[0]
    with Image.open(line) as im:
        assert im.size == (112, 32)
        im.crop((0, 0, 60, 32)).save(tmp_path / "short.png")  # two characters, 60x32
    pages = sorted((world / "m3/images/0000").glob("*.png"))
    res = cli("infer", "-m", mrun, tmp_path / "short.png", line, *pages)
    assert res.exit_code == 0
    recs = _records(res)
    for rec in recs[:2]:
        assert "one line of text" in rec["warning"] and "96x96 images of 3 rows" in rec["warning"]
    assert all("warning" not in r for r in recs[2:])  # its own training images: no warning
    assert "2 inputs look unlike" in res.stderr


def test_evaluate_says_when_the_data_holds_more_rows_than_the_model_reads(cli, world, mrun,
                                                                         tmp_path, cjk_font):
    wide = tmp_path / "wide3"  # 3 rows of 8 characters: wider than high, unlike world/m3
    assert cli("synth", "-n", 4, "--seed", 5, "--rows", 3, "--cols", 8, "--charset-size", 12,
               "--font", cjk_font, "--out", wide, "-w", 1, "-q").exit_code == 0
    res = cli("evaluate", world / "run/best.pt", wide)
    assert res.exit_code == 0 and json.loads(res.stdout)["samples"] == 4
    notes = [ln for ln in res.stderr.splitlines() if "rows of text" in ln]
    assert len(notes) == 1, res.stderr
    assert "4 of 4 samples hold 3 rows of text; this model reads one row" in notes[0]
    assert "--rows 3" in notes[0]
    res = cli("evaluate", world / "run/best.pt", wide, "-q")
    assert res.exit_code == 0 and res.stderr == ""
    # The model's own kind: nothing said about rows.
    for ckpt, data in ((world / "run/best.pt", world / "set.lmdb"), (mrun, world / "m3")):
        res = cli("evaluate", ckpt, data)
        assert res.exit_code == 0 and "rows of text" not in res.stderr, res.stderr


# ============================================================ 13: shared options
RUNS_A_MODEL = {"train", "distill", "train-emu", "train-denoiser", "evaluate", "infer", "denoise",
                "export", "demo"}


def test_every_subcommand_has_quiet_and_debug_and_device_where_it_runs_a_model():
    import click

    from ocrkit.cli import COMMANDS, cli

    ctx = click.Context(cli)
    assert RUNS_A_MODEL <= set(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        flags = {flag for p in command.params for flag in p.opts}
        assert {"-q", "--quiet", "--debug"} <= flags, name
        if name in RUNS_A_MODEL:
            assert "--device" in flags, name


def test_quiet_is_accepted_and_silences_export_denoise_fonts_and_list(cli, world, tmp_path,
                                                                      cjk_font):
    samples = tmp_path / "imgs"
    samples.mkdir()
    (samples / "bad.png").write_bytes(b"nope")
    (samples / "good.png").write_bytes(
        sorted((world / "set/images/0000").glob("*.png"))[0].read_bytes())
    args = ("export", world / "run/best.pt", "-o", tmp_path / "m.onnx", "--verify", "--samples",
            samples, "--device", "cpu")
    res = cli(*args)
    assert res.exit_code == 0 and "skipped 1 unreadable" in res.stderr
    res = cli(*args, "--overwrite", "-q")
    assert res.exit_code == 0 and res.stderr == "" and json.loads(res.stdout)["ok"] is True
    one_line_error(cli(*args, "--overwrite", "--device", "tpu"), 2, "--device tpu")
    den = tmp_path / "den.pt"
    _tiny_denoiser(den)
    res = cli("denoise", "-m", den, samples / "good.png", "-o", tmp_path / "clean", "-q",
              "--device", "cpu")
    assert res.exit_code == 0 and res.stderr == ""
    res = cli("fonts", "--font", cjk_font, "--no-system-fonts", "-q")
    assert res.exit_code == 0 and res.stderr == "" and json.loads(res.stdout.splitlines()[0])
    res = cli("list", "-q")
    assert res.exit_code == 0 and res.stderr == ""


@pytest.mark.slow
def test_debug_after_the_subcommand_shows_the_traceback(world, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"hello\n")
    one_line_error(Proc(ocrkit("evaluate", bad, world / "set.lmdb")), 2, "not a PyTorch checkpoint")
    for args in (("evaluate", bad, world / "set.lmdb", "--debug"),
                 ("evaluate", "--debug", bad, world / "set.lmdb"),
                 ("--debug", "evaluate", bad, world / "set.lmdb"),
                 ("info", bad, "--debug")):
        res = ocrkit(*args)
        assert res.returncode == 1 and "Traceback" in res.stderr, args
        assert "UsageError: " in res.stderr and "not a PyTorch checkpoint" in res.stderr
    res = ocrkit("list", "--debug", "--json")
    assert res.returncode == 0 and res.stdout  # a flag like any other when nothing fails
