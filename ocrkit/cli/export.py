"""`ocrkit export CKPT --format onnx -o FILE [--verify]`."""

from __future__ import annotations

import json

import click


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit export runs/cap/best.pt --format onnx -o cap.onnx
  ocrkit export best.pt -o cap.onnx --verify --samples data/test.lmdb
""")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--verify", is_flag=True,
              help="Compare onnxruntime with torch on sample images (needs onnxruntime).")
@click.option("--samples", type=click.Path(exists=True), default=None,
              help="Dataset or image folder for --verify (default: 8 synthetic noise images).")
@click.option("--tolerance", type=float, default=1e-3, show_default=True,
              help="Largest allowed logit difference for --verify.")
def export(checkpoint, fmt, out, opset, verify, samples, tolerance) -> None:
    """Export CHECKPOINT to ONNX with a dynamic batch and width.

    Charset, input spec and model spec are stored in the ONNX metadata. With
    --verify, exits 1 unless logits agree within --tolerance and decoded texts
    are identical.
    """
    from ocrkit.errors import OcrkitError
    from ocrkit.export import export_onnx, verify_onnx

    export_onnx(checkpoint, out, opset=opset)
    result = {"out": out, "format": fmt}
    if verify:
        images = _sample_images(checkpoint, samples)
        check = verify_onnx(checkpoint, out, images)
        result["verify"] = check
        if check["max_abs_diff"] > tolerance or not check["texts_match"]:
            click.echo(json.dumps(result, ensure_ascii=False))
            raise OcrkitError(f"--verify: onnxruntime differs from torch (max |diff| "
                              f"{check['max_abs_diff']:.2e}, {check['same_text']}/"
                              f"{check['images']} texts equal)")
    click.echo(json.dumps(result, ensure_ascii=False))


def _sample_images(checkpoint: str, samples: str | None, count: int = 8):
    import numpy as np
    from PIL import Image

    if samples is None:
        from ocrkit.checkpoint import load_checkpoint

        spec = load_checkpoint(checkpoint)["input"]
        rng = np.random.default_rng(0)
        return [Image.fromarray(rng.integers(0, 256, (spec["height"], spec["width"]),
                                             dtype=np.uint8)) for _ in range(count)]
    import os

    from ocrkit.cli.infer import iter_inputs

    from data_tools.labels import has_label_file

    if (os.path.isdir(samples) and not has_label_file(samples)
            and not os.path.exists(os.path.join(samples, "data.mdb"))):
        paths = list(iter_inputs([samples]))[:count]
        return [Image.open(p).convert("L") for p in paths]
    from ocrkit.data import open_dataset

    dataset = open_dataset(samples)
    return [dataset[i].image for i in range(min(count, len(dataset))) if dataset[i].image]
