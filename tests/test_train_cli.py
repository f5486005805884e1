"""End to end from the CLI: train -> best/last -> evaluate -> infer -> export; resume
after SIGKILL; torchrun DDP on CPU; a pip-installed plugin backbone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ocrkit.checkpoint import load_checkpoint
from conftest import free_port

TINY = ["--backbone-arg", "channels=(8,16,16,32)", "--sequence-arg", "hidden=16",
        "--sequence-arg", "layers=1", "--height", "32", "--width", "112", "-b", "8", "-w", "0"]


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory, cjk_font):
    from click.testing import CliRunner

    from ocrkit.cli import cli

    root = tmp_path_factory.mktemp("e2e")
    run = CliRunner().invoke
    for name, seed, n in (("train", 1, 48), ("val", 2, 16)):
        res = run(cli, ["synth", "-n", n, "--seed", seed, "--cols", 4, "--charset-size", 12,
                        "--font", cjk_font, "--out", str(root / name), "-w", 1, "-q"])
        assert res.exit_code == 0, res.output
        res = run(cli, ["build-lmdb", str(root / name), str(root / f"{name}.lmdb"), "-q"])
        assert res.exit_code == 0, res.output
    return root


def ocrkit(*args, env=None, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "ocrkit", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def test_amp_on_a_cpu_trains_in_bfloat16_and_keeps_float32_weights(cli, lmdbs, tmp_path,
                                                                   monkeypatch):
    import torch

    from ocrkit.train.loop import autocast_dtype

    seen = []

    class Spy(torch.autocast):
        def __init__(self, device_type, dtype=None, enabled=True, **kw):
            seen.append((device_type, dtype, enabled))
            super().__init__(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(torch, "autocast", Spy)
    for flag, out in (("--amp", tmp_path / "amp"), ("--no-amp", tmp_path / "fp32")):
        res = cli("train", "--train", lmdbs / "train.lmdb", "-o", out, "--max-steps", 2,
                  "--device", "cpu", flag, "-q", *TINY)
        assert res.exit_code == 0, res.output
    assert seen[:2] == [("cpu", torch.bfloat16, True)] * 2  # the two --amp steps
    assert all(not enabled for _, _, enabled in seen[2:])  # --no-amp: float32
    weights = load_checkpoint(str(tmp_path / "amp/best.pt"))["state_dict"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    assert autocast_dtype(torch.device("cpu")) == torch.bfloat16


def test_train_evaluate_infer_export_chain(cli, lmdbs, tmp_path):
    out = tmp_path / "run"
    res = cli("train", "--train", lmdbs / "train.lmdb", "--val", lmdbs / "val.lmdb", "-o", out,
              "--max-steps", 6, "--val-every", 3, "--save-every", 3, "--val-limit", 5, "-b", 4,
              "-q", *TINY)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["steps"] == 6
    for name in ("best.pt", "last.pt", "metrics.jsonl", "curve.png", "config.json"):
        assert (out / name).is_file(), name
    last = load_checkpoint(str(out / "last.pt"))
    assert last["meta"]["step"] == 6 and "train_state" in last
    assert "train_state" not in load_checkpoint(str(out / "best.pt"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val" in r] == [3, 6]
    assert {r["val"]["samples"] for r in records if "val" in r} == {5}  # exactly, not batches

    res = cli("evaluate", out / "best.pt", lmdbs / "val.lmdb", "--errors", 3,
              "--errors-out", tmp_path / "worst.html")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    for key in ("clp", "ilp", "accuracy", "one_minus_ned", "cer", "wer", "ed1_accuracy"):
        assert key in metrics and isinstance(metrics[key], float)
    assert metrics["samples"] == 16 and "clp" in res.stderr
    assert "<table>" in (tmp_path / "worst.html").read_text(encoding="utf-8")

    images = sorted((lmdbs / "val" / "images" / "0000").glob("*.png"))[:3]
    stdin = "\n".join(map(str, [images[0], images[1], tmp_path / "missing.png", images[2]]))
    res = cli("infer", "-m", out / "best.pt", "-", input=stdin + "\n")
    assert res.exit_code == 1
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(recs) == 4 and recs[2] == {"path": str(tmp_path / "missing.png"),
                                          "error": "no such file"}
    assert all({"path", "text", "confidence"} <= set(r) for i, r in enumerate(recs) if i != 2)

    res = cli("export", out / "best.pt", "--format", "onnx", "-o", tmp_path / "m.onnx",
              "--verify", "--samples", lmdbs / "val.lmdb")
    assert res.exit_code == 0, res.output
    verify = json.loads(res.stdout)["verify"]
    assert verify["texts_match"] and verify["max_abs_diff"] < 1e-3
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["ocrkit_charset"]) == last["charset"]
    assert json.loads(meta["ocrkit_input"])["height"] == 32


def test_infer_into_head_prints_no_traceback(lmdbs, tmp_path, cli):
    out = tmp_path / "run"
    assert cli("train", "--train", lmdbs / "train.lmdb", "-o", out, "--max-steps", 1, "-q",
               *TINY).exit_code == 0
    proc = subprocess.run(f"{sys.executable} -m ocrkit infer -m {out / 'best.pt'} "
                          f"{lmdbs / 'train' / 'images'} | head -n 1", shell=True,
                          capture_output=True, text=True)
    assert len(proc.stdout.splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_sigkill_then_resume_finishes_like_an_uninterrupted_run(lmdbs, tmp_path):
    args = ["train", "--train", lmdbs / "train.lmdb", "--val", lmdbs / "val.lmdb",
            "--max-steps", 40, "--save-every", 4, "--val-every", 40, "--seed", 3, "-q", *TINY]
    reference = json.loads(ocrkit(*args, "-o", tmp_path / "ref").stdout)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ocrkit", *map(str, args), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            step = load_checkpoint(str(out / "last.pt"))["meta"]["step"]
        except Exception:  # noqa: BLE001 - not written yet, or mid-rename
            step = 0
        if 8 <= step < 40:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= step < 40, f"could not catch the run mid-way (step {step})"
    resumed = json.loads(ocrkit(*args, "-o", out, "--resume").stdout)
    assert resumed["steps"] == reference["steps"] == 40
    a, b = resumed["last_val"], reference["last_val"]
    assert abs(a["cer"] - b["cer"]) <= 0.1, (a, b)
    losses = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in losses) == 40


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(lmdbs, tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", free_port(), "-m", "ocrkit", "train", "--train", str(lmdbs / "train.lmdb"),
         "--val", str(lmdbs / "val.lmdb"), "-o", str(out), "--max-steps", "3", "--device", "cpu",
         "-q", *TINY], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = load_checkpoint(str(out / "last.pt"))["meta"]
    assert meta["world_size"] == 2 and meta["step"] == 3
    assert len([line for line in proc.stdout.splitlines() if line.startswith("{")]) == 1


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    os.path.join(repo, "plugins", "ocrkit-tinycnn")], check=True)
    # A broken plugin and one that clashes with a built-in name, as installed metadata.
    for name, line in (("brokenplug", "bad-net = brokenplug_missing_module:factory"),
                       ("clashplug", "vgg-small = clashplug:factory")):
        info = target / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[ocrkit.backbones]\n{line}\n")
    return str(target)


@pytest.mark.slow
def test_plugin_backbone_lists_and_trains(plugin_path, lmdbs, tmp_path):
    env = {"PYTHONPATH": plugin_path}
    listing = ocrkit("list", "backbones", env=env).stdout
    assert "tiny-cnn" in listing and "ocrkit-tinycnn 0.1.0  ok" in listing
    assert "bad-net" in listing and "broken: ModuleNotFoundError" in listing
    res = ocrkit("train", "--train", lmdbs / "train.lmdb", "-o", tmp_path / "tiny",
                 "--backbone", "tiny-cnn", "--backbone-arg", "width=8", "--max-steps", 2, "-q",
                 *TINY[2:], env=env)
    assert json.loads(res.stdout)["steps"] == 2
    spec = load_checkpoint(str(tmp_path / "tiny" / "best.pt"))["spec"]
    # the checkpoint names the distribution that supplied the component
    assert spec["backbone"] == {"name": "tiny-cnn", "args": {"width": 8},
                                "dist": "ocrkit-tinycnn", "version": "0.1.0"}
    # A broken plugin never breaks other commands; a clash names both distributions.
    assert ocrkit("synth", "--help", env=env).returncode == 0
    clash = ocrkit("train", "--train", lmdbs / "train.lmdb", "-o", tmp_path / "c",
                   "--max-steps", 1, env=env, check=False)
    assert clash.returncode == 2 and "ocrkit 0.1.0 and clashplug 0.1" in clash.stderr
    hidden = ocrkit("list", "backbones", env={**env, "OCRKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}).stdout
    assert "tiny-cnn" not in hidden and "vgg-small" in hidden


def test_unknown_backbone_is_usage_error(lmdbs, tmp_path, cli):
    res = cli("train", "--train", lmdbs / "train.lmdb", "-o", tmp_path / "x", "--max-steps", 1,
              "--backbone", "resnet-31")
    assert res.exit_code == 2 and "Did you mean resnet31" in res.stderr


def test_demo_held_out_choices_are_the_pip_font_designs():
    # the CLI keeps its own copy (importing data_tools.synth would slow `ocrkit --help`)
    from data_tools.synth.fonts import PIP_FONT_PACKAGES
    from ocrkit.cli.demo import HELD_OUT

    assert HELD_OUT == tuple(design for _, _, design in PIP_FONT_PACKAGES)


@pytest.mark.slow
def test_demo_chain_prints_final_json_last(tmp_path):
    out = tmp_path / "demo"
    proc = ocrkit("demo", "--out", out, "--train-images", 48, "--test-images", 8,
                  "--val-images", 8, "--steps", 3, "--charset-size", 12, "-q")
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["train_steps"] == 3 and final["test_images"] == 8
    assert final["held_out"] == "design: sans-wqy" and "clp" in final["training_fonts"]
    assert {"clp", "ilp", "cer", "one_minus_ned"} <= set(final)
    assert (out / "run" / "best.pt").is_file() and (out / "train.lmdb" / "data.mdb").is_file()
    # A second run replaces its own earlier demo; a foreign folder is refused.
    again = ocrkit("demo", "--out", out, "--train-images", 48, "--test-images", 8,
                   "--val-images", 8, "--steps", 1, "--charset-size", 12, "--held-out", "serif",
                   "-q")
    assert json.loads(again.stdout.strip().splitlines()[-1])["held_out"] == "design: serif"
    fonts = [json.loads(line)["font"] for line in open(out / "train" / "labels.jsonl")]
    assert not [f for f in fonts if "Serif" in f] and len(set(fonts)) == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    res = ocrkit("demo", "--out", foreign, "-q", check=False)
    assert res.returncode == 2 and (foreign / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
@pytest.mark.parametrize("task, head", [("scene-en", "ctc"), ("handwriting-en", "attention")])
def test_english_demo_trains_rgb_and_tests_on_held_out_families(tmp_path, task, head):
    from ocrkit.demo import HELD_OUT_FAMILIES

    out = tmp_path / "demo"
    proc = ocrkit("demo", "--task", task, "--head", head, "--out", out, "--train-images", 48,
                  "--test-images", 8, "--val-images", 8, "--steps", 3, "-q")
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["task"] == task and final["protocol"] == "lower-alnum"
    assert final["charset_size"] == 134 and "accuracy" in final["exact"]
    held = set(HELD_OUT_FAMILIES[task])
    families = lambda split: {json.loads(line)["font"] for line in  # noqa: E731
                              open(out / split / "labels.jsonl")}
    assert all(any(f.startswith(h) for h in held) for f in families("test"))
    assert not any(f.startswith(h) for f in families("train") for h in held)
    records = [json.loads(line) for line in open(out / "train" / "labels.jsonl")]
    assert {r["domain"] for r in records} == {task.split("-")[0]}
    assert len(open(out / "val" / "labels.jsonl").readlines()) == 8  # --val-images
    from ocrkit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(str(out / "run" / "best.pt"))
    assert ckpt["input"]["channels"] == 3 and len(ckpt["charset"]) == 134
    assert ckpt["spec"]["head"]["name"] == head
    if head == "attention":  # the longest word the task draws
        assert ckpt["spec"]["head"]["args"]["max_length"] == 20
    # what docs/unified.md's router and distillation commands read
    for name in ("train.lmdb", "val.lmdb", "test.lmdb"):
        assert (out / name / "data.mdb").is_file(), name
    assert json.loads((out / "demo.json").read_text())["config"]["head"] == head


def test_english_demo_refuses_the_chinese_demo_options(tmp_path):
    res = ocrkit("demo", "--task", "scene-en", "--charset-size", 50, "--out", tmp_path / "d",
                 check=False)
    assert res.returncode == 2 and "--charset-size is for --task zh" in res.stderr
    assert not (tmp_path / "d").exists()
