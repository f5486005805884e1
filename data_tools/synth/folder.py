"""The output folder: what synth writes where, what it may replace, and what an
interrupted run left there.

One folder per split when ``test_fraction > 0`` (``OUT/train``, ``OUT/test``)::

    images/0000/00000000.png      the samples (``_clean.png`` and ``_mask.png`` twins
                                  with box lines)
    labels.jsonl                  {"image", "rows", "font", "domain"[, "clean", "mask"]}
                                  per image, written in index order as images land
                                  (domain: print, scene or handwriting)
    gt.txt                        path<TAB>label (single-row sets)
    charset.txt                   characters used, one per line
    meta.json                     corpus, fonts, seed, settings, counts, charset

Images are written before their label line, so a label never names a missing
image. ``meta.json`` is written first with ``"complete": false`` and the run's
settings, and rewritten at the end; an interrupted run (Ctrl-C, SIGTERM, a full
disk, kill -9) therefore leaves a dataset that every reader refuses as
incomplete, and ``ocrkit synth --resume --out OUT`` finishes it: it keeps the
images whose labels landed (:func:`resume_point`), renders the rest, and gives
the same bytes as an uninterrupted run (generation is deterministic per image index).
"""

from __future__ import annotations

import json
import os
import shutil

from PIL import Image

from ocrkit.errors import UsageError

OUTPUT_NAMES = ("images", "labels.jsonl", "gt.txt", "charset.txt", "meta.json", "preview.png",
                "train", "test")


def split_folders(out: str, test_fraction: float) -> tuple[list[str], list[str]]:
    """The splits' names (``""`` for an unsplit set) and their folders under ``out``."""
    names = ["train", "test"] if test_fraction > 0 else [""]
    return names, [os.path.join(out, s) if s else out for s in names]


# ----------------------------------------------------------------------------- what is there
def _is_synth_folder(folder: str) -> bool:
    """True if ``folder`` holds a dataset ``ocrkit synth`` wrote (complete or not)."""
    meta = os.path.join(folder, "meta.json")
    if os.path.isfile(meta):
        try:
            with open(meta, encoding="utf-8") as fh:
                return str(json.load(fh).get("generator", "")).startswith("ocrkit synth")
        except (OSError, ValueError, AttributeError):
            return False
    labels = os.path.join(folder, "labels.jsonl")
    if os.path.isfile(labels):
        try:
            with open(labels, encoding="utf-8") as fh:
                first = json.loads(fh.readline() or "{}")
            return isinstance(first, dict) and "font" in first and "rows" in first
        except (OSError, ValueError):
            return False
    return False


