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
@click.option("--profile", type=click.Choice(["ocrkit", "rapidocr"]), default="ocrkit",
              show_default=True,
              help="ocrkit: grey [N,1,H,W] -> logits; rapidocr: the input and output "
                   "RapidOCR's TextRecognizer (and PaddleOCR's predict_rec) use.")
@click.option("--verify", is_flag=True,
              help="Compare onnxruntime with torch on sample images (needs onnxruntime).")
@click.option("--samples", type=click.Path(exists=True), default=None,
              help="Dataset or image folder for --verify (default: 8 synthetic noise images).")
@click.option("--tolerance", type=float, default=1e-3, show_default=True,
              help="Largest allowed logit difference for --verify.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT (once verified).")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda, cuda:N or mps: where --verify runs the torch model "
                   "(onnxruntime runs on the CPU), so the exported graph is checked against "
                   "the model as it runs there. The export itself is traced on the CPU.")
@click.option("-q", "--quiet", is_flag=True, help="No warnings on stderr (errors still print).")
def export(checkpoint, fmt, out, opset, profile, verify, samples, tolerance, overwrite, device,
           quiet) -> None:
    """Export CHECKPOINT to ONNX with a dynamic batch and width.

    The ONNX metadata says in plain keys what a third party needs (character,
    blank_index, output, input, grey, resize, scale, padding, decode, rows; see
    ocrkit/export.py). The file is written under a temporary name and renamed
    when complete; with
    --verify it is renamed only if onnxruntime agrees with torch (logits within
    --tolerance, identical texts): otherwise exit 1 and OUT stays as it was.

    \b
    One JSON object on stdout, whatever the outcome:
      "ok"        true when OUT was written (and, with --verify, verified)
      "written"   whether OUT now holds this export
      "verified"  true / false with --verify, null without it
      "error"     why not, when "ok" is false
      "verify"    the comparison: images, max_abs_diff, tolerance,
                  within_tolerance, same_text, texts_match
    """
    from ocrkit.cli._common import stderr_console
    from ocrkit.device import resolve_device
    from ocrkit.errors import OcrkitError
    from ocrkit.export import export_onnx, verify_onnx
    from ocrkit.outputs import atomic_file, check_output_file

    console = stderr_console(quiet)
    torch_device = resolve_device(device)  # a bad one is a usage error before the work
    check_output_file(out, overwrite=overwrite,
                      inputs=[checkpoint] + ([samples] if samples else []))
    images = _sample_images(checkpoint, samples, console=console) if verify else None
    result = {"out": out, "format": fmt, "profile": profile, "ok": False, "written": False,
              "verified": False if verify else None}
    with atomic_file(out) as tmp:
        export_onnx(checkpoint, tmp, opset=opset, profile=profile)
        if verify:
            check = verify_onnx(checkpoint, tmp, images, device=torch_device)
            check["tolerance"] = tolerance
            check["within_tolerance"] = check["max_abs_diff"] <= tolerance
            result["verify"] = check
            if not (check["within_tolerance"] and check["texts_match"]):
                why = (f"--verify: onnxruntime differs from torch (max |diff| "
                       f"{check['max_abs_diff']:.2e}, tolerance {tolerance:.2e}; "
                       f"{check['same_text']}/{check['images']} texts equal); "
                       f"{out} was not written")
                # The JSON says it failed too: a script reading stdout alone must not
                # take a refused export for a good one.
                click.echo(json.dumps({**result, "error": why}, ensure_ascii=False))
                raise OcrkitError(why)
            result["verified"] = True
    result.update(ok=True, written=True)
    click.echo(json.dumps(result, ensure_ascii=False))


def _sample_images(checkpoint: str, samples: str | None, count: int = 8, console=None):
    """Up to ``count`` images for --verify: decodable ones from ``samples`` (a dataset
    or an image folder; bad images are skipped with a warning), or noise images."""
    import os

    import numpy as np
    from PIL import Image

    from data_tools.labels import IMAGE_SUFFIXES, has_label_file
    from ocrkit.errors import UsageError

    if samples is None:
        from ocrkit.checkpoint import load_checkpoint

        spec = load_checkpoint(checkpoint)["input"]
        rng = np.random.default_rng(0)
        return [Image.fromarray(rng.integers(0, 256, (spec["height"], spec["width"]),
                                             dtype=np.uint8)) for _ in range(count)]
    images, bad = [], []
    if (os.path.isdir(samples) and not has_label_file(samples)
            and not os.path.exists(os.path.join(samples, "data.mdb"))) or (
            os.path.isfile(samples) and samples.lower().endswith(IMAGE_SUFFIXES)):
        from ocrkit.cli.infer import iter_inputs, open_input

        for path in iter_inputs([samples]):
            image, error = open_input(path)
            (bad.append(f"{path} ({error})") if error else images.append(image))
            if len(images) >= count:
                break
    else:
        from ocrkit.data import open_dataset

        dataset = open_dataset(samples)
        for i in range(len(dataset)):
            sample = dataset[i]
            (images.append(sample.image) if sample.image is not None
             else bad.append(f"{sample.key} ({sample.error})"))
            if len(images) >= count:
                break
    if bad:
        message = (f"ocrkit: warning: --samples: skipped {len(bad)} unreadable images: "
                   f"{', '.join(bad[:3])}")
        if console is None:
            click.echo(message, err=True)
        else:  # silent with -q
            console.print(message, highlight=False, markup=False)
    if not images:
        raise UsageError(f"--samples {samples}: no readable image to verify with")
    return images
