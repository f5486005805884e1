"""EMU (Li et al. 2022): sizes, classifier time, and accuracy against softmax.

``sizes`` (seconds): Table VI's size column, softmax ``r*N*d`` against EMU
``r*K*d + N*K/8`` at K = 128 ... 1024, N = 6,372, d = 256, and the same at
N = 6,623 and 20,000; every EMU figure is also the byte count of a real
deployable classifier's tensors. Then Table IV's model sizes for Light-Former on
MobileNetV3-small (NoFFN+PS and the multi-hot classifier on or off, English N = 37)
and Table V's (N = 6,372).

``time`` (a minute): classifier time per frame on this CPU for d = 256, N = 6,372
and 20,000, K = 512: softmax (a linear layer), EMU float (projection, sign, a
+-1 matrix product) and EMU popcount (projection, sign, packed XOR + popcount).

``accuracy`` (hours on 2 cores): a large character set rendered by `ocrkit synth`
(``--charset-size``, single rows), four models trained one after another with the
same steps: softmax CRNN vs EMU CRNN (CTC), Light-Former vs Light-Former-EMU.
Every run keeps its best checkpoint by a validation set of its own (another synth
seed, never trained on); the held-out test lines are read once per run, by
``ocrkit evaluate`` on that checkpoint. ``--seeds 0,1,2`` trains each model with
each seed (initialisation and batch order; the data stay the same) and reports the
mean 1-NED and accuracy with their min-max, and model MiB (``ocrkit info``).

``select`` chooses Light-Former settings without the test set: it trains each
candidate (``--candidates``; by default the softmax decoder with and without the
auxiliary CTC loss, and Light-Former-EMU through P or a K x d map, K = 384 or 512,
with and without it) at the first seed, reads each best checkpoint's 1-NED on the
validation set, and marks the winner of each decoder; its last line gives the
winners as ``accuracy`` options, with which ``accuracy`` runs them at every seed
(reusing their first-seed runs).

    python bench/emu_bench.py sizes
    python bench/emu_bench.py time
    python bench/emu_bench.py accuracy --out /tmp/emu-bench [--steps 3000] [--seeds 0,1,2]
        [--models "CRNN softmax,CRNN EMU"] [--lf-size 32x256] [--lf-lr 5e-4]
        [--lf-ctc-weight 0.3] [--lf-encoder paper|crnn] [--lf-embed-map proj|linear]
        [--lf-bits 384] [--lf-softmax-ctc-weight 0.5]
    python bench/emu_bench.py select --out /tmp/emu-bench --lf-encoder crnn [--steps 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrkit.models.classifiers.multihot import (MultiHotClassifier,  # noqa: E402
                                                storage_bytes)
# bench/ is on the path when this runs as a script
from stages import amp_flags, speed_options, spread  # noqa: E402

MIB = 2 ** 20
PAPER_VI = {128: 0.22, 256: 0.45, 512: 0.89, 1024: 1.78}  # Table VI, "MB"


def _tensor_bytes(state: dict) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def sizes() -> list[dict]:
    rows = []
    for n in (6372, 6623, 20000):
        softmax = storage_bytes(8, n, 256)["softmax"]
        rows.append({"N": n, "classifier": "softmax", "K": None,
                     "MiB": round(softmax / MIB, 3), "paper": 6.2 if n == 6372 else None})
        for k in (128, 256, 512, 1024):
            clf = MultiHotClassifier(in_channels=256, num_classes=n, bits=k)
            real = _tensor_bytes(clf.finalized_state())
            formula = storage_bytes(k, n, 256)
            assert real == formula["emu"], (real, formula)
            rows.append({"N": n, "classifier": "EMU", "K": k, "MiB": round(real / MIB, 3),
                         "ratio": round(formula["ratio"], 4),
                         "paper": PAPER_VI[k] if n == 6372 else None})
    return rows


def _model_bytes(spec: dict, classes: int) -> dict:
    from ocrkit.models.recognizer import Recognizer, finalized

    model = Recognizer(spec, classes)
    model = finalized(model) or model
    state = model.state_dict()
    part = {p: _tensor_bytes({k: v for k, v in state.items() if k.startswith(p + ".")})
            for p in ("backbone", "head", "classifier")}
    return {"MiB": round(_tensor_bytes(state) / MIB, 2),
            **{f"{p}_MiB": round(b / MIB, 2) for p, b in part.items()}}


def lightformer_sizes() -> list[dict]:
    """Deployable fp32 bytes of Light-Former on MobileNetV3-small (RGB). Table IV is
    English: N = 37 (36 case-insensitive alphanumerics and the end symbol), where the
    multi-hot classifier adds size (K > N). Table V is Chinese, N = 6,372; its
    Light-Former baseline (16.1 MB) has an output embedding of its own (N x d) next
    to the softmax classifier, ocrkit's default ties them (``embed=shared``)."""
    from ocrkit.models.recognizer import make_spec

    rows = []
    table_iv = {(False, False): 19.7, (True, False): 3.7, (False, True): 20.4, (True, True): 4.4}
    for noffn_ps in (False, True):
        for mh in (False, True):
            head = {"d_model": 256, "heads": 8, "layers": 3, "embed": "shared" if mh else "own"}
            if not noffn_ps:
                head.update(share=False, ffn=2048)
            spec = make_spec("mobilenetv3-small", "tokens", None, "multihot" if mh else "linear",
                             "lightformer", head_args=head, in_channels=3)
            rows.append({"table": "IV", "N": 37, "NoFFN+PS": noffn_ps, "multi-hot": mh,
                         **_model_bytes(spec, 37), "paper_MB": table_iv[(noffn_ps, mh)]})
    for label, clf, embed, paper in (("Light-Former, own embedding", "linear", "own", 16.1),
                                     ("Light-Former, tied embedding", "linear", "shared", None),
                                     ("Light-Former-EMU", "multihot", "shared", 4.8)):
        spec = make_spec("mobilenetv3-small", "tokens", None, clf, "lightformer",
                         head_args={"embed": embed}, in_channels=3)
        rows.append({"table": "V", "N": 6372, "model": label, **_model_bytes(spec, 6372),
                     "paper_MB": paper})
    return rows


