"""`ocrkit denoise -m DEN.pt INPUTS... -o DIR`: write cleaned images for inspection."""

from __future__ import annotations

import json
import os
import sys

import click


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit denoise -m runs/line/best.pt box/test -o cleaned/
  ls scans/*.png | ocrkit denoise -m runs/line/best.pt - -o cleaned/
""")
@click.option("-m", "--model", "checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint from ocrkit train-denoiser.")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the cleaned images (PNG, same names).")
@click.option("--device", default="auto", show_default=True)
def denoise(checkpoint, inputs, out, device) -> None:
    """Clean images with a Line-DDeCAE / DDeCAE at their own size.

    Each input becomes OUT/<name>.png; a JSON line {"path", "out"} (or
    {"path", "error"}) per input goes to stdout. Unreadable inputs are
    reported and skipped; the exit status is then 1.
    """
    from ocrkit.checkpoint import load_checkpoint
    from ocrkit.cli.infer import iter_inputs, open_input
    from ocrkit.errors import OcrkitError
    from ocrkit.models.denoise import build_denoiser
    from ocrkit.train.denoise import denoise_images
    from ocrkit.train.loop import resolve_device

    model = build_denoiser(load_checkpoint(checkpoint))
    dev = resolve_device(device)
    model.to(dev)
    os.makedirs(out, exist_ok=True)
    failed = False
    used: set[str] = set()
    for path in iter_inputs(inputs):
        image, error = open_input(path)
        if error:
            sys.stdout.write(json.dumps({"path": path, "error": error}) + "\n")
            failed = True
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        name, n = stem, 1
        while name in used:  # same file name from two folders: keep both
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        target = os.path.join(out, name + ".png")
        try:
            denoise_images(model, [image], dev)[0].save(target)
        except OSError as exc:
            raise OcrkitError(f"cannot write {target}: {exc.strerror or exc}") from None
        sys.stdout.write(json.dumps({"path": path, "out": target}, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if failed:
        sys.exit(1)
