"""Unified HTR + STR distillation against its baselines ("Text is Text", issue 28).

    python bench/unified_bench.py --out bench-out/unified --seeds 0 --no-ablations  # one seed
    python bench/unified_bench.py --out bench-out/unified --real handwriting=IAM --real scene=IC15
    python bench/unified_bench.py --out bench-out/unified-en --specialists-from bench-out/english \
        --seeds 0 --no-ablations --student-steps 5000   # the English bench's specialists
    python bench/unified_bench.py --scale smoke --out /tmp/ub        # every stage, a minute or two

The paper's table at CPU scale, from the CLI. Data (``synth --lang en``), per domain
(``handwriting``, ``scene``): a training set and a validation set in the training
font families, and a test set in Latin families training never saw (the English
demos' held-out families, ``ocrkit.demo.HELD_OUT_FAMILIES``); RGB words 32 px high,
keep-ratio up to 160 px, at most 16 characters. Rows:

* **HTR specialist**, **STR specialist**: ``ocrkit train --head attention`` on its
  own domain, best.pt chosen on that domain's validation set;
* **unified student**: ``ocrkit distill --teacher htr=HTR --teacher str=STR
  --student-preset same --balance-domains`` on both domains' training sets, the
  four terms at weight 1 (the defaults); the student of seed k learns from the
  specialists of seed k;
* **router + specialists**: ``ocrkit train-router`` on both training sets, then
  ``ocrkit evaluate --router`` over the seed's two specialists (the supplement's
  two-stage baseline; its parameters are the router's and both specialists');
* **mixed data, no distillation**: ``ocrkit train --head attention
  --balance-domains`` on both domains' training sets, the student's architecture,
  steps and batches: what the teachers add;
* **ablations**: the unified student with one term switched off (``--w-logits 0``,
  ``--w-hint 0``, ``--w-attention 0``, ``--w-affinity 0``), first seed only.
* ``--student-domain-weight NAME=N`` (repeatable) adds a row: the unified student with
  its domains drawn in those ratios (``distill --domain-weight``), first seed only.

The two-domain models (unified, mixed data, ablations) validate on both domains'
validation sets and train ``--student-steps`` (the scale's: as many as a specialist at
``--scale cpu``, so the student costs what one specialist costs; with each batch half
handwriting and half scene, each domain gets half its specialist's words). Every test
set is read once, at the end, by ``ocrkit evaluate --protocol lower-alnum`` (DTRB's scoring: lower case,
letters and digits only; exact scores are kept in results.json): word accuracy and
CER per domain. ms/word: one thread, batch 1, greedy, the first seed's models over
the same words (the first ``--ms-words`` of each domain's test set); the router row
times the router and the specialist it picks. ``--real [DOMAIN=]DIR`` (repeatable)
adds a folder or LMDB of real labelled crops (``gt.txt``, ``labels.jsonl`` ...),
read by every model; a DOMAIN also scores the router's choices on it.

Every recognizer has one architecture (``--model``). ``demo`` (the default of ``--scale
cpu``): the English demos' encoder (VGG-small 32-64-128-256 + CAP + 2 x BiLSTM-128) with
an attention decoder reading at most 16 characters, trained jointly with CTC
(``ctc_weight=0.5``, which more than doubled what the attention decoder read at the
scene demo's budget), 2.29 M parameters. ``small``: VGG-small (16, 32, 64, 128) + CAP +
one BiLSTM of 64 + a 64-unit attention decoder, 0.49 M; at 900 steps neither it nor
larger models got past the English words' learning threshold (docs/results.md,
"English words after 900 steps"), which is why the first scale, built around it, was
given up.

``--scale cpu`` (the default): the English bench's data scale, 60,000 training words
per domain, 500 validation and 1,000 test words per domain (a binomial standard error
of about 1.6 points at 50 % accuracy; the models share the test set, so their
differences are less noisy), 5,000 steps per specialist and per two-domain model (a
student at the cost of one specialist, each domain seeing half the words its
specialist saw), 200 router steps of 64, seeds 0, 1 and 2. Trainings run in bfloat16
where the CPU computes in it (``--amp``; auto as in the English demos, ``--no-amp``
turns it off) with batches of similar width (``--bucket-widths 16``; 0 turns it off).
Measured on the way here (docs/results.md, "Unified distillation"): with 20,000 words
and 3,000 steps the handwriting specialist was still on the learning plateau (3.0 %
of validation words), so the scale grew to the English bench's, where the attention
specialists read 23-44 % of held-out words. One seed without ablations took 60
minutes with ``--specialists-from`` (below; the English bench's specialists and data
cost 51 more), so about 2 hours training its own; the whole default (3 seeds and the 4 ablations) is a day on 2 cores: ``--seeds 0
--no-ablations`` first, then more seeds into the same OUT (finished stages are kept).
Each stage's seconds land in its JSON and the total in results.json. ``--scale
smoke``: every stage on 64 words per domain, a few steps (the small model).

``--specialists-from DIR`` takes the specialists from a ``bench/english_bench.py``
output instead of training them: its attention recognizers of each seed (5,000 steps
on 60,000 words per domain), its data (the test sets drawn in the same held-out
families) and charset; the two-domain models get the specialists' architecture and
read the wider width and the longer texts of the two (192 px, 20 characters).

The table gives the mean (min-max) over seeds; the conclusion lines compare the rows
seed by seed and say "yes" or "no" only where every seed agrees (with one seed there is
no spread, and they say so). Every stage is an ``ocrkit`` command run as a subprocess;
its JSON is kept under OUT, and a stage whose result exists is not run again, so an
interrupted run continues where it stopped. The table (Markdown) is printed and written
to OUT/results.md, everything to OUT/results.json with the command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from stages import Stages, amp_flags, provenance, speed_options, spread_cell

DOMAINS = ("handwriting", "scene")
TEACHER = {"handwriting": "htr", "scene": "str"}
ROLE = {"handwriting": "HTR", "scene": "STR"}
TERMS = ("logits", "hint", "attention", "affinity")
HEIGHT, WIDTH, MAX_CHARS = 32, 160, 16
SIZE = ["--height", HEIGHT, "--width", WIDTH]  # every recognizer's; --specialists-from sets it
MODELS = {
    # 0.49 M: the hour's model; below the learning threshold at 900 steps (docs/results.md)
    "small": ["--backbone", "vgg-small", "--backbone-arg", "channels=(16,32,64,128)",
              "--neck", "cap", "--sequence-arg", "hidden=64", "--sequence-arg", "layers=1",
              "--head", "attention", "--head-arg", "hidden=64", "--max-length", MAX_CHARS],
    # 2.3 M: the English demos' encoder; joint CTC-attention, which more than doubled what
    # the attention decoder read at the scene demo's budget (docs/results.md)
    "demo": ["--backbone", "vgg-small", "--backbone-arg", "channels=(32,64,128,256)",
             "--neck", "cap", "--sequence-arg", "hidden=128", "--sequence-arg", "layers=2",
             "--head", "attention", "--head-arg", "ctc_weight=0.5", "--max-length", MAX_CHARS],
}
MODEL = list(MODELS["small"])  # --model replaces it
RECIPE = ["--optimizer", "adam", "--lr", "1e-3", "--schedule", "onecycle", "--warmup", "0.05",
          "-b", "32", "--resize", "keep-ratio", "--channels", "3"]
SCALES = {
    "cpu": {"train": 60000, "val": 500, "test": 1000, "steps": 5000, "student_steps": 5000,
            "router_steps": 200, "seeds": "0,1,2", "ms_words": 100, "model": "demo"},
    "smoke": {"train": 64, "val": 16, "test": 16, "steps": 3, "student_steps": 6,
              "router_steps": 3, "seeds": "0,1", "ms_words": 8, "model": "small"},
}
EPS = 1e-9  # a difference of exactly 2 (or 20) points counts as meeting the target
TARGET = ("the unified student within 2 points of each specialist on its own domain and at "
          "least 20 points above each specialist on the other domain (issue 28)")


class Bench(Stages):
    def __init__(self, out: str, device: str) -> None:
        super().__init__(out)
        self.device = device

    def run_dir(self, name: str) -> str:
        return os.path.join(self.out, "runs", name)


# ----------------------------------------------------------------------------- data
def make_data(bench: Bench, scale: dict, domain: str) -> dict[str, str]:
    """train / val / test LMDBs of one domain (test in the held-out families)."""
    return bench.english_sets(domain, scale, ["--height", HEIGHT, "--width", WIDTH,
                                              "--cols", MAX_CHARS])


def charset_file(bench: Bench) -> str:
    """The English demos' whole charset (134 characters), shared by every model."""
    path = os.path.join(bench.out, "charset.txt")
    if not os.path.isfile(path):
        from data_tools.synth.latin import EN_CHARSET
        from ocrkit.charset import Charset

        Charset(list(EN_CHARSET)).save(path)
    return path


