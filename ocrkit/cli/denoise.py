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
              help="Folder for the cleaned images (PNG, same names); never an input folder.")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True,
              help="Write into a folder that already holds files (same names are replaced).")
@click.option("-q", "--quiet", is_flag=True, help="No warnings on stderr (errors still print).")
def denoise(checkpoint, inputs, out, device, overwrite, quiet) -> None:
    """Clean images with a Line-DDeCAE / DDeCAE at their own size.

    Each input becomes OUT/<name>.png; a JSON line {"path", "out"} (or
    {"path", "error"}) per input goes to stdout. Unreadable inputs are
    reported and skipped; the exit status is then 1. OUT must not be (or
    hold) an input; inside an input folder it is skipped when scanning. No
    input image at all (an empty folder, nothing on stdin) is a usage error.
    """
    from ocrkit.checkpoint import load_checkpoint
    from ocrkit.cli._common import stderr_console
    from ocrkit.cli.infer import open_input, require_inputs
    from ocrkit.device import resolve_device
    from ocrkit.errors import UsageError
    from ocrkit.models.denoise import build_denoiser, denoise_images
    from ocrkit.outputs import FolderLock, atomic_file, check_writable, refuse_inputs

    refuse_inputs(out, [i for i in inputs if i != "-"] + [checkpoint])
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"-o {out}: exists and is not a folder")
    if os.path.isdir(out) and [n for n in os.listdir(out) if not n.startswith(".ocrkit")] \
            and not overwrite:
        raise UsageError(f"-o {out}: already holds files; pass --overwrite to replace images "
                         "of the same names, or choose an empty folder")
    check_writable(out, folder=True)
    stderr_console(quiet)  # -q: library warnings too
    paths = require_inputs(inputs, exclude=out)
    model = build_denoiser(load_checkpoint(checkpoint))
    dev = resolve_device(device)
    model.to(dev)
    os.makedirs(out, exist_ok=True)
    failed = False
    used: set[str] = set()

    def emit(rec: dict) -> None:
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    with FolderLock(out, "denoise").acquire():
        for path in paths:
            image, error = open_input(path)
            if error:
                emit({"path": path, "error": error})
                failed = True
                continue
            stem = os.path.splitext(os.path.basename(path))[0]
            name, n = stem, 1
            while name in used:  # same file name from two folders: keep both
                n += 1
                name = f"{stem}-{n}"
            used.add(name)
            target = os.path.join(out, name + ".png")
            if os.path.exists(target) and os.path.samefile(target, path):
                emit({"path": path, "error": f"{target} is this input; not overwritten"})
                failed = True
                continue
            try:
                cleaned = denoise_images(model, [image], dev)[0]
            except Exception as exc:  # noqa: BLE001 - one bad input is one error record
                emit({"path": path, "error": f"cannot clean ({exc.__class__.__name__})"})
                failed = True
                continue
            with atomic_file(target) as tmp:
                cleaned.save(tmp, format="PNG")
            emit({"path": path, "out": target})
    if failed:
        sys.exit(1)
