"""EMU multi-hot classifier (Li et al. 2022): faithful tests (METHODS.md §2) and the
train-emu / info / evaluate / export chain from the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ocrkit.models.classifiers.multihot import (
    MultiHotClassifier,
    code_report,
    pack_codes,
    popcount_scores,
    scaled_tanh,
    sign_codes,
    storage_bytes,
    unpack_codes,
)


def _clf(**kw) -> MultiHotClassifier:
    torch.manual_seed(0)
    return MultiHotClassifier(in_channels=16, num_classes=kw.pop("n", 30), bits=kw.pop("bits", 64),
                              **kw)


def test_beta_is_at_least_one_for_any_input():
    clf = _clf()
    for scale in (1e-3, 1.0, 1e3, 1e6):
        x = torch.randn(64, 16) * scale
        beta = clf.beta(x)
        assert beta.shape == (64, 1)
        assert bool((beta >= 1).all())
    with torch.no_grad():  # a beta-net pushed hard negative still gives 1
        clf.beta_net[-1].bias.fill_(-1e4)
    assert torch.equal(clf.beta(torch.randn(8, 16)), torch.ones(8, 1))


def test_beta_net_reads_detached_features():
    clf = _clf()
    x = torch.randn(4, 16, requires_grad=True)
    clf.beta(x).sum().backward()
    assert x.grad is None  # footnote 3: no gradient from the beta-net into h_t
    assert clf.beta_net[0].weight.grad is not None


def _trained_forward(clf, s=2, t=5):
    clf.train()
    x = torch.randn(s, t, 16)
    return clf(x), x


def test_regulariser_is_zero_with_zero_gradient_when_beta_reaches_beta_hat():
    clf = _clf()
    _trained_forward(clf)
    # loss 1e3 -> beta_hat = mu / loss = 1e-3 < 1 <= beta everywhere
    aux = clf.aux_loss(torch.full((2,), 1e3))
    assert float(aux["emu_reg"].detach()) == 0.0 and float(aux["beta_below_hat"]) == 0.0
    aux["emu_reg"].backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0.0
               for p in clf.beta_net.parameters())


def test_regulariser_is_minus_lambda_beta_below_beta_hat_and_reaches_only_the_beta_net():
    clf = _clf(lam=0.5)
    logits, _ = _trained_forward(clf)
    beta = clf._beta.detach().reshape(2, -1)
    aux = clf.aux_loss(torch.full((2,), 1e-6))  # beta_hat = 1e6 > beta everywhere
    assert float(aux["beta_below_hat"]) == 1.0
    assert math.isclose(float(aux["emu_reg"].detach()), -0.5 * float(beta.mean()), rel_tol=1e-6)
    aux["emu_reg"].backward()
    assert float(clf.beta_net[-1].bias.grad.abs()) > 0
    assert clf.proj.weight.grad is None and clf.classnet[0].weight.grad is None
    # one sequence below, one above: only the first one's frames count
    clf.zero_grad()
    _trained_forward(clf)
    beta = clf._beta.detach().reshape(2, -1)
    aux = clf.aux_loss(torch.tensor([1e-6, 1e6]))
    assert math.isclose(float(aux["emu_reg"].detach()), -0.5 * float(beta[0].sum()) / beta.numel(),
                        rel_tol=1e-6)


def test_ema_of_the_class_code_sharpness_follows_eq_15():
    clf = _clf(gamma=0.9)
    assert float(clf.beta_prime) == 1.0  # beta'(0) = 1
    expected = 1.0
    for _ in range(3):
        _trained_forward(clf)
        mean = float(clf._beta.detach().mean())
        clf.aux_loss(torch.ones(2))
        expected = 0.9 * expected + 0.1 * mean
        assert math.isclose(float(clf.beta_prime), expected, rel_tol=1e-6)


def test_schedule_mode_uses_the_papers_beta_without_the_beta_net():
    clf = _clf(beta_mode="schedule")
    assert clf.beta_net is None
    for i in range(3):
        _trained_forward(clf)
        assert torch.allclose(clf._beta, torch.full_like(clf._beta, (1 + 0.5 * i) ** 0.5))
        clf.aux_loss(torch.ones(2))
    assert math.isclose(float(clf.beta_prime), (1 + 0.5 * 3) ** 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("mode", ["literal", "exact"])
def test_replaced_gradients_equal_eq_17_and_exact_ones_eq_16(mode):
    torch.manual_seed(1)
    x = torch.randn(3, 4, 8, requires_grad=True)
    beta = (torch.rand(3, 4, 1) * 5 + 1).requires_grad_()
    g = torch.randn(3, 4, 8)
    y = scaled_tanh(x, beta, mode)
    assert torch.allclose(y, torch.tanh(beta * x))
    y.backward(g)
    xd, bd = x.detach(), beta.detach()
    if mode == "literal":  # Eq. 17: 1 - tanh^2(x) and 1 - tanh^2(beta), no beta or x factor
        gx = g * (1 - torch.tanh(xd) ** 2)
        gb = (g * (1 - torch.tanh(bd) ** 2)).sum(-1, keepdim=True)
    else:  # Eq. 16
        slope = 1 - torch.tanh(bd * xd) ** 2
        gx, gb = g * slope * bd, (g * slope * xd).sum(-1, keepdim=True)
    assert torch.allclose(x.grad, gx, atol=1e-6)
    assert torch.allclose(beta.grad, gb, atol=1e-5)


def _hand_classifier(scale=20.0):
    """K = 8 bits, 3 classes, d = 4, every weight chosen by hand: P (the projection),
    ClassNet (identity embedding, ReLU, then the raw codes as its output layer's
    columns), a beta-net that gives beta = 2 everywhere, and beta' = 1.5."""
    clf = MultiHotClassifier(in_channels=4, num_classes=3, bits=8, scale=scale,
                             classnet_hidden=3)
    P = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                      [1, -1, 0, 0], [0, 0, 1, 1], [0.5, 0.5, -0.5, 0], [0, 0, 0, 0]])
    codes = torch.tensor([[0.5, -1.0, 2.0, -0.3, 1.0, 0.2, -2.0, 0.7],
                          [-1.5, 0.4, 0.9, 1.2, -0.6, -1.1, 0.3, -0.2],
                          [0.1, 0.8, -0.4, -2.5, 1.6, 0.6, -0.9, 1.3]])
    with torch.no_grad():
        clf.proj.weight.copy_(P)
        clf.classnet[0].weight.copy_(torch.eye(3))
        clf.classnet[2].weight.copy_(codes.t())
        clf.classnet[2].bias.zero_()
        clf.beta_net[0].weight.zero_()
        clf.beta_net[0].bias.zero_()
        clf.beta_net[2].weight.zero_()
        clf.beta_net[2].bias.fill_(math.log(math.e - 1))  # softplus = 1: beta = 2
        clf.beta_prime.fill_(1.5)
    h = torch.tensor([[[0.3, -0.2, 0.8, -0.5], [-1.0, 0.4, 0.1, 0.6]]])  # [1, 2 frames, d]
    return clf, h, P.double().numpy(), codes.double().numpy()