def from_english(folder: str, seeds: list[int]) -> tuple[dict, str, dict]:
    """``bench/english_bench.py``'s data, charset and attention recognizers (one per
    domain and seed) as the specialists; exits in one line saying what is missing."""
    from english_bench import ENCODER, SCALES as EN_SCALES

    data = {d: {split: os.path.join(folder, "data", f"{d}-{split}.lmdb")
                for split in ("train", "val", "test")} for d in DOMAINS}
    charset = os.path.join(folder, "charset.txt")
    specialists = {}
    for seed in seeds:
        for d in DOMAINS:
            summary = os.path.join(folder, f"train-{d}-attention-s{seed}.json")
            best = os.path.join(folder, "runs", f"{d}-attention-s{seed}", "best.pt")
            for path in (summary, best):
                if not os.path.exists(path):
                    sys.exit(f"--specialists-from {folder}: {path} is missing (run "
                             f"bench/english_bench.py --out {folder} --heads attention "
                             f"--seed {seed} first)")
            with open(summary, encoding="utf-8") as fh:
                specialists[f"{ROLE[d]}-s{seed}"] = {"checkpoint": best, "summary": json.load(fh)}
    missing = [p for d in data.values() for p in d.values() if not os.path.exists(p)]
    if missing or not os.path.isfile(charset):
        sys.exit(f"--specialists-from {folder}: {(missing or [charset])[0]} is missing")
    # the two-domain models: the specialists' encoder and head, the wider width and the
    # longer texts of the two (the unified student reads as much, --student-preset same)
    cpu = EN_SCALES["cpu"]
    SIZE[:] = ["--height", cpu["height"], "--width", max(cpu["width"].values())]
    MODEL[:] = [*ENCODER, "--head", "attention", "--max-length", max(cpu["cols"].values())]
    return data, charset, specialists


