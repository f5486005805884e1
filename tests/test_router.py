"""The HTR/STR router (Text is Text, supplement §C(iii)): its size and measured cost,
`ocrkit train-router` on the shared loop, and routed `infer` / `evaluate`.

The data are trivially separable on purpose: "handwriting" is dark ink on light grey
paper, "scene" is coloured noise. The specialists are tiny recognizers whose
classifier is fixed to always read one text ("a" for handwriting, "b" for scene, the
labels of their own domain), so a routed reading is right exactly when the sample
went to its own domain's specialist."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import one_line_error
from ocrkit.checkpoint import load_checkpoint, save_checkpoint
from ocrkit.models.router import Router, count_macs, router_cost

READS = {"handwriting": "a", "scene": "b"}


def _mixed(folder, n: int, seed: int, domains=("handwriting", "scene")) -> None:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        domain = domains[i % len(domains)]
        w = int(rng.integers(40, 90))
        if domain == "handwriting":
            im = Image.new("L", (w, 24), int(rng.integers(215, 245)))
            ImageDraw.Draw(im).line([(3, 12), (w - 3, int(rng.integers(4, 20)))], fill=25,
                                    width=2)
        else:
            im = Image.fromarray(rng.integers(0, 256, (24, w, 3), np.uint8))
        im.save(folder / f"{i:03d}.png")
        lines.append(json.dumps({"image": f"{i:03d}.png", "rows": [READS.get(domain, "c")],
                                 "domain": domain}))
    (folder / "labels.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _reader(path, text: str, channels: int) -> None:
    """A tiny CTC recognizer that reads ``text`` (one character) from any image."""
    from ocrkit.models.recognizer import Recognizer, make_spec

    torch.manual_seed(0)
    spec = make_spec("vgg-small", "cap", "bilstm", "linear", "ctc",
                     backbone_args={"channels": (4, 4, 8, 8)},
                     sequence_args={"hidden": 4, "layers": 1}, in_channels=channels)
    chars = ["a", "b"]
    model = Recognizer(spec, len(chars) + 1, input_size=(32, 64))
    fc = model.classifier.fc
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
        fc.bias[1 + chars.index(text)] = 10.0
    save_checkpoint(str(path), {
        "spec": model.spec, "charset": chars, "state_dict": model.state_dict(),
        "input": {"height": 32, "width": 64, "policy": "keep-ratio", "channels": channels,
                  "mean": 0.5, "std": 0.5, "rows": 1}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Mixed train/val folders, one-domain and domain-less folders, the two readers and a
    router trained from the CLI for a few steps."""
    from click.testing import CliRunner

    from ocrkit.cli import cli

    root = tmp_path_factory.mktemp("router")
    _mixed(root / "train", 32, 0)
    _mixed(root / "val", 12, 1)
    _mixed(root / "scene", 8, 2, domains=("scene",))
    _mixed(root / "print", 4, 3, domains=("print",))
    plain = root / "plain"  # gt.txt: no domain recorded
    plain.mkdir()
    Image.new("L", (40, 24), 230).save(plain / "x.png")
    (plain / "gt.txt").write_text("x.png\ta\n", encoding="utf-8")
    _reader(root / "hw.pt", "a", channels=1)
    _reader(root / "scene.pt", "b", channels=3)
    res = CliRunner().invoke(cli, ["train-router", "--train", str(root / "train"), "--val",
                                   str(root / "val"), "-o", str(root / "run"), "--max-steps",
                                   "16", "-b", "8", "--val-every", "4", "--log-every", "2",
                                   "-w", "0", "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (root / "summary.json").write_text(res.stdout, encoding="utf-8")
    return root


# ------------------------------------------------------------------------- model
def test_router_has_the_supplements_size_and_a_measured_cost():
    model = Router(["handwriting", "scene"])
    params = sum(p.numel() for p in model.parameters())
    # 3x3 convolutions 3->128->128->128 (298,752), BatchNorm (768), linear 128->2 (258)
    assert params == 299_778 and abs(params - 0.3e6) < 0.01e6
    cost = count_macs(model, (3, 84, 84))
    # 84 -> conv/2 42 -> pool 21 -> conv/2 11 -> pool 5 -> conv 5 (module docstring)
    assert cost["layers"] == {"block1.0": 42 * 42 * 128 * 27, "block2.0": 11 * 11 * 128 * 1152,
                              "block3.0": 5 * 5 * 128 * 1152, "fc": 128 * 2}
    assert cost["macs"] == 27_625_216 and cost["flops"] == 2 * cost["macs"]
    assert round(cost["macs"] / 1e9, 2) == 0.03  # the supplement's "0.03 GFlops"
    assert router_cost(model) == {"parameters": params, "macs": cost["macs"],
                                  "flops": cost["flops"], "input": [84, 84, 3]}
    from torch.utils.flop_counter import FlopCounterMode  # torch's own count agrees

    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 84, 84))
    assert counter.get_total_flops() == cost["flops"]
    assert model(torch.zeros(5, 3, 84, 84)).shape == (5, 2)