def test_training_and_evaluation_logits_pinned_on_a_hand_case():
    clf, h, P, codes = _hand_classifier()
    x = h[0].double().numpy()
    z = x @ P.T  # P^T h per frame, [2, 8]
    b = np.tanh(2.0 * z)  # beta = 2 for the frames
    c = np.tanh(1.5 * codes)  # beta' = 1.5 for the class codes
    cos = (b / np.linalg.norm(b, axis=1, keepdims=True)) @ (
        c / np.linalg.norm(c, axis=1, keepdims=True)).T
    clf.train()
    got = clf(h)
    assert torch.equal(clf._beta, torch.full((1, 2, 1), 2.0))
    assert got.shape == (1, 2, 3)
    assert np.allclose(got[0].detach().double().numpy(), 20.0 * cos, atol=1e-5)  # Eq. 12
    assert float(np.abs(20.0 * cos).max()) > 5  # the scale matters here
    # evaluation: sign codes (sign(0) = +1: the zero row of P), s * (K - 2 Hamming) / K
    clf.eval()
    sign_b = np.where(z >= 0, 1.0, -1.0)
    assert (z[:, 7] == 0).all() and (sign_b[:, 7] == 1).all()
    sign_c = np.where(codes >= 0, 1.0, -1.0)
    with torch.no_grad():
        inference = clf(h)[0].double().numpy()
    assert np.allclose(inference, 20.0 * (sign_b @ sign_c.T) / 8, atol=1e-6)
    assert np.allclose(inference * 8 / 20, 8 - 2 * (sign_b[:, None] != sign_c[None]).sum(-1))


