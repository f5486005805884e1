"""English scene text and handwriting: CTC and attention recognizers per domain.

    python bench/english_bench.py --out bench-out/english            # about 80 min, 2 cores
    python bench/english_bench.py --out bench-out/english --no-amp --bucket-widths 0  # float32
    python bench/english_bench.py --out bench-out/english --real DIR --real DIR2
    python bench/english_bench.py --scale smoke --out /tmp/eb          # every stage, a minute

For each domain (``synth --lang en --domain scene|handwriting``): a training set
and a validation set in the training font families, and a test set in Latin
families training never saw (the English demos' held-out families,
``ocrkit.demo.HELD_OUT_FAMILIES``). For each domain and head (``ctc``,
``attention``) one RGB recognizer (the demos' VGG + CAP + 2 x BiLSTM-128 encoder)
is trained, best.pt chosen on the validation set; then every model reads every
domain's test set once (``ocrkit evaluate``), scored the way the English
benchmarks are (``--protocol lower-alnum``: lower case, letters and digits only)
and exactly. ``--real DIR`` (repeatable) adds any folder of real labelled crops
(``gt.txt``, ``labels.jsonl`` ...) to the test sets, read by every model.
Parameters and ms per word (one thread, batch 1, greedy, the test images) come
with each model. ``--seeds 0,1,2`` trains every model with each seed (the data stay
the same) and gives each metric as the mean with the seeds' min-max of word
accuracy; a seed already run is read from OUT.

Time (measured 2026-12-06 on this repository's 2-core machine, docs/results.md
"English bench"): synthesis about 18 minutes, the four trainings 59 minutes with the
defaults, bfloat16 where the CPU computes in it natively (``--amp``; auto, as the
English demos) and batches of similar width (``--bucket-widths 16``); about 80
minutes in all. In float32 with shuffled batches (``--no-amp --bucket-widths 0``)
the trainings take 2.5-3 hours; at equal steps they read 3-4 points more held-out
scene words (one seed; docs/results.md).

Every stage is an ``ocrkit`` command run as a subprocess; its JSON is kept under
OUT, and a stage whose result exists is not run again, so an interrupted run
continues where it stopped. The table (Markdown) is printed at the end and
written to OUT/results.md and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from stages import Stages, amp_flags, format_spread, provenance, speed_options, spread

DOMAINS = ("scene", "handwriting")
HEADS = ("ctc", "attention")
ENCODER = ["--backbone", "vgg-small", "--backbone-arg", "channels=(32,64,128,256)",
           "--neck", "cap", "--sequence-arg", "hidden=128", "--sequence-arg", "layers=2"]
SCALES = {
    # 2.5-3 hours on 2 cores in float32 (see the module doc)
    "cpu": {"train": 60000, "val": 500, "test": 1000, "steps": 5000, "height": 32,
            "width": {"scene": 128, "handwriting": 192}, "cols": {"scene": 16, "handwriting": 20}},
    "smoke": {"train": 64, "val": 16, "test": 16, "steps": 3, "height": 32,
              "width": {"scene": 128, "handwriting": 192}, "cols": {"scene": 16, "handwriting": 20}},
}
RECIPE = ["--optimizer", "adam", "--lr", "1e-3", "--schedule", "onecycle", "--warmup", "0.05",
          "-b", "32", "--resize", "keep-ratio", "--channels", "3"]


class Bench(Stages):
    def __init__(self, out: str, device: str) -> None:
        super().__init__(out)
        self.device = device


def make_data(bench: Bench, scale: dict, domain: str) -> dict[str, str]:
    """train / val / test LMDBs of one domain (test in the held-out families)."""
    return bench.english_sets(domain, scale, ["--height", scale["height"], "--width",
                                              scale["width"][domain], "--cols",
                                              scale["cols"][domain]])


def ms_per_word(checkpoint: str, folder: str, limit: int = 200) -> float:
    """Milliseconds per word on one thread, batch 1, greedy (images of ``folder``)."""
    code = f"""