# ------------------------------------------------------------------------- training
def test_train_router_learns_two_domains_in_a_few_steps(world, cli):
    summary = json.loads((world / "summary.json").read_text(encoding="utf-8"))
    assert summary["domains"] == ["handwriting", "scene"] and summary["steps"] == 16
    assert summary["parameters"] == 299_778 and summary["macs"] == 27_625_216
    assert summary["best_metric"] == 1.0 and summary["last_val"]["accuracy"] >= 0.9
    records = [json.loads(line) for line in
               (world / "run/metrics.jsonl").read_text().splitlines()]
    losses = [r["terms"]["ce"] for r in records if "terms" in r]
    assert len(losses) == 8 and losses[-1] < 0.2 < losses[0]  # from chance (ln 2) down
    best = [r["val"] for r in records if "val" in r and r["step"] == summary["best_step"]][0]
    assert best["confusion"] == {"handwriting": {"handwriting": 6, "scene": 0},
                                 "scene": {"handwriting": 0, "scene": 6}}
    best = load_checkpoint(str(world / "run/best.pt"))
    assert best["kind"] == "router" and "charset" not in best and "train_state" not in best
    assert best["router"] == {"domains": ["handwriting", "scene"], "hidden": 128}
    assert best["input"]["height"] == best["input"]["width"] == 84
    assert best["input"]["channels"] == 3 and best["input"]["policy"] == "stretch"
    res = cli("info", world / "run/best.pt", "-q")
    info = json.loads(res.stdout)
    assert info["kind"] == "router" and info["router"]["domains"] == ["handwriting", "scene"]
    assert info["router"]["macs"] == 27_625_216 and set(info["parts"]) == {
        "block1", "block2", "block3", "fc"}


