"""Synthesizer throughput: images/s per core, single-row and 10-row box-line.

Times the rendering phase (from the first task to the last label written);
start-up (corpus and glyph checks, about a second) is reported separately.

    python bench/synth_bench.py            # 5000 single-row, 2000 box-line images
    python bench/synth_bench.py --quick    # smaller counts
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_tools.synth import SynthConfig, synthesize  # noqa: E402


def run(kind: str, count: int, workers: int, tmp: str) -> dict:
    if kind == "single-row":
        cfg = SynthConfig(out=os.path.join(tmp, f"{kind}-{workers}"), count=count, rows=1,
                          workers=workers, overwrite=True)
    else:
        cfg = SynthConfig(out=os.path.join(tmp, f"{kind}-{workers}"), count=count, rows=10,
                          box_lines=True, workers=workers, overwrite=True)
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    synthesize(cfg, on_start=lambda n: marks.setdefault("start", time.perf_counter()),
               on_progress=lambda n: marks.__setitem__("end", time.perf_counter()))
    render = marks["end"] - marks["start"]
    return {"kind": kind, "workers": workers, "images": count,
            "startup_s": marks["start"] - t0, "render_s": render,
            "img_s": count / render, "img_s_per_core": count / render / workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    counts = {"single-row": 1000 if args.quick else 5000,
              "10-row-box-lines": 300 if args.quick else 2000}
    print(f"{'kind':18} {'workers':>7} {'images':>7} {'startup s':>9} {'img/s':>8} "
          f"{'img/s/core':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, count in counts.items():
            for workers in (1, 2):
                r = run(kind, count, workers, tmp)
                print(f"{r['kind']:18} {r['workers']:7d} {r['images']:7d} {r['startup_s']:9.2f} "
                      f"{r['img_s']:8.0f} {r['img_s_per_core']:10.0f}", flush=True)


if __name__ == "__main__":
    main()