import json, sys, time, torch
torch.set_num_threads(1)
from ocrkit.data import open_dataset
from ocrkit.predict import Predictor
p = Predictor({checkpoint!r}, "cpu")
ds = open_dataset({folder!r}, mode="RGB")
images = [ds[i].image for i in range(min({limit}, len(ds)))]
p(images[:5], batch_size=1)
t = time.perf_counter()
p(images, batch_size=1)
print(json.dumps({{"ms": (time.perf_counter() - t) * 1e3 / len(images)}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        sys.exit(f"ms per word failed: {proc.stderr[-2000:]}")
    return round(json.loads(proc.stdout.strip().splitlines()[-1])["ms"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out/english")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--steps", type=int, default=None, help="training steps [scale's]")
    parser.add_argument("--train-images", type=int, default=None, help="per domain [scale's]")
    parser.add_argument("--seeds", default=None,
                        help="the models' seeds, comma-separated: each model is trained with "
                        "each, the table gives mean (min-max) [0]")
    parser.add_argument("--seed", type=int, default=None, help="one seed (= --seeds N)")
    parser.add_argument("--real", action="append", default=[], metavar="DIR",
                        help="a folder (or LMDB) of real labelled crops: every model reads it")
    parser.add_argument("--device", default="auto")
    speed_options(parser, buckets=True)
    args = parser.parse_args()
    recipe = RECIPE + amp_flags(args.amp, args.device) + (
        ["--bucket-widths", args.bucket_widths] if args.bucket_widths else [])
    scale = dict(SCALES[args.scale])
    if args.steps:
        scale["steps"] = args.steps
    if args.train_images:
        scale["train"] = args.train_images
    domains = [d for d in args.domains.split(",") if d]
    heads = [h for h in args.heads.split(",") if h]
    bad = sorted(set(domains) - set(DOMAINS)) + sorted(set(heads) - set(HEADS))
    if bad:
        parser.error(f"unknown domain or head: {', '.join(bad)}")
    if args.seed is not None and args.seeds is not None:
        parser.error("--seed and --seeds: give one of them")
    try:
        seeds = [args.seed] if args.seed is not None else \
            [int(x) for x in (args.seeds or "0").split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds {args.seeds}: comma-separated integers, none twice, e.g. 0,1,2")
    bench = Bench(args.out, args.device)
    data = {d: make_data(bench, scale, d) for d in domains}
    tests = {f"{d} (held-out fonts)": data[d]["test"] for d in domains}
    for path in args.real:
        tests[f"real: {os.path.basename(os.path.normpath(path))}"] = os.path.abspath(path)
    charset = os.path.join(bench.out, "charset.txt")
    if not os.path.isfile(charset):
        from data_tools.synth.latin import EN_CHARSET
        from ocrkit.charset import Charset

        Charset(list(EN_CHARSET)).save(charset)
    rows = []
    for domain in domains:
        for head in heads:
            runs = [train_and_read(bench, args, scale, recipe, data, tests, charset, domain,
                                   head, seed) for seed in seeds]
            rows.append(aggregate(runs))
    table = render(rows, list(tests))
    print(table)
    with open(os.path.join(bench.out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(table + "\n")
    with open(os.path.join(bench.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump({**provenance(), "scale": scale, "seeds": seeds, "recipe": recipe,
                   "rows": rows}, fh, indent=1)


def train_and_read(bench: Bench, args, scale: dict, recipe: list, data: dict, tests: dict,
                   charset: str, domain: str, head: str, seed: int) -> dict:
    """One model of ``domain`` and ``head`` at ``seed``: trained (best.pt on the
    validation set), timed, and read once by every test set."""
    name = f"{domain}-{head}-s{seed}"
    run = os.path.join(bench.out, "runs", name)
    extra = ["--head", "attention", "--max-length", scale["cols"][domain]] \
        if head == "attention" else []
    train = bench.cached(f"train-{name}", lambda: {**bench.ocrkit(
        "train", "--train", data[domain]["train"], "--val", data[domain]["val"], "-o", run,
        "--charset", charset, "--height", scale["height"], "--width",
        scale["width"][domain], *ENCODER, *extra, *recipe, "--max-steps",
        scale["steps"], "--val-every", max(1, scale["steps"] // 8), "--save-every",
        max(1, scale["steps"] // 8), "--seed", seed, "--device", args.device,
        "--overwrite", "-q"), "recipe": recipe})
    best = os.path.join(run, "best.pt")
    row = {"domain": domain, "head": head, "seed": seed, "parameters": train.get("parameters"),
           "train_seconds": train.get("_seconds"), "best_step": train.get("best_step"),
           "recipe": train.get("recipe", RECIPE),  # a stage kept from an earlier run
           "ms_per_word": bench.cached(f"ms-{name}", lambda: {
               "ms": ms_per_word(best, data[domain]["test"])})["ms"], "tests": {}}
    for test_name, path in tests.items():
        slug = test_name.split(" ")[0] if not test_name.startswith("real") \
            else "real-" + os.path.basename(os.path.normpath(path))
        res = bench.cached(f"eval-{name}-{slug}", lambda: bench.ocrkit(
            "evaluate", best, path, "--protocol", "lower-alnum", "--device",
            args.device, "-q"))
        row["tests"][test_name] = {"accuracy": res["accuracy"], "cer": res["cer"],
                                   "exact_accuracy": res["exact"]["accuracy"],
                                   "samples": res["samples"]}
    return row


METRICS = ("accuracy", "cer", "exact_accuracy")


def aggregate(runs: list[dict]) -> dict:
    """One row from the seeds' rows of a model: every test metric as mean, min and max
    (fractions), the seeds' rows kept under ``per_seed``."""
    first = runs[0]
    tests = {t: {m: dict(zip(("mean", "min", "max"), spread([r["tests"][t][m] for r in runs])))
                 for m in METRICS} for t in first["tests"]}
    return {"domain": first["domain"], "head": first["head"],
            "seeds": [r["seed"] for r in runs], "parameters": first["parameters"],
            "recipe": first["recipe"], "tests": tests,
            "ms_per_word": sum(r["ms_per_word"] for r in runs) / len(runs),
            "train_seconds": [r["train_seconds"] for r in runs], "per_seed": runs}


def render(rows: list[dict], tests: list[str]) -> str:
    """The Markdown table: word accuracy / CER (exact accuracy) in %; with several
    seeds, the mean with the seeds' min-max of word accuracy."""
    several = any(len(r["seeds"]) > 1 for r in rows)
    head = "| model | " + ("seeds | " if several else "") + " | ".join(
        f"{t}: word acc / CER (exact acc)" for t in tests) + " | parameters | ms/word |"
    lines = [head, "|" + "---|" * (len(tests) + 3 + several)]
    for r in rows:
        cells = []
        for t in tests:
            m = r["tests"][t]
            acc = format_spread(*(100 * m["accuracy"][k] for k in ("mean", "min", "max")),
                                len(r["seeds"]))
            cells.append(f"{acc} / {100 * m['cer']['mean']:.1f} "
                         f"({100 * m['exact_accuracy']['mean']:.1f})")
        recipe = [str(x) for x in r.get("recipe", RECIPE)]
        how = (", bfloat16" if "--amp" in recipe else "") + (
            f", buckets of {recipe[recipe.index('--bucket-widths') + 1]}"
            if "--bucket-widths" in recipe else "")
        seeds = f"{','.join(map(str, r['seeds']))} | " if several else ""
        lines.append(f"| {r['domain']}, {r['head']}{how} | {seeds}" + " | ".join(cells)
                     + f" | {r['parameters'] / 1e6:.2f} M | {r['ms_per_word']:.1f} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
