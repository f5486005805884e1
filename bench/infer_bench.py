"""Inference latency: milliseconds per text line, 1 thread, torch vs ONNX Runtime.

    python bench/infer_bench.py CHECKPOINT [--lines 200]

Uses the checkpoint's own input size; the images are synthesized single rows.
Batch size 1 (latency) and 32 (throughput per line) are both reported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from PIL import Image

    import onnxruntime as ort

    from ocrkit.export import export_onnx
    from ocrkit.predict import Predictor

    predictor = Predictor(args.checkpoint, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "ocrkit", "synth", "-n", str(args.lines), "--cols",
                        "6", "--charset-size", "100", "--out", f"{tmp}/d", "-q"], check=True,
                       capture_output=True)
        paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(f"{tmp}/d/images") for f in fs)
        images = [Image.open(p).convert("L") for p in paths]
        export_onnx(args.checkpoint, f"{tmp}/m.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        session = ort.InferenceSession(f"{tmp}/m.onnx", opts, providers=["CPUExecutionProvider"])
        x_all = predictor.tensor(images)
        print(f"{'runtime':10} {'batch':>5} {'ms/line':>8}   ({len(images)} lines, "
              f"input {tuple(x_all.shape[1:])}, 1 thread)")
        for batch in (1, 32):
            chunks = [x_all[i:i + batch] for i in range(0, len(images), batch)]
            with torch.no_grad():
                predictor.model(chunks[0])
                t = time.perf_counter()
                for x in chunks:
                    predictor.model.decode(predictor.model(x))
                torch_ms = (time.perf_counter() - t) * 1e3 / len(images)
            session.run(None, {"image": chunks[0].numpy()})
            t = time.perf_counter()
            for x in chunks:
                logits = session.run(None, {"image": np.ascontiguousarray(x.numpy())})[0]
                predictor.model.decode(torch.from_numpy(logits))
            onnx_ms = (time.perf_counter() - t) * 1e3 / len(images)
            print(f"{'torch':10} {batch:5d} {torch_ms:8.2f}")
            print(f"{'onnxruntime':10} {batch:5d} {onnx_ms:8.2f}", flush=True)


if __name__ == "__main__":
    main()
