"""Training throughput: images/s and the share of step time spent waiting for data.

Builds a small synthetic LMDB (single-row, 6 characters, 100-character charset)
once, then trains the demo's CAP-CRNN for a fixed number of steps with 0, 1 and
2 loader workers and reads the figures the loop logs to metrics.jsonl.

    python bench/train_bench.py [--steps 200] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def sh(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "ocrkit", *args], check=True,
                          capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sh("synth", "-n", "3000", "--cols", "6", "--charset-size", "100", "--out",
           f"{tmp}/d", "-q")
        sh("build-lmdb", f"{tmp}/d", f"{tmp}/d.lmdb", "-q")
        width = json.load(open(f"{tmp}/d/meta.json"))["layout"]["width"]
        print(f"{'workers':>7} {'img/s':>8} {'data share':>10}   (device {args.device}, "
              f"batch {args.batch_size}, {args.steps} steps, input 32x{width})")
        for workers in (0, 1, 2):
            out = f"{tmp}/run{workers}"
            sh("train", "--train", f"{tmp}/d.lmdb", "-o", out, "--max-steps", str(args.steps),
               "-b", str(args.batch_size), "--width", str(width), "-w", str(workers),
               "--device", args.device, "--backbone-arg", "channels=(32,64,128,128)",
               "--backbone-arg", "width_stride=8", "--sequence-arg", "hidden=128",
               "--sequence-arg", "layers=1", "--val-every", "100000", "--log-every", "20", "-q")
            recs = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))
                    if '"img_s"' in x][1:]  # drop the first window (start-up)
            img_s = sum(r["img_s"] for r in recs) / len(recs)
            share = sum(r["data_share"] for r in recs) / len(recs)
            print(f"{workers:7d} {img_s:8.1f} {share:10.3f}", flush=True)


if __name__ == "__main__":
    main()