def test_the_scale_multiplies_the_cosine():
    low, h, _, _ = _hand_classifier(scale=2.0)
    high, _, _, _ = _hand_classifier(scale=20.0)
    low.train(), high.train()
    assert torch.allclose(high(h), 10 * low(h), atol=1e-5)


def test_sign_of_zero_is_plus_one_and_packing_round_trips():
    z = torch.tensor([[0.0, -0.0, 1e-9, -1e-9, 3.0, -2.0, 0.0, 0.5]])
    assert sign_codes(z).tolist() == [[1, 1, 1, -1, 1, -1, 1, 1]]
    packed = pack_codes(z)
    assert packed.dtype == torch.uint8 and packed.shape == (1, 1)
    assert packed.numpy().tolist() == np.packbits(z.numpy() >= 0, axis=-1).tolist()
    codes = sign_codes(torch.randn(7, 64))
    assert torch.equal(unpack_codes(pack_codes(codes)), codes)


@pytest.mark.parametrize("bits", [64, 72])  # 64-bit words, and bytes
def test_popcount_scores_equal_the_float_inner_product_with_the_same_argmax(bits):
    torch.manual_seed(2)
    frames = torch.randn(50, bits)
    frames[:, :4] = 0.0  # exact zeros: sign(0) = +1 on both paths
    codes = sign_codes(torch.randn(300, bits))
    float_scores = sign_codes(frames) @ codes.t()
    pop = popcount_scores(pack_codes(frames).numpy(), pack_codes(codes).numpy())
    assert np.array_equal(pop, float_scores.numpy().astype(np.int32))
    assert np.array_equal(pop.argmax(1), float_scores.argmax(1).numpy())


def test_evaluation_scores_equal_the_packed_deployable_form_on_both_scoring_paths():
    clf = _clf(n=40)
    clf.eval()
    x = torch.randn(3, 9, 16)
    with torch.no_grad():
        want = clf(x)
    for scoring in ("float", "popcount"):
        packed = MultiHotClassifier(in_channels=16, num_classes=40, bits=64, packed=True,
                                    scoring=scoring)
        packed.load_state_dict(clf.finalized_state())
        packed.eval()
        assert set(packed.state_dict()) == {"proj.weight", "codebook"}
        with torch.no_grad():
            assert torch.allclose(packed(x), want)
    # scores are s * (K - 2 Hamming) / K, the binary limit of s * cos: K - 2H is even
    inner = want * 64 / 20
    assert torch.allclose(inner, inner.round(), atol=1e-4)
    assert bool((inner.round() % 2 == 0).all()) and float(inner.abs().max()) <= 64


@pytest.mark.parametrize("embed_map", ["proj", "linear"])
def test_output_embedding_maps_the_sign_codes_and_survives_packing(embed_map):
    torch.manual_seed(0)
    clf = MultiHotClassifier(in_channels=16, num_classes=40, bits=64, embed_map=embed_map)
    codes = sign_codes(clf.class_logits_raw().detach())
    weight = clf.proj.weight / 8 if embed_map == "proj" else clf.embed_map.weight.t()
    clf.train()
    table = clf.embedding_table()
    assert table.shape == (40, 16)
    assert torch.allclose(table, codes @ weight, atol=1e-6)
    table.sum().backward()  # the map learns from the embedding; ClassNet does not
    learner = clf.proj if embed_map == "proj" else clf.embed_map
    assert learner.weight.grad is not None and learner.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in clf.classnet.parameters())
    state = clf.finalized_state()
    assert ("embed_map.weight" in state) == (embed_map == "linear")
    packed = MultiHotClassifier(in_channels=16, num_classes=40, bits=64, packed=True,
                                embed_map=embed_map)
    packed.load_state_dict(state)
    packed.eval()
    clf.eval()
    with torch.no_grad():
        assert torch.allclose(packed.embedding_table(), clf.embedding_table(), atol=1e-6)