def timing(frames: int = 2048, repeats: int = 30) -> list[dict]:
    torch.set_grad_enabled(False)
    rows = []
    for n in (6372, 20000):
        x = torch.randn(frames, 256)
        softmax = torch.nn.Linear(256, n).eval()
        emu = MultiHotClassifier(in_channels=256, num_classes=n, bits=512)
        state = emu.finalized_state()
        variants = {"softmax": softmax}
        for scoring in ("float", "popcount"):
            packed = MultiHotClassifier(in_channels=256, num_classes=n, bits=512, packed=True,
                                        scoring=scoring)
            packed.load_state_dict(state)
            variants[f"EMU {scoring}"] = packed.eval()
        times = {name: [] for name in variants}
        for name, module in variants.items():  # warm-up (caches, codebook unpacking)
            module(x)
        for _ in range(repeats):  # interleaved, so load on the machine hits all alike
            for name, module in variants.items():
                t0 = time.perf_counter()
                module(x)
                times[name].append(time.perf_counter() - t0)
        for name, values in times.items():
            rows.append({"N": n, "classifier": name, "threads": torch.get_num_threads(),
                         "us_per_frame": round(statistics.median(values) / frames * 1e6, 3)})
    return rows


# ----------------------------------------------------------------------------- accuracy
def _ocrkit(args: list, log) -> dict:
    cmd = [sys.executable, "-m", "ocrkit", *map(str, args)]
    print("$", " ".join(cmd), file=log, flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _data(out: str, classes: int, count: int, val_count: int, log) -> tuple[str, str, str]:
    """(train, validation, test) folders of the large character set: train and test
    from one synth run (5 % test), validation from another seed."""
    data = os.path.join(out, f"synth-{classes}")
    if not os.path.isdir(data):
        _ocrkit(["synth", "--rows", 1, "--min-cols", 4, "--cols", 12, "-n", count,
                 "--charset-size", classes, "--test-fraction", 0.05, "--seed", 7,
                 "-o", data, "-q"], log)
    val = os.path.join(out, f"synth-{classes}-val")
    if not os.path.isdir(val):
        _ocrkit(["synth", "--rows", 1, "--min-cols", 4, "--cols", 12, "-n", val_count,
                 "--charset-size", classes, "--seed", 8, "-o", val, "-q"], log)
    return os.path.join(data, "train"), val, os.path.join(data, "test")


def _runs(lf_size=(32, 256), lf_lr=5e-4, lf_ctc_weight=0.0, lf_encoder="paper",
          lf_embed_map="proj", lf_bits=512, lf_softmax_ctc_weight=None) -> dict[str, list]:
    """Model name -> the command that trains it (without data and run options)."""
    # CPU scale: a narrow VGG and one BiLSTM layer (d = 256 frames, as the paper's d): the
    # small recognizer for a large character set where the classifier dominates the model
    encoder = ["--backbone", "vgg-small", "--backbone-arg", "channels=(16,32,48,64)",
               "--neck", "cap", "--sequence", "bilstm", "--sequence-arg", "hidden=128",
               "--sequence-arg", "layers=1"]
    crnn = [*encoder, "--height", 32, "--width", 256]
    # Light-Former reads the CRNNs' 32x256 images by default: the paper's 48x160 squeezes a
    # 12-character line to 13 px per character (0.28 of its height), and at 4,901 classes
    # it stayed at the label-frequency loss; a post-LN decoder gets a lower peak lr
    lf = ["--head", "lightformer", "--head-arg", "max_length=16", "--height", lf_size[0],
          "--width", lf_size[1], "--lr", lf_lr]
    # The paper's encoder is MobileNetV3-small read as tokens; "crnn" puts the decoder on
    # the CRNNs' encoder (VGG + BiLSTM, 64 frames of d = 256): 4x the training step rate
    # on 2 cores (about 100 against 24 img/s), where MobileNetV3-small at 32x256 stays on
    # the label-frequency plateau for the first 1,000 steps. Either way the pair differs
    # only in the output layer (and the embedding it shares).
    suffix = ""
    if lf_encoder == "crnn":
        lf += encoder
        suffix += " +crnn-encoder"
    else:
        lf += ["--backbone", "mobilenetv3-small", "--neck", "tokens", "--sequence", "none"]
    soft_ctc = lf_ctc_weight if lf_softmax_ctc_weight is None else lf_softmax_ctc_weight

    def ctc(weight):  # joint CTC-attention training (not the paper's): named for it
        return ((f" +CTC {weight:g}", ["--head-arg", f"ctc_weight={weight:g}"]) if weight
                else ("", []))
    soft_name, soft_args = ctc(soft_ctc)
    emu_name, emu_args = ctc(lf_ctc_weight)
    # EMU's codes to the decoder's d: P itself (the default) or a K x d map of its own;
    # K, the code length (Table VI's K = 128 ... 1024; the paper's default 512)
    emu_name += " +embed-map-linear" if lf_embed_map == "linear" else ""
    emu_name += f" +bits-{lf_bits}" if lf_bits != 512 else ""
    # the paper's Light-Former baseline: an output embedding of its own (Table V's 16.1 MB)
    return {
        "CRNN softmax": ["train", *crnn],
        "CRNN EMU": ["train-emu", *crnn],
        "Light-Former" + suffix + soft_name: ["train", *lf, *soft_args, "--head-arg",
                                              "embed=own"],
        "Light-Former-EMU" + suffix + emu_name: ["train-emu", *lf, *emu_args, "--embed-map",
                                                 lf_embed_map, "--bits", lf_bits],
    }


DONE = "bench-done.json"  # in a run folder: the command that trained it to its end


def _train(out: str, name: str, args: list, common: list, seed: int, log) -> str:
    """The run folder of ``name`` at ``seed``, trained unless an earlier bench trained it
    to its end with the same command. A folder without the bench's mark (a run cut by
    a stop: its best.pt is a mid-run checkpoint) is trained again from the start; one
    trained by another command (other steps, precision, ...) stops the bench."""
    run = os.path.join(out, name.replace(" +", "-").replace(" ", "-") + f"-s{seed}")
    command = [str(a) for a in [*args, *common, "--seed", seed, "-o", run]]
    done = os.path.join(run, DONE)
    if os.path.isfile(done):
        with open(done, encoding="utf-8") as fh:
            before = json.load(fh)["command"]
        if before != command:
            raise SystemExit(f"{run} was trained by another command ({done}); give another "
                             f"--out, or the same settings")
        return run
    _ocrkit([*command, "--overwrite"], log)
    with open(done, "w", encoding="utf-8") as fh:
        json.dump({"command": command}, fh)
    return run


def _common(train: str, val: str, steps: int, amp: bool | None = None) -> list:
    """Every training's options; ``amp`` True / False: ``--amp`` / ``--no-amp`` (None: the
    loop's default, on CUDA only)."""
    return ["--train", train, "--val", val, "--charset", os.path.join(train, "charset.txt"),
            "--max-steps", steps, "--val-every", max(1, steps // 4), "-b", 32, "-q",
            *amp_flags(amp, "auto", auto=False)]


def _stat(values: list[float]) -> list[float]:
    """[mean, min, max] in %, rounded."""
    return [round(x, 2) for x in spread(values, 100)]


def accuracy(out: str, steps: int, classes: int, count: int, models: list[str] | None = None,
             seeds: tuple[int, ...] = (0, 1, 2), val_count: int = 1000, amp: bool | None = None,
             **lf) -> list[dict]:
    os.makedirs(out, exist_ok=True)
    log = open(os.path.join(out, "commands.log"), "a", encoding="utf-8")
    train, val, test = _data(out, classes, count, val_count, log)
    common = _common(train, val, steps, amp)
    rows = []
    for name, args in _runs(**lf).items():
        if models and name.split(" +")[0] not in models:
            continue
        evs, info, steps_run = [], None, None
        for seed in seeds:
            run = _train(out, name, args, common, seed, log)
            evs.append(_ocrkit(["evaluate", os.path.join(run, "best.pt"), test, "-q"], log))
            info = _ocrkit(["info", os.path.join(run, "best.pt"), "-q"], log)
            with open(os.path.join(run, "config.json"), encoding="utf-8") as fh:
                steps_run = json.load(fh)["options"]["max_steps"]  # a cached run's own steps
        rows.append({"model": name, "classes": info["classes"], "steps": steps_run,
                     "seeds": list(seeds),
                     "1-NED": _stat([e["one_minus_ned"] for e in evs]),
                     "accuracy": _stat([e["accuracy"] for e in evs]),
                     "MiB": round(info["tensor_bytes"] / MIB, 3),
                     "classifier_MiB": round(info["parts"]["classifier"]["bytes"] / MIB, 3),
                     "ms_per_line": round(statistics.mean(e.get("ms_per_image") or 0
                                                          for e in evs), 2)})
    return rows


# Light-Former candidates for ``select``: (decoder, auxiliary CTC weight, EMU map, K).
CANDIDATES = [("Light-Former", 0.0, None, None), ("Light-Former", 0.5, None, None),
              ("Light-Former-EMU", 0.0, "proj", 512), ("Light-Former-EMU", 0.5, "proj", 512),
              ("Light-Former-EMU", 0.5, "linear", 512), ("Light-Former-EMU", 0.5, "linear", 384)]


def select(out: str, steps: int, classes: int, count: int, seed: int = 0,
           val_count: int = 1000, candidates=None, amp: bool | None = None,
           **lf) -> list[dict]:
    """Each Light-Former candidate at one seed, scored by its best checkpoint's 1-NED on
    the validation set (the test split is not read); the best of each decoder wins."""
    os.makedirs(out, exist_ok=True)
    log = open(os.path.join(out, "commands.log"), "a", encoding="utf-8")
    train, val, _ = _data(out, classes, count, val_count, log)
    common = _common(train, val, steps, amp)
    rows = []
    for decoder, weight, embed_map, bits in candidates or CANDIDATES:
        options = {**lf, "lf_ctc_weight": weight, "lf_softmax_ctc_weight": weight}
        if embed_map:
            options.update(lf_embed_map=embed_map, lf_bits=bits)
        name, args = next((n, a) for n, a in _runs(**options).items()
                          if n.split(" +")[0] == decoder)
        run = _train(out, name, args, common, seed, log)
        ev = _ocrkit(["evaluate", os.path.join(run, "best.pt"), val, "-q"], log)
        rows.append({"model": name, "decoder": decoder, "seed": seed, "steps": steps,
                     "ctc_weight": weight, "embed_map": embed_map, "bits": bits,
                     "val_1-NED": round(100 * ev["one_minus_ned"], 2),
                     "val_accuracy": round(100 * ev["accuracy"], 2)})
    for decoder in {r["decoder"] for r in rows}:
        best = max((r for r in rows if r["decoder"] == decoder), key=lambda r: r["val_1-NED"])
        best["selected"] = True
    return rows


def winner_options(rows: list[dict]) -> list[str]:
    """``select``'s winners as ``accuracy`` options: with them (and the same --out,
    --steps, --lf-* options) ``accuracy`` reuses the winners' first-seed runs."""
    out = []
    for row in rows:
        if not row.get("selected"):
            continue
        if row["decoder"] == "Light-Former":
            out += ["--lf-softmax-ctc-weight", f"{row['ctc_weight']:g}"]
        else:
            out += ["--lf-ctc-weight", f"{row['ctc_weight']:g}", "--lf-embed-map",
                    row["embed_map"], "--lf-bits", str(row["bits"])]
    return out


def _size(text: str) -> tuple[int, int]:
    """``HxW`` -> ``(H, W)`` (an argparse type)."""
    if not re.fullmatch(r"\d+x\d+", text.lower()):
        raise argparse.ArgumentTypeError(f"{text!r}: HxW, e.g. 32x256")
    h, w = text.lower().split("x")
    return int(h), int(w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["sizes", "time", "accuracy", "select"])
    ap.add_argument("--out", default="emu-bench")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--classes", type=int, default=3000)
    ap.add_argument("--count", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--models", default=None,
                    help="accuracy: a comma-separated subset, e.g. 'CRNN softmax,CRNN EMU'")
    ap.add_argument("--lf-size", type=_size, default="32x256",
                    help="accuracy: Light-Former's input HxW (the paper's is 48x160)")
    ap.add_argument("--lf-lr", type=float, default=5e-4, help="accuracy: Light-Former's peak lr")
    ap.add_argument("--lf-ctc-weight", type=float, default=0.0,
                    help="accuracy: Light-Former's auxiliary CTC loss weight (--head-arg "
                         "ctc_weight; 0: the paper's training)")
    ap.add_argument("--lf-encoder", choices=["paper", "crnn"], default="paper",
                    help="accuracy: Light-Former's encoder: the paper's MobileNetV3-small "
                         "tokens, or the CRNNs' VGG + BiLSTM (a CPU-scale stand-in)")
    ap.add_argument("--lf-embed-map", choices=["proj", "linear"], default="proj",
                    help="accuracy: Light-Former-EMU's K -> d output-embedding map "
                         "(train-emu --embed-map)")
    ap.add_argument("--lf-bits", type=int, default=512,
                    help="accuracy: Light-Former-EMU's code length K (train-emu --bits)")
    ap.add_argument("--lf-softmax-ctc-weight", type=float, default=None,
                    help="accuracy: the softmax Light-Former's auxiliary CTC weight "
                         "[default: --lf-ctc-weight]")
    ap.add_argument("--seeds", default="0,1,2",
                    help="accuracy: train every model with each seed; select: the first")
    ap.add_argument("--val-count", type=int, default=1000,
                    help="lines in the validation set (best.pt and select choose on it)")
    speed_options(ap, auto=False)  # accuracy, select
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "sizes":
        rows = sizes() + lightformer_sizes()
    elif args.what == "time":
        rows = timing()
    else:
        seeds = tuple(int(x) for x in args.seeds.split(","))
        lf = {"lf_size": args.lf_size, "lf_lr": args.lf_lr, "lf_encoder": args.lf_encoder}
        if args.what == "select":
            rows = select(args.out, args.steps, args.classes, args.count, seeds[0],
                          args.val_count, amp=args.amp, **lf)
            rows.append({"accuracy_options": winner_options(rows)})
        else:
            rows = accuracy(args.out, args.steps, args.classes, args.count,
                            args.models.split(",") if args.models else None, seeds,
                            args.val_count, amp=args.amp, lf_ctc_weight=args.lf_ctc_weight,
                            lf_embed_map=args.lf_embed_map, lf_bits=args.lf_bits,
                            lf_softmax_ctc_weight=args.lf_softmax_ctc_weight, **lf)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
