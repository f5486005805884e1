"""Does a recognizer trained with ocrkit's defaults read what it never saw?

Trains the demo's CAP-CRNN twice on 6-character lines rendered in two of the pip
font designs (by default the two sans, Noto Sans CJK and WenQuanYi Micro Hei):
with ``--augment`` (the default) and with ``--no-augment``. Then evaluates each on

* ``in-domain``: new lines, the training fonts;
* ``held-out design``: the same kind of lines in the third design (``--held-out``;
  by default Noto Serif SC, a Song design neither run saw);
* ``20-character lines``: the training fonts, lines 3.3x longer than any seen,
  read at their own width (the default) and squashed into the training width
  (``--fixed-width``, what ``infer`` and ``evaluate`` did before).

It also reports the training's data-loading share (augmentation runs in the loader
workers) and throughput. Every stage is an ``ocrkit`` command, cached under OUT.

    python bench/generalisation_bench.py                  # about 25 minutes on 2 cores
    python bench/generalisation_bench.py --steps 300      # a quick look
    python bench/generalisation_bench.py --held-out sans-wqy --out bench-out/gen-wqy
                                      # train on Noto Sans + Noto Serif, test WenQuanYi
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from data_tools.synth.fonts import PIP_FONT_PACKAGES, pip_font_files  # noqa: E402
from paper_tables import Bench  # noqa: E402

MODEL = ["--backbone-arg", "channels=(32,64,128,128)", "--backbone-arg", "width_stride=8",
         "--sequence-arg", "hidden=128", "--sequence-arg", "layers=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out/generalisation")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--charset-size", type=int, default=500)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", choices=[d for _, _, d in PIP_FONT_PACKAGES],
                        default="serif",
                        help="the pip font design tested on; the other two train")
    args = parser.parse_args()
    fonts = dict((design, path) for path, design in pip_font_files(designs=True))
    missing = {d for _, _, d in PIP_FONT_PACKAGES} - set(fonts)
    if missing:
        sys.exit(f"needs the pip fonts of `pip install 'ocrkit[fonts]'` (missing {missing})")
    names = {"sans": "Noto Sans CJK", "sans-wqy": "WenQuanYi Micro Hei", "serif": "Noto Serif SC"}
    trained = [d for d in fonts if d != args.held_out]
    train_fonts = [a for d in trained for a in ("--font", fonts[d])]
    bench = Bench(args.out, args.device, args.seed)
    common = ["--charset-size", args.charset_size, "-q", "--overwrite"]
    # best.pt is chosen on "validation" (the training designs, another seed); every
    # test set is read once, by evaluate, at the end
    sets = {"train": (args.train_images, 1, 6, train_fonts),
            "validation": (500, 5, 6, train_fonts),
            "in-domain": (500, 2, 6, train_fonts),
            "held-out design": (500, 3, 6, ["--font", fonts[args.held_out]]),
            "20-character lines": (300, 4, 20, train_fonts)}
    data = {}
    for name, (n, seed, cols, font_args) in sets.items():
        folder = os.path.join(args.out, "data", name.replace(" ", "-"))
        bench.cached(f"synth-{name}", lambda: bench.ocrkit(
            "synth", "-n", n, "--seed", seed, "--cols", cols, *font_args, *common,
            "--out", folder))
        bench.cached(f"lmdb-{name}", lambda: bench.ocrkit(
            "build-lmdb", folder, folder + ".lmdb", "-q", "--overwrite"))
        data[name] = folder + ".lmdb"
    width = json.load(open(os.path.join(args.out, "data", "train", "meta.json")))["layout"]["width"]
    rows = []
    for augment in ("--augment", "--no-augment"):
        run = os.path.join(args.out, "runs", augment.strip("-"))
        train = bench.cached(f"train{augment}", lambda: bench.ocrkit(
            "train", "--train", data["train"], "--val", data["validation"], "-o", run,
            "--max-steps", args.steps, "--width", width, "--lr", "2e-3", "--warmup", "0.02",
            "--val-every", max(1, args.steps // 5), "--val-limit", 200, *MODEL, augment,
            "--device", bench.device, "--seed", bench.seed, "--overwrite", "-q"))
        log = [json.loads(x) for x in open(os.path.join(run, "metrics.jsonl"))
               if '"img_s"' in x][1:]
        share = statistics.median(r["data_share"] for r in log) if log else None
        img_s = statistics.median(r["img_s"] for r in log) if log else None
        for test in ("in-domain", "held-out design", "20-character lines"):
            for fixed in ([False, True] if test == "20-character lines" else [False]):
                tag = f"{augment}-{test}{'-fixed' if fixed else ''}".replace(" ", "-")
                ev = bench.cached(f"eval{tag}", lambda: bench.ocrkit(
                    "evaluate", os.path.join(run, "best.pt"), data[test], "-q",
                    "--device", bench.device, *(["--fixed-width"] if fixed else [])))
                rows.append({"augment": augment == "--augment", "test": test,
                             "width": "fixed (squashed)" if fixed else "own",
                             "clp": round(100 * ev["clp"], 2), "ilp": round(100 * ev["ilp"], 2),
                             "one_minus_ned": round(100 * ev["one_minus_ned"], 2),
                             "data_share": share, "img_s": img_s,
                             "train_s": train["_seconds"]})
    lines = [f"Generalisation (bench/generalisation_bench.py, {args.steps} steps, "
             f"{args.train_images} training lines of 6 characters, {args.charset_size} "
             f"characters; training fonts {' + '.join(names[d] for d in trained)}; held out "
             f"{names[args.held_out]})", "",
             "| augment | test set | line width | CLP | accuracy (ILP) | 1-NED | data share "
             "| img/s | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {'on' if r['augment'] else 'off'} | {r['test']} | {r['width']} "
                     f"| {r['clp']:.2f} | {r['ilp']:.2f} | {r['one_minus_ned']:.2f} "
                     f"| {r['data_share']} | {r['img_s']} | {r['train_s']:.0f} |")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=1)
    print(text)


if __name__ == "__main__":
    main()