# ----------------------------------------------------------------------------- training
def both_domains(data: dict) -> list[str]:
    """Both domains' training sets, and their validation sets (best.pt's choice)."""
    return [a for d in DOMAINS for a in ("--train", data[d]["train"], "--val", data[d]["val"])]


def schedule(steps: int) -> list:
    every = max(1, steps // 8)
    return ["--max-steps", steps, "--val-every", every, "--save-every", every]


def train_specialist(bench: Bench, data: dict, scale: dict, charset: str, domain: str,
                     seed: int) -> dict:
    name = f"{ROLE[domain].lower()}-s{seed}"
    run = bench.run_dir(name)
    summary = bench.cached(f"train-{name}", lambda: bench.ocrkit(
        "train", "--train", data[domain]["train"], "--val", data[domain]["val"], "-o", run,
        "--charset", charset, *SIZE, *MODEL, *RECIPE,
        *schedule(scale["steps"]), "--seed", seed, "--device", bench.device, "--overwrite",
        "-q"))
    return {"checkpoint": os.path.join(run, "best.pt"), "summary": summary}


def train_mixed(bench: Bench, data: dict, scale: dict, charset: str, seed: int) -> dict:
    name = f"mixed-s{seed}"
    run = bench.run_dir(name)
    summary = bench.cached(f"train-{name}", lambda: bench.ocrkit(
        "train", *both_domains(data), "-o", run, "--charset", charset, *SIZE, *MODEL,
        *RECIPE, "--balance-domains",
        *schedule(scale["student_steps"]), "--seed", seed, "--device", bench.device,
        "--overwrite", "-q"))
    return {"checkpoint": os.path.join(run, "best.pt"), "summary": summary}


def weights_tag(weights: list[str]) -> str:
    """``["handwriting=2"]`` -> ``handwriting2`` (a stage name's part)."""
    return "-".join(w.replace("=", "") for w in weights)


def distill_unified(bench: Bench, data: dict, scale: dict, specialists: dict, seed: int,
                    drop: str | None = None, weights: list[str] | None = None) -> dict:
    """The unified student of ``seed`` (its specialists' seed); ``drop`` a term: 0;
    ``weights``: ``--domain-weight`` values (its domains drawn in those ratios)."""
    name = f"unified-s{seed}" if drop is None else f"unified-no-{drop}-s{seed}"
    if weights:
        name = f"unified-dw-{weights_tag(weights)}-s{seed}"
    run = bench.run_dir(name)
    teachers = [a for d in DOMAINS
                for a in ("--teacher", f"{TEACHER[d]}={specialists[d]['checkpoint']}")]
    summary = bench.cached(f"distill-{name}", lambda: bench.ocrkit(
        "distill", *teachers, *both_domains(data), "-o", run, "--student-preset", "same",
        "--balance-domains", *RECIPE, *(["--w-" + drop, 0] if drop else []),
        *[a for w in weights or [] for a in ("--domain-weight", w)],
        *schedule(scale["student_steps"]), "--seed", seed, "--device", bench.device,
        "--overwrite", "-q"))
    return {"checkpoint": os.path.join(run, "best.pt"), "summary": summary}


def train_router(bench: Bench, data: dict, scale: dict, seed: int) -> dict:
    name = f"router-s{seed}"
    run = bench.run_dir(name)
    summary = bench.cached(f"train-{name}", lambda: bench.ocrkit(
        "train-router", *both_domains(data), "-o", run, *schedule(scale["router_steps"]),
        "--seed", seed, "--device", bench.device, "--overwrite", "-q"))
    return {"checkpoint": os.path.join(run, "best.pt"), "summary": summary}


# ----------------------------------------------------------------------------- reading
def specialist_args(specialists: dict) -> list[str]:
    """``--model htr=... --model str=...`` (routed evaluation)."""
    return [a for d in DOMAINS
            for a in ("--model", f"{TEACHER[d]}={specialists[d]['checkpoint']}")]


def evaluate(bench: Bench, name: str, model: list[str], tests: list[str]) -> dict:
    """One ``ocrkit evaluate`` of ``model`` (CHECKPOINT or --router ... --model ...)."""
    return bench.cached(f"eval-{name}", lambda: bench.ocrkit(
        "evaluate", *model, *tests, "--protocol", "lower-alnum", "--device", bench.device,
        "-q"))


def scores(result: dict) -> dict:
    """Word accuracy and CER (lower-alnum), the exact accuracy and the sample count."""
    return {"accuracy": result["accuracy"], "cer": result["cer"],
            "exact_accuracy": result["exact"]["accuracy"], "samples": result["samples"]}


def read_all(bench: Bench, name: str, model: list[str], data: dict, reals: list) -> dict:
    """Per-domain scores on the synthetic test sets, then each real set's."""
    res = evaluate(bench, name, model, [data[d]["test"] for d in DOMAINS])
    out = {"tests": {d: scores(res["per_domain"][d]) for d in DOMAINS}}
    if "router" in res:
        out["router_accuracy"] = res["router"]["accuracy"]
    for real in reals:
        r = evaluate(bench, f"{name}-{real['slug']}", model, [real["path"]])
        out["tests"][real["column"]] = scores(r)
        if "routed_to" in r and real["domain"]:
            out.setdefault("real_router_accuracy", {})[real["column"]] = \
                r["routed_to"].get(real["domain"], 0) / max(r["samples"], 1)
    return out


MS_CODE = """
import json, sys, time, torch
torch.set_num_threads(1)
from ocrkit.data import open_dataset
checkpoint, router, models, tests, limit = json.loads(sys.argv[1])
if router:
    from ocrkit.routing import RoutedPredictor
    p = RoutedPredictor(router, models, "cpu")
else:
    from ocrkit.predict import Predictor
    p = Predictor(checkpoint, "cpu")
images = []
for path in tests:
    ds = open_dataset(path, mode="RGB")
    images += [ds[i].image for i in range(min(limit, len(ds)))]
p(images[:5], batch_size=1)
t = time.perf_counter()
p(images, batch_size=1)
print(json.dumps({"ms": (time.perf_counter() - t) * 1e3 / len(images), "words": len(images)}))
"""


def ms_per_word(bench: Bench, name: str, tests: list[str], limit: int, checkpoint=None,
                router=None, models=()) -> float:
    """Milliseconds per word on one thread, batch 1, greedy (the router and the
    specialist it picks for a routed pipeline)."""
    def measure() -> dict:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", MS_CODE,
             json.dumps([checkpoint, router, list(models), tests, limit])],
            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode != 0:
            sys.exit(f"ms per word of {name} failed: {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return {**out, "_seconds": round(time.perf_counter() - t, 1)}
    return round(bench.cached(f"ms-{name}", measure)["ms"], 2)


# ----------------------------------------------------------------------------- summary
def show(values: list[float]) -> str:
    """``mean (min-max)`` in %, or the value alone for one seed."""
    return spread_cell(values, 100)


def column(row: dict, test: str, metric: str) -> list[float]:
    return [seed["tests"][test][metric] for seed in row["per_seed"]]


def verdict(diffs: list[float], ok, what: str) -> str:
    """"yes" / "no" where every seed agrees, else says the seeds differ; the
    per-seed differences (points) follow."""
    shown = ", ".join(f"{100 * d:+.1f}" for d in diffs)
    passed = [ok(d) for d in diffs]
    if len(diffs) == 1:
        return (f"{what}: {'yes' if passed[0] else 'no'} with one seed only, no spread to "
                f"judge by ({shown} points)")
    if all(passed):
        answer = "yes"
    elif not any(passed):
        answer = "no"
    else:
        answer = f"not settled ({sum(passed)} of {len(diffs)} seeds)"
    return f"{what}: {answer} (per seed, points: {shown})"


def conclusions(rows: dict) -> list[str]:
    """The target's two parts and the comparisons with the baselines, seed by seed."""
    unified = rows["unified"]
    lines = []
    for d in DOMAINS:
        other = next(o for o in DOMAINS if o != d)
        u = column(unified, d, "accuracy")
        own = column(rows[ROLE[d]], d, "accuracy")
        foreign = column(rows[ROLE[other]], d, "accuracy")
        lines.append(verdict([a - b for a, b in zip(u, own)], lambda x: x >= -0.02 - EPS,
                             f"unified within 2 points of the {ROLE[d]} specialist on {d}"))
        lines.append(verdict([a - b for a, b in zip(u, foreign)], lambda x: x >= 0.20 - EPS,
                             f"unified at least 20 points above the {ROLE[other]} specialist "
                             f"on {d}"))
        for key, label in (("mixed", "mixed data without distillation"),
                           ("router", "router + specialists")):
            base = column(rows[key], d, "accuracy")
            lines.append(verdict([a - b for a, b in zip(u, base)], lambda x: x > 0,
                                 f"unified above {label} on {d}"))
    return lines


def render(rows: dict, order: list[str], tests: list[str], notes: list[str]) -> str:
    cells = [f"{t}: {m}" for t in tests for m in ("word acc", "CER")]
    lines = ["| model | seeds | " + " | ".join(cells) + " | parameters | ms/word |",
             "|" + "---|" * (len(cells) + 4)]
    for key in order:
        r = rows[key]
        values = [show(column(r, t, m)) for t in tests for m in ("accuracy", "cer")]
        lines.append(f"| {r['label']} | {','.join(map(str, r['seeds']))} | "
                     + " | ".join(values) + f" | {r['parameters']} | {r['ms_per_word']:.1f} |")
    return "\n".join(lines + [""] + notes)


# ----------------------------------------------------------------------------- records
def parse_reals(values: list[str]) -> list[dict]:
    """``[DOMAIN=]DIR`` -> the column, a stage slug, the path and the domain."""
    aliases = {"htr": "handwriting", "str": "scene"}
    reals = []
    for value in values:
        domain, sep, path = value.partition("=")
        if not sep or os.path.exists(value):
            domain, path = "", value
        domain = aliases.get(domain.lower(), domain.lower())
        if domain and domain not in DOMAINS:
            sys.exit(f"--real {value}: the domain is one of {', '.join(DOMAINS)} (or htr, str)")
        if not os.path.exists(path):
            sys.exit(f"--real {value}: {path}: no such folder or LMDB")
        base = os.path.basename(os.path.normpath(path))
        reals.append({"column": f"real {domain + ' ' if domain else ''}{base}",
                      "slug": f"real-{domain or 'any'}-{base}", "path": os.path.abspath(path),
                      "domain": domain or None})
    return reals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out/unified")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--seeds", default=None,
                        help="seeds of the rows the conclusion rests on (specialists, unified, "
                             "router, mixed) [scale's: 0,1,2 cpu]; ablations: the first")
    parser.add_argument("--steps", type=int, default=None, help="specialist steps [scale's]")
    parser.add_argument("--student-steps", type=int, default=None,
                        help="unified, mixed and ablation steps [--steps, or the scale's]")
    parser.add_argument("--router-steps", type=int, default=None, help="[scale's]")
    parser.add_argument("--train-images", type=int, default=None, help="per domain [scale's]")
    parser.add_argument("--ms-words", type=int, default=None,
                        help="words of each domain's test set timed for ms/word [scale's]")
    parser.add_argument("--no-ablations", action="store_true",
                        help="leave out the four one-term-off rows")
    parser.add_argument("--student-domain-weight", action="append", default=[],
                        metavar="NAME=N", help="add a row: the unified student with distill "
                        "--domain-weight NAME=N (repeatable), first seed only")
    parser.add_argument("--real", action="append", default=[], metavar="[DOMAIN=]DIR",
                        help="a folder or LMDB of real labelled crops read by every model; "
                             "DOMAIN (handwriting|scene) also scores the router on it")
    parser.add_argument("--specialists-from", metavar="DIR", default=None,
                        help="a bench/english_bench.py output: its data, charset and attention "
                             "recognizers are the specialists (not trained here); the two-domain "
                             "models take their architecture")
    parser.add_argument("--model", choices=sorted(MODELS), default=None,
                        help="every recognizer's architecture: small (0.49 M) or demo (the "
                             "English demos' encoder, joint CTC-attention, 2.3 M) [scale's]")
    parser.add_argument("--device", default="auto")
    speed_options(parser, buckets=True)
    args = parser.parse_args()
    # every recognizer's recipe (recorded in results.json)
    scale = dict(SCALES[args.scale])
    scale["model"] = args.model or scale["model"]
    MODEL[:] = MODELS[scale["model"]]
    RECIPE.extend(amp_flags(args.amp, args.device)
                  + (["--bucket-widths", args.bucket_widths] if args.bucket_widths else []))
    for key in ("steps", "router_steps", "ms_words"):
        if getattr(args, key):
            scale[key] = getattr(args, key)
    if args.train_images:
        scale["train"] = args.train_images
    scale["student_steps"] = args.student_steps or args.steps or scale["student_steps"]
    try:
        seeds = [int(s) for s in (args.seeds or scale["seeds"]).split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds}: comma-separated integers, e.g. 0,1,2")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error("--seeds: at least one seed, none twice")
    reals = parse_reals(args.real)
    record = provenance()
    bench = Bench(args.out, args.device)
    started = time.time()

    given = {}
    if args.specialists_from:
        data, charset, given = from_english(args.specialists_from, seeds)
        scale.update(steps=given[f"HTR-s{seeds[0]}"]["summary"].get("steps"),
                     model="english bench", train=None)
    # more seeds may join OUT later; other settings may not
    bench.same_settings({"scale": {k: v for k, v in scale.items() if k != "seeds"},
                         "model": MODEL, "size": SIZE, "recipe": RECIPE,
                         "specialists_from": args.specialists_from and
                         os.path.abspath(args.specialists_from)})
    if not args.specialists_from:
        data = {d: make_data(bench, scale, d) for d in DOMAINS}
        charset = charset_file(bench)
    # training, every model before any test set is read
    models: dict[str, dict] = {}
    for seed in seeds:
        spec = {d: given.get(f"{ROLE[d]}-s{seed}")
                or train_specialist(bench, data, scale, charset, d, seed) for d in DOMAINS}
        models.update({f"{ROLE[d]}-s{seed}": spec[d] for d in DOMAINS})
        models[f"unified-s{seed}"] = distill_unified(bench, data, scale, spec, seed)
        models[f"router-s{seed}"] = train_router(bench, data, scale, seed)
        models[f"mixed-s{seed}"] = train_mixed(bench, data, scale, charset, seed)
    first = seeds[0]
    ablations = [] if args.no_ablations else list(TERMS)
    for term in ablations:
        spec = {d: models[f"{ROLE[d]}-s{first}"] for d in DOMAINS}
        models[f"no-{term}-s{first}"] = distill_unified(bench, data, scale, spec, first, term)
    weighted = args.student_domain_weight
    if weighted:
        spec = {d: models[f"{ROLE[d]}-s{first}"] for d in DOMAINS}
        models[f"dw-s{first}"] = distill_unified(bench, data, scale, spec, first,
                                                 weights=weighted)

    # reading: the test sets, once per model
    tests = [data[d]["test"] for d in DOMAINS]
    kinds = {"HTR": "HTR specialist (handwriting only)", "STR": "STR specialist (scene only)",
             "unified": "unified student (distilled from both, balanced)",
             "router": "router + specialists", "mixed": "mixed data, no distillation",
             **{f"no-{t}": f"unified without {t} (--w-{t} 0)" for t in ablations},
             **({"dw": "unified, domains weighted (--domain-weight "
                       + ", ".join(weighted) + ")"} if weighted else {})}
    rows: dict[str, dict] = {}
    for key, label in kinds.items():
        row_seeds = [first] if key.startswith("no-") or key == "dw" else seeds
        per_seed = []
        for seed in row_seeds:
            m = models[f"{key}-s{seed}"]
            spec = {d: models[f"{ROLE[d]}-s{seed}"] for d in DOMAINS}
            model = ["--router", m["checkpoint"], *specialist_args(spec)] if key == "router" \
                else [m["checkpoint"]]
            result = read_all(bench, f"{key}-s{seed}", model, data, reals)
            result.update(seed=seed, best_step=m["summary"].get("best_step"),
                          train_seconds=m["summary"].get("_seconds"))
            per_seed.append(result)
        m = models[f"{key}-s{first}"]
        if key == "router":
            spec = {d: models[f"{ROLE[d]}-s{first}"] for d in DOMAINS}
            params = m["summary"]["parameters"] + sum(
                spec[d]["summary"]["parameters"] for d in DOMAINS)
            shown = (f"{params / 1e6:.2f} M (router {m['summary']['parameters'] / 1e6:.2f} M "
                     "+ both)")
            ms = ms_per_word(bench, f"{key}-s{first}", tests, scale["ms_words"],
                             router=m["checkpoint"], models=specialist_args(spec)[1::2])
        else:
            params = m["summary"]["parameters"]
            shown = f"{params / 1e6:.2f} M"
            ms = ms_per_word(bench, f"{key}-s{first}", tests, scale["ms_words"],
                             checkpoint=m["checkpoint"])
        rows[key] = {"label": label, "seeds": row_seeds, "parameters": shown,
                     "parameter_count": params, "ms_per_word": ms, "per_seed": per_seed}

    columns = list(DOMAINS) + [r["column"] for r in reals]
    router_acc = [s["router_accuracy"] for s in rows["router"]["per_seed"]]
    lines = conclusions(rows)
    notes = [
        f"Word accuracy and CER in %, `lower-alnum`; mean (min-max) over seeds. Test sets: "
        f"{scale['test']} words per domain in font families training never saw. Specialists "
        f"{scale['steps']} steps, two-domain models {scale['student_steps']} (batch 32), router "
        f"{scale['router_steps']} (batch 64); best.pt chosen on validation sets only. "
        f"Ablations: seed {first} only (the full unified student at seed {first}: "
        + ", ".join(f"{d} {100 * rows['unified']['per_seed'][0]['tests'][d]['accuracy']:.1f}"
                    for d in DOMAINS) + "). ms/word: one thread, batch 1, seed "
        f"{first}'s models. Unified and mixed: batches half handwriting, half scene "
        "(`--balance-domains`).",
        f"Router accuracy on the synthetic test sets: {show(router_acc)} %"
        + "".join(f"; on {r['column']}: "
                  + show([s["real_router_accuracy"][r["column"]]
                          for s in rows["router"]["per_seed"]]) + " %"
                  for r in reals if r["domain"]) + ".",
        "", f"Target: {TARGET}.", *[f"- {line}" for line in lines]]
    table = render(rows, list(kinds), columns, notes)
    print(table)
    with open(os.path.join(bench.out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(table + "\n")
    with open(os.path.join(bench.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump({**record, "scale": args.scale, "settings": scale, "seeds": seeds,
                   "model": MODEL, "recipe": RECIPE,
                   "reals": reals, "rows": rows, "target": TARGET, "conclusions": lines,
                   "seconds": round(time.time() - started, 1),
                   "stage_seconds": round(bench.stage_seconds, 1)}, fh, indent=1)


if __name__ == "__main__":
    main()