def interrupted_state(out: str) -> str | None:
    """Whether ``out`` holds a dataset an interrupted synth left: ``"resumable"``
    (its meta.json says incomplete and keeps the run's settings: ``--resume``
    finishes it), ``"not resumable"`` (incomplete without saved settings, or synth's
    labels without a meta.json: an older ocrkit was interrupted), or None (complete,
    or not synth's)."""
    metas = [os.path.join(out, sub, "meta.json") for sub in ("", "train", "test")]
    metas = [m for m in metas if os.path.isfile(m)]
    if not metas:
        return "not resumable" if _is_synth_folder(out) else None
    try:
        with open(metas[0], encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not str(meta.get("generator", "")).startswith(
            "ocrkit synth"):
        return None
    if all(_meta_complete(m) for m in metas):
        return None
    return "resumable" if isinstance(meta.get("resume"), dict) else "not resumable"


def _meta_complete(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh).get("complete") is not False
    except (OSError, ValueError, AttributeError):
        return True


def prepare_out_dir(out: str, overwrite: bool) -> None:
    """Create ``out`` (must be writable); refuse to clobber an earlier dataset.

    With ``overwrite`` only a dataset that synth itself wrote is replaced (its
    ``images/``, label files, ``meta.json`` ..., and ``train/``/``test/`` splits);
    files of the same names that synth did not write are refused, never deleted.
    """
    from ocrkit.outputs import check_writable

    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory")
    check_writable(out, flag="--out", folder=True)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    existing = [n for n in OUTPUT_NAMES if os.path.lexists(os.path.join(out, n))]
    if existing and not overwrite:
        state = interrupted_state(out)
        if state == "resumable":
            raise UsageError(
                f"--out {out}: holds a dataset an interrupted synth left (incomplete); finish "
                f"it with `ocrkit synth --resume --out {out}` (its own settings, the same "
                "bytes as an uninterrupted run), or start over with --overwrite")
        if state == "not resumable":
            raise UsageError(
                f"--out {out}: holds a dataset an interrupted synth left (incomplete) that "
                "cannot be resumed (its meta.json keeps no settings to resume with); start over "
                "with --overwrite, or choose another --out")
        raise UsageError(
            f"--out {out}: already holds a dataset ({', '.join(existing[:3])}); "
            "pass --overwrite or another --out"
        )
    if not existing:
        return
    splits = [n for n in ("train", "test") if n in existing]
    ours = (_is_synth_folder(out) or bool(splits)) and all(
        _is_synth_folder(os.path.join(out, n)) for n in splits)
    if not ours:
        raise UsageError(f"--out {out}: holds {', '.join(existing[:3])} that ocrkit synth did "
                         "not write; --overwrite replaces only synth's own datasets: choose "
                         "another --out")
    for name in existing:
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def resume_point(split_dirs: list[str], lo: int, hi: int,
                 single_row: bool) -> tuple[int, list[list[dict]]]:
    """First index from which the interrupted run must render again, and the label
    records it keeps (complete lines whose image exists, contiguous from ``lo``).
    The label files are rewritten to hold exactly those records."""
    kept_all, present = [], set()
    for d in split_dirs:
        records = []
        path = os.path.join(d, "labels.jsonl")
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        rec = json.loads(raw)
                        index = int(os.path.basename(rec["image"]).split(".")[0])
                    except (ValueError, KeyError, TypeError):
                        break
                    if not os.path.isfile(os.path.join(d, rec["image"])):
                        break
                    records.append((index, rec))
        kept_all.append(records)
        present.update(i for i, _ in records)
    k = lo
    while k < hi and k in present:
        k += 1
    kept = [[rec for i, rec in records if i < k] for records in kept_all]
    for d, records in zip(split_dirs, kept):
        write_lines(os.path.join(d, "labels.jsonl"),
                    [json.dumps(r, ensure_ascii=False) for r in records])
        if single_row:
            write_lines(os.path.join(d, "gt.txt"),
                        [f"{r['image']}\t{r['rows'][0]}" for r in records])
    return k, kept


# ----------------------------------------------------------------------------- writing
def write_json(path: str, obj) -> None:
    """Write ``obj`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def write_lines(path: str, lines: list[str]) -> None:
    """Write ``lines`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def write_preview(dataset_dir: str, path: str, limit: int = 16, columns: int = 4) -> None:
    """Contact sheet of the first ``limit`` samples (with twin and mask for box lines);
    in colour when the samples are (scene and handwriting words)."""
    cells = []
    with open(os.path.join(dataset_dir, "labels.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            parts = [rec["image"]] + [rec[k] for k in ("clean", "mask") if k in rec]
            opened = [Image.open(os.path.join(dataset_dir, p)) for p in parts]
            mode = "RGB" if any(i.mode == "RGB" for i in opened) else "L"
            ims = [i.convert(mode) for i in opened]
            cell = Image.new(mode, (sum(i.width for i in ims) + 4 * (len(ims) - 1),
                                    max(i.height for i in ims)), 128 if mode == "L" else (128,) * 3)
            x = 0
            for im in ims:
                cell.paste(im, (x, 0))
                x += im.width + 4
            cells.append(cell)
            if len(cells) >= limit:
                break
    if not cells:
        return
    cw = max(c.width for c in cells) + 6
    ch = max(c.height for c in cells) + 6
    cols = min(columns, len(cells))
    mode = "RGB" if any(c.mode == "RGB" for c in cells) else "L"
    sheet = Image.new(mode, (cw * cols, ch * ((len(cells) + cols - 1) // cols)),
                      96 if mode == "L" else (96,) * 3)
    for k, cell in enumerate(cells):
        sheet.paste(cell.convert(mode), ((k % cols) * cw + 3, (k // cols) * ch + 3))
    sheet.save(path)