def test_train_router_resumes_and_refuses_another_size(world, cli, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    res = cli("train-router", "-o", run, "--resume", "--max-steps", 18, "-q")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 18
    assert load_checkpoint(str(run / "last.pt"))["meta"]["step"] == 18
    one_line_error(cli("train-router", "-o", run, "--resume", "--max-steps", 20, "--hidden", 16),
                   2, "--hidden 128", "--hidden 16")


def test_train_router_needs_two_domains_recorded_on_every_sample(world, cli, tmp_path):
    args = ("-o", tmp_path / "r", "--max-steps", 1, "-w", 0)
    one_line_error(cli("train-router", "--train", world / "scene", *args), 2,
                   "one domain (scene: 8)", "at least two")
    one_line_error(cli("train-router", "--train", world / "train", "--train", world / "plain",
                       *args), 2, "1 of 33 training samples record no domain")
    one_line_error(cli("train-router", "--train", world / "train", "--val", world / "print",
                       *args), 2, "print: 4", "handwriting, scene")
    assert not (tmp_path / "r").exists()  # refused before the run folder stays behind


# ------------------------------------------------------------------------- routing
def test_routed_evaluate_reads_each_sample_with_its_domains_specialist(world, cli):
    res = cli("evaluate", "--router", world / "run/best.pt", "-m", f"htr={world / 'hw.pt'}",
              "--model", f"scene={world / 'scene.pt'}", world / "val", "-w", 0)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["samples"] == 12 and out["accuracy"] == 1.0
    assert out["router"]["accuracy"] == 1.0 and out["router"]["samples"] == 12
    assert out["routed_to"] == {"handwriting": 6, "scene": 6}
    assert out["specialists"] == {"handwriting": str(world / "hw.pt"),
                                  "scene": str(world / "scene.pt")}
    assert out["oracle_routing"]["accuracy"] == 1.0
    hw = out["per_domain"]["handwriting"]
    assert hw["accuracy"] == 1.0 and hw["router_accuracy"] == 1.0
    assert hw["routed_to"] == {"handwriting": 6, "scene": 0}
    assert "router accuracy 1.0000" in res.stderr and "per domain" in res.stderr


def test_routed_evaluate_scores_the_router_against_the_recorded_domains(world, cli,
                                                                          monkeypatch):
    """A router that sends everything to the scene specialist: half the samples are
    misrouted, read wrong, and a perfect router would have read them right."""
    from ocrkit.routing import RouterPredictor

    monkeypatch.setattr(RouterPredictor, "route",
                        lambda self, images: (["scene"] * len(images), [0.75] * len(images)))
    res = cli("evaluate", "--router", world / "run/best.pt", "-m", f"str={world / 'scene.pt'}",
              "-m", f"handwriting={world / 'hw.pt'}", world / "val", world / "print", "-w", 0,
              "-q")
    out = json.loads(res.stdout)
    assert out["samples"] == 16 and out["accuracy"] == 6 / 16  # the scene samples only
    router = out["router"]
    assert router["accuracy"] == 0.5 and router["samples"] == 12  # print is not scored
    assert router["unscored"] == 4 and router["unscored_domains"] == {"print": 4}
    assert router["confusion"]["handwriting"] == {"handwriting": 0, "scene": 6}
    assert router["per_domain"] == {"handwriting": 0.0, "scene": 1.0}
    assert router["balanced_accuracy"] == 0.5
    assert out["oracle_routing"] == {**out["oracle_routing"], "samples": 12, "accuracy": 1.0}
    assert out["per_domain"]["handwriting"]["accuracy"] == 0.0
    assert out["per_domain"]["print"]["router_accuracy"] is None
    assert out["per_domain"]["print"]["routed_to"] == {"handwriting": 0, "scene": 4}


def test_plain_evaluate_of_mixed_data_reports_per_domain_metrics(world, cli):
    res = cli("evaluate", world / "hw.pt", world / "val", "-w", 0, "-q")
    out = json.loads(res.stdout)
    assert out["accuracy"] == 0.5 and "router" not in out
    assert {d: m["accuracy"] for d, m in out["per_domain"].items()} == {
        "handwriting": 1.0, "scene": 0.0}
    one_domain = json.loads(cli("evaluate", world / "hw.pt", world / "scene", "-w", 0,
                                "-q").stdout)
    assert "per_domain" not in one_domain


def test_routed_infer_adds_the_route_and_its_probability(world, cli):
    images = sorted((world / "val").glob("*.png"))[:4]  # handwriting, scene, ...
    res = cli("infer", "--router", world / "run/best.pt", "-m", f"htr={world / 'hw.pt'}",
              "-m", f"str={world / 'scene.pt'}", *images, world / "missing.png")
    assert res.exit_code == 1  # the missing file: an error record, the rest read
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r.get("route") for r in recs] == ["handwriting", "scene"] * 2 + [None]
    assert [r.get("text") for r in recs[:4]] == ["a", "b", "a", "b"]
    assert all(0.5 < r["route_probability"] <= 1.0 for r in recs[:4])
    assert set(recs[0]) == {"path", "text", "confidence", "route", "route_probability"}
    assert recs[4]["error"] == "no such file"
    plain = json.loads(cli("infer", "-m", world / "hw.pt", images[0]).stdout)
    assert set(plain) == {"path", "text", "confidence"}  # unchanged without --router


def test_wrong_kinds_and_names_are_one_line_errors(world, cli):
    router, hw, scene = world / "run/best.pt", world / "hw.pt", world / "scene.pt"
    image = sorted((world / "val").glob("*.png"))[0]
    one_line_error(cli("infer", "-m", router, image), 2,
                   "is a router checkpoint, expected a recognizer", "--router")
    one_line_error(cli("evaluate", router, world / "val"), 2,
                   "is a router checkpoint, expected a recognizer")
    one_line_error(cli("infer", "--router", hw, "-m", f"htr={hw}", "-m", f"str={scene}", image),
                   2, "is a recognizer checkpoint, expected a router")
    routed = ("--router", router)
    one_line_error(cli("infer", *routed, "-m", f"print={hw}", "-m", f"str={scene}", image), 2,
                   "'print' is no domain", "handwriting, scene")
    one_line_error(cli("evaluate", *routed, "-m", f"htr={hw}", world / "val"), 2,
                   "no --model for scene")
    one_line_error(cli("infer", *routed, "-m", f"htr={hw}", "-m", f"handwriting={hw}",
                       "-m", f"str={scene}", image), 2, "both name the router's domain")
    one_line_error(cli("evaluate", *routed, "-m", hw, world / "val"), 2, "NAME=CKPT",
                   "handwriting, scene")
    one_line_error(cli("evaluate", *routed, world / "val"), 2, "--router needs")
    one_line_error(cli("infer", "-m", hw, "-m", scene, image), 2, "need --router")
