"""Readers for labelled image folders in the formats OCR tools write.

Every reader yields :class:`LabelledImage` (absolute image path, label rows).
Formats, detected in this order when a folder is given:

========================  ===========================================================
``labels.jsonl``          ocrkit: ``{"image": path, "rows": [...]}`` (or ``"label"``/
                          ``"text"`` holding one string, ``\\n`` between rows)
``gt.txt``                deep-text-recognition-benchmark / PaddleOCR:
                          ``path<TAB>label`` (split on the first tab)
``labels.json``           text_renderer: ``{"labels": {"000000001": "text"}}``,
                          images named ``<key>.jpg|png`` beside it or in ``images/``
``*.json`` + data_list    MMOCR 1.x: ``{"data_list": [{"img_path", "instances":
                          [{"text"}]}]}``
``labels.txt``            TextRecognitionDataGenerator: ``filename label`` (first space)
========================  ===========================================================

Image paths are resolved relative to the label file's folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterator

from ocrkit.errors import UsageError

FORMATS = ("auto", "jsonl", "tsv", "text-renderer", "mmocr", "space")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
LABEL_FILES = ("labels.jsonl", "gt.txt", "labels.json", "labels.txt")


def has_label_file(folder: str) -> bool:
    """True if ``folder`` holds one of the standard label files (a labelled folder)."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in LABEL_FILES)


@dataclass(frozen=True)
class LabelledImage:
    path: str
    rows: tuple[str, ...]

    @property
    def label(self) -> str:
        """Rows joined by newlines: the LMDB label convention for multi-row images."""
        return "\n".join(self.rows)


def detect(folder: str) -> tuple[str, str]:
    """(label file, format) for a folder, or a UsageError naming what was looked for."""
    for name, fmt in (("labels.jsonl", "jsonl"), ("gt.txt", "tsv"),
                      ("labels.json", "text-renderer")):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path, fmt
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    head = fh.read(4096)
            except (OSError, UnicodeDecodeError):
                continue
            if '"data_list"' in head or '"metainfo"' in head:
                return path, "mmocr"
    path = os.path.join(folder, "labels.txt")
    if os.path.isfile(path):
        return path, "space"
    raise UsageError(
        f"{folder}: no label file found (looked for labels.jsonl, gt.txt, labels.json, "
        "an MMOCR *.json, labels.txt); name one with --labels"
    )


def read_labels(source: str, labels: str | None = None, fmt: str = "auto",
                errors: list[str] | None = None) -> Iterator[LabelledImage]:
    """Yield the labelled images of a folder (or of an explicit label file).

    Malformed label lines are reported into ``errors`` (when given) and skipped.
    """
    if labels is None:
        if os.path.isfile(source):
            labels = source
        elif os.path.isdir(source):
            labels, detected = detect(source)
            fmt = detected if fmt == "auto" else fmt
        else:
            raise UsageError(f"{source}: no such file or folder")
    if fmt == "auto":
        fmt = _format_from_name(labels)
    root = os.path.dirname(os.path.abspath(labels))
    reader = {"jsonl": _jsonl, "tsv": _tsv, "text-renderer": _text_renderer,
              "mmocr": _mmocr, "space": _space}[fmt]
    errs = errors if errors is not None else []
    try:
        for rel, rows in reader(labels, errs):
            yield LabelledImage(os.path.normpath(os.path.join(root, rel)), tuple(rows))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{labels}: not UTF-8 (offset {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{labels}: {exc.strerror or exc}") from None


def _format_from_name(path: str) -> str:
    name = os.path.basename(path)
    if name.endswith(".jsonl"):
        return "jsonl"
    if name == "labels.json":
        return "text-renderer"
    if name.endswith(".json"):
        return "mmocr"
    return "tsv"


def jsonl_records(path: str):
    """(line number, parsed JSON or None when the line is not JSON) of non-blank lines."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except ValueError:
                    yield n, None


def _jsonl(path: str, errors: list[str]):
    for n, rec in jsonl_records(path):
        try:
            if rec is None:
                raise json.JSONDecodeError("not JSON", "", 0)
            image = rec["image"] if "image" in rec else rec["path"]
            if "rows" in rec:
                rows = [str(r) for r in rec["rows"]]
            else:
                rows = str(rec["label"] if "label" in rec else rec["text"]).split("\n")
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"{path}:{n}: malformed line ({exc.__class__.__name__})")
            continue
        yield image, rows


def _delimited(path: str, errors: list[str], sep: str, what: str):
    """``path<sep>label`` lines, split on the first separator."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            image, found, label = line.partition(sep)
            if not found:
                errors.append(f"{path}:{n}: no {what} between path and label")
                continue
            yield image, [label]


def _tsv(path: str, errors: list[str]):
    return _delimited(path, errors, "\t", "tab")


def _space(path: str, errors: list[str]):
    return _delimited(path, errors, " ", "space")


def _text_renderer(path: str, errors: list[str]):
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    root = os.path.dirname(os.path.abspath(path))
    for key, text in sorted(data.get("labels", {}).items()):
        for sub in ("", "images"):
            hit = next((os.path.join(sub, key + s) for s in IMAGE_SUFFIXES
                        if os.path.isfile(os.path.join(root, sub, key + s))), None)
            if hit:
                yield hit, [text]
                break
        else:
            errors.append(f"{path}: no image file for label key {key!r}")


def _mmocr(path: str, errors: list[str]):
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    for n, item in enumerate(data.get("data_list", [])):
        try:
            yield item["img_path"], [item["instances"][0]["text"]]
        except (KeyError, IndexError, TypeError):
            errors.append(f"{path}: data_list[{n}] has no img_path/instances[0].text")


def read_pairs(folder: str) -> list[tuple[str, str]]:
    """(image, clean twin) paths of a ``synth --box-lines`` folder's labels.jsonl.

    Raises UsageError when the folder has no labels.jsonl or none of its records
    has a clean twin (it was not made with ``--box-lines``).
    """
    path = os.path.join(folder, "labels.jsonl")
    if not os.path.isfile(path):
        raise UsageError(f"{folder}: no labels.jsonl (make image/clean pairs with "
                         "`ocrkit synth --box-lines`)")
    pairs = []
    for n, rec in jsonl_records(path):
        if rec is None:
            raise UsageError(f"{path}:{n}: not JSON")
        if isinstance(rec, dict) and rec.get("image") and rec.get("clean"):
            pairs.append((os.path.normpath(os.path.join(folder, rec["image"])),
                          os.path.normpath(os.path.join(folder, rec["clean"]))))
    if not pairs:
        raise UsageError(f"{path}: no record has a clean twin (\"clean\"); make the data with "
                         "`ocrkit synth --box-lines`")
    return pairs