def test_storage_matches_the_formula_and_table_vi():
    mib = 2 ** 20
    for k, want in ((128, 0.222), (256, 0.444), (512, 0.889), (1024, 1.778)):
        s = storage_bytes(k, 6372, 256)
        assert round(s["emu"] / mib, 3) == want
        assert math.isclose(s["ratio"], k / 6372 + k / (8 * 4 * 256))
    assert round(storage_bytes(512, 6372, 256)["softmax"] / mib, 2) == 6.22
    # §IV-C's example: N = 20000, d = 512, K = 256 -> 1.11 MiB (the paper prints 1.72 MB)
    assert round(storage_bytes(256, 20000, 512)["emu"] / mib, 2) == 1.11
    clf = _clf(n=6372, bits=512)
    state = clf.finalized_state()
    size = sum(t.numel() * t.element_size() for t in state.values())
    assert size == storage_bytes(512, 6372, 16)["emu"]


def test_code_report_finds_duplicate_codes():
    codes = sign_codes(torch.randn(5, 64))
    assert code_report(codes)["duplicate_pairs"] == 0
    codes[3] = codes[1]
    report = code_report(codes)
    assert report["duplicate_pairs"] == 1 and report["min_hamming"] == 0


def test_bad_arguments_are_refused():
    for kw in ({"bits": 12}, {"grad": "ste"}, {"beta_mode": "x"}, {"gamma": 1.0},
               {"scoring": "gpu"}, {"embed_map": "own"}):
        with pytest.raises(ValueError):
            _clf(**kw)


# ------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def emu_run(tmp_path_factory, cjk_font):
    from click.testing import CliRunner

    from ocrkit.cli import cli

    root = tmp_path_factory.mktemp("emu")
    runner = CliRunner()
    data = root / "s1"
    res = runner.invoke(cli, ["synth", "--rows", "1", "--cols", "6", "-n", "40", "--seed", "3",
                              "--font", cjk_font, "--out", str(data), "-w", "1", "-q"])
    assert res.exit_code == 0, res.output
    out = root / "run"
    res = runner.invoke(cli, ["train-emu", "--train", str(data), "--val", str(data), "-o",
                              str(out), "--max-steps", "6", "--val-every", "3", "-b", "8",
                              "--bits", "64", "-w", "0", "-q", "--sequence-arg", "hidden=16",
                              "--backbone-arg", "channels=(8,8,16,16)", "--height", "32",
                              "--width", "96", "--no-augment"])
    assert res.exit_code == 0, res.output
    return data, out, json.loads(res.stdout.strip().splitlines()[-1])


def test_train_emu_logs_every_term_and_deploys_the_packed_codebook(emu_run):
    from ocrkit.checkpoint import load_checkpoint

    data, out, summary = emu_run
    assert summary["codes"]["bits"] == 64 and summary["codes"]["min_hamming"] >= 0
    records = [json.loads(line) for line in open(out / "metrics.jsonl") if '"terms"' in line]
    assert records and set(records[-1]["terms"]) >= {"ctc", "emu_reg", "beta", "beta_prime"}
    best = load_checkpoint(str(out / "best.pt"))
    assert best["spec"]["classifier"]["name"] == "multihot"
    assert best["spec"]["classifier"]["args"]["packed"] is True
    keys = [k for k in best["state_dict"] if k.startswith("classifier.")]
    assert sorted(keys) == ["classifier.codebook", "classifier.proj.weight"]
    n = len(best["charset"]) + 1
    assert tuple(best["state_dict"]["classifier.codebook"].shape) == (n, 8)
    last = load_checkpoint(str(out / "last.pt"))
    net = last["train_state"]["net"]
    assert any(k.startswith("classifier.classnet.") for k in net)
    assert any(k.startswith("classifier.beta_net.") for k in net)
    assert last["train_state"]["identity"]["spec"]["classifier"]["args"].get("packed") is None


