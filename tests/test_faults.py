"""Fault injection from the CLI: every case of the reliability catalogue (issue 9).

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
from PIL import Image

from conftest import one_line_error
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
    from ocrkit.models.denoise import Denoiser
    from ocrkit.checkpoint import save_checkpoint

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
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.lmdb").exists()
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
    res = cli(*base, "-o", tmp_path / "skip")
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