def test_info_reports_bytes_per_part_and_the_formula_it_matches(emu_run, cli):
    _, out, _ = emu_run
    res = cli("info", out / "best.pt", "-q")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    emu = info["emu"]
    assert emu["packed"] and emu["classifier_bytes"] == emu["formula_bytes"]
    assert emu["formula_bytes"] == storage_bytes(64, emu["N"], emu["d"])["emu"]
    assert info["tensor_bytes"] == sum(p["bytes"] for p in info["parts"].values())
    n, d = emu["N"], emu["d"]
    assert emu["model_bytes_with_softmax"] == \
        info["tensor_bytes"] - emu["classifier_bytes"] + 4 * n * d + 4 * n
    # the file is its tensors plus a small header (spec, charset, zip entries)
    assert info["tensor_bytes"] < info["file_bytes"] < info["tensor_bytes"] + 64 * 1024


def test_evaluate_reads_the_deployed_model_as_training_validated_it(emu_run, cli):
    data, out, summary = emu_run
    res = cli("evaluate", out / "best.pt", data, "-q")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert math.isclose(result["clp"], summary["best_metric"], abs_tol=1e-9)


def test_export_verifies_an_emu_model(emu_run, cli):
    pytest.importorskip("onnxruntime")
    _, out, _ = emu_run
    res = cli("export", out / "best.pt", "-o", out / "m.onnx", "--verify")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["verify"]["texts_match"] is True


def test_resume_with_other_bits_is_refused_in_one_line(emu_run, cli):
    from tests.conftest import one_line_error

    data, out, _ = emu_run
    res = cli("train-emu", "--train", data, "-o", out, "--max-steps", "8", "-b", "8",
              "--bits", "128", "-w", "0", "-q", "--resume", "--sequence-arg", "hidden=16",
              "--backbone-arg", "channels=(8,8,16,16)", "--height", "32", "--width", "96")
    one_line_error(res, 2, "--bits", "64", "128")


def test_an_embedding_map_without_a_decoder_to_read_it_is_refused_in_one_line(emu_run,
                                                                             tmp_path, cli):
    from tests.conftest import one_line_error

    data, _, _ = emu_run
    out = tmp_path / "ctc-map"
    res = cli("train-emu", "--train", data, "-o", out, "--max-steps", "2", "-b", "8",
              "--bits", "16", "-w", "0", "-q", "--embed-map", "linear",
              "--sequence-arg", "hidden=16", "--backbone-arg", "channels=(8,8,16,16)",
              "--height", "32", "--width", "96")
    one_line_error(res, 2, "embed_map=linear", "'ctc'")
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()


@pytest.mark.slow
def test_torchrun_two_processes_share_one_beta_prime(emu_run, tmp_path):
    import subprocess
    import sys

    from ocrkit.checkpoint import load_checkpoint
    from tests.conftest import free_port

    data, _, _ = emu_run
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", free_port(), "-m", "ocrkit", "train-emu", "--train", str(data),
         "-o", str(out), "--max-steps", "3", "--device", "cpu", "-q", "-b", "4", "-w", "0",
         "--bits", "64", "--gamma", "0.5", "--sequence-arg", "hidden=16", "--log-every", "1",
         "--backbone-arg", "channels=(8,8,16,16)", "--height", "32", "--width", "96"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = load_checkpoint(str(out / "last.pt"))
    assert last["meta"]["world_size"] == 2
    beta_prime = float(last["train_state"]["net"]["classifier.beta_prime"])
    assert beta_prime > 1.0  # three EMA steps towards batch means of beta >= 1
    # one EMA step per training step, towards each step's (all-reduced) batch mean
    records = [json.loads(line) for line in open(out / "metrics.jsonl") if '"terms"' in line]
    assert len(records) == 3
    expected = 1.0
    for rec in records:
        expected = 0.5 * expected + 0.5 * rec["terms"]["beta"]
        assert rec["terms"]["beta_prime"] == pytest.approx(expected, abs=1e-4)
    assert beta_prime == pytest.approx(expected, abs=1e-4)


DDP_BETA_PRIME = """
import json, os, sys
import torch
import torch.distributed as dist
from torch import nn
from ocrkit.models.classifiers.multihot import MultiHotClassifier

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)  # the same classifier on both ranks
clf = MultiHotClassifier(in_channels=16, num_classes=5, bits=8, gamma=0.5)
ddp = nn.parallel.DistributedDataParallel(clf)
ddp.train()
g = torch.Generator().manual_seed(10 + rank)
local, prime = [], []
for step in range(2):
    # each rank its own batch, far apart: the ranks' batch-mean beta differ
    x = torch.randn(2, 3, 16, generator=g) * (0.1 if rank == 0 else 30.0)
    logits = ddp(x)
    local.append(float(clf._beta.detach().mean()))
    aux = clf.aux_loss(torch.ones(2))
    (logits.square().mean() + aux["emu_reg"]).backward()
    prime.append(float(clf.beta_prime))
out = [None, None]
dist.all_gather_object(out, {"local": local, "prime": prime})
if rank == 0:
    with open(sys.argv[1], "w") as fh:
        json.dump(out, fh)
dist.barrier()
# Leave without tearing gloo down: its teardown at exit sometimes aborts a process
# ("terminate called without an active exception"), which says nothing about beta'.
os._exit(0)
"""


@pytest.mark.slow
def test_beta_prime_is_all_reduced_over_ranks_that_see_different_batches(tmp_path):
    """Eq. 15 under DDP: each step's batch mean of beta is averaged over the ranks before
    the EMA, so beta' is one value on every rank, that of the two ranks' mean."""
    import subprocess
    import sys

    from tests.conftest import free_port

    script = tmp_path / "ddp_beta.py"
    script.write_text(DDP_BETA_PRIME)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", free_port(), str(script), str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads((tmp_path / "out.json").read_text())
    expected = 1.0
    for step in range(2):
        means = [r["local"][step] for r in ranks]
        assert abs(means[0] - means[1]) > 0.05  # a missing all-reduce would show
        expected = 0.5 * expected + 0.5 * sum(means) / 2
        for r in ranks:
            assert r["prime"][step] == pytest.approx(expected, rel=1e-6)


def test_distill_learns_from_an_emu_teacher_and_refuses_an_emu_student(emu_run, tmp_path, cli):
    from tests.conftest import one_line_error

    data, out, _ = emu_run
    common = ["distill", "--teacher", out / "best.pt", "--train", data, "--max-steps", "2",
              "-b", "8", "-w", "0", "-q", "--no-augment"]
    res = cli(*common, "-o", tmp_path / "s", "--classifier", "linear")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["steps"] == 2
    res = cli(*common, "-o", tmp_path / "e")  # the half preset keeps the teacher's classifier
    one_line_error(res, 2, "EMU", "--classifier linear")
    assert not (tmp_path / "e").exists()


def test_beta_mean_under_ctc_counts_only_frames_that_see_the_image():
    """Eq. 15's batch mean is over valid positions: under CTC, the frames of a padded
    batch that see the image (a narrow line padded to a wide one adds frames of padding)."""
    from PIL import Image

    from ocrkit.charset import Charset
    from ocrkit.data.batch import Collate, InputSpec, frame_mask
    from ocrkit.data.datasets import Sample
    from ocrkit.methods.supervised import SupervisedCTC
    from ocrkit.models.recognizer import Recognizer, make_spec

    charset = Charset(list("abcdef"))
    spec = make_spec("vgg-small", "cap", "bilstm", "multihot", "ctc",
                     backbone_args={"channels": (4, 8, 8, 16)},
                     sequence_args={"hidden": 8, "layers": 1}, classifier_args={"bits": 16})
    torch.manual_seed(0)
    model = Recognizer(spec, charset.num_classes).train()
    collate = Collate(InputSpec(height=32, width=128), charset, width="batch")
    batch = collate([Sample(Image.new("L", (40, 32), 255), ["ab"], "narrow"),
                     Sample(Image.new("L", (128, 32), 255), ["abcdef"], "wide")])
    assert batch["widths"].tolist() == [40, 128] and batch["images"].shape[-1] == 128
    out = SupervisedCTC(charset).loss(model, batch, torch.device("cpu"))
    beta = model.classifier._beta.reshape(2, -1)
    mask = frame_mask(batch["widths"], 128, beta.shape[1])
    assert not mask.all()  # the narrow line's padding frames exist ...
    expected = (beta * mask).sum() / mask.sum()
    assert out.terms["beta"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.terms["beta"].item() != pytest.approx(beta.mean().item(), rel=1e-6)  # ... and are left out
