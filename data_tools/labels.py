"""Readers for labelled image folders in the formats OCR tools write.

Every reader yields :class:`LabelledImage` (absolute image path, label rows, and
the sample's domain where the label file records one: ``labels.jsonl`` records
of ``ocrkit synth`` say ``"domain": "print"|"scene"|"handwriting"``; other formats
carry none, and their domain is None). Formats, detected in this order when a
folder is given:

========================  ===========================================================
``labels.jsonl``          ocrkit: ``{"image": path, "rows": [...]}`` (or ``"label"``/
                          ``"text"`` holding one string, ``\\n`` between rows),
                          optionally ``"domain"``
``gt.txt``                deep-text-recognition-benchmark / PaddleOCR:
                          ``path<TAB>label`` (split on the first tab)
``labels.json``           text_renderer: ``{"labels": {"000000001": "text"}}``,
                          images named ``<key>.jpg|png`` beside it or in ``images/``
``*.json`` + data_list    MMOCR 1.x: ``{"data_list": [{"img_path", "instances":
                          [{"text"}]}]}``
``rec_gt*.txt``           PaddleOCR: ``path<TAB>label``
``labels.txt``            TextRecognitionDataGenerator: ``filename label`` (first space)
``tmp_labels.txt``        text_renderer v1 (Sanster): ``00000042 label``; the image is
                          ``00000042.jpg`` (a name without suffix is looked up with
                          each image suffix)
========================  ===========================================================

Image paths are resolved relative to the label file's folder, or ``image_root``
when given. When the first path does not exist there, the folders below the label
file's (and its parent's) are searched for one where it does - MMOCR annotations
name images relative to a ``data_prefix`` such as ``textrecog_imgs/train/``, and
PaddleOCR label files relative to the dataset root - and that folder is used. Every reader
accepts a UTF-8 byte-order mark, reports text that is not UTF-8 with its line
and column, skips malformed lines into :class:`LabelIssues` (``file:line:
reason``) and notes empty or whitespace-only labels there (they are kept: an
image without text can be a deliberate negative sample).

A folder written by an interrupted ``ocrkit synth`` run is refused with the
command that finishes it (:func:`check_complete`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator

from ocrkit.errors import UsageError

FORMATS = ("auto", "jsonl", "tsv", "text-renderer", "mmocr", "space")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
LABEL_FILES = ("labels.jsonl", "gt.txt", "labels.json", "labels.txt")


class IncompleteDataset(UsageError):
    """A dataset folder whose writer (``ocrkit synth``) did not finish."""


@dataclass
class LabelIssues:
    """What was wrong with label files: lines skipped, labels without text."""

    skipped: list[str] = field(default_factory=list)  # "file:line: reason", not used
    empty: list[str] = field(default_factory=list)  # "file:line", kept
    incomplete: list[str] = field(default_factory=list)  # only with allow_incomplete

    def __bool__(self) -> bool:
        return bool(self.skipped or self.empty or self.incomplete)

    def extend(self, other: "LabelIssues") -> None:
        self.skipped += other.skipped
        self.empty += other.empty
        self.incomplete += other.incomplete

    def warnings(self, shown: int = 3) -> list[str]:
        """One line per kind of problem: the count and the first few."""
        out = list(self.incomplete)
        if self.skipped:
            out.append(f"{len(self.skipped)} malformed label lines skipped: "
                       + "; ".join(self.skipped[:shown])
                       + (" ..." if len(self.skipped) > shown else ""))
        if self.empty:
            out.append(f"{len(self.empty)} labels are empty or whitespace only (kept): "
                       + ", ".join(self.empty[:shown]) + (" ..." if len(self.empty) > shown else ""))
        return out


def check_complete(folder: str) -> str | None:
    """Raise :class:`IncompleteDataset` if ``folder`` was written by an ``ocrkit synth``
    run that did not finish (its ``meta.json`` says so, or is missing beside a
    synth ``labels.jsonl``); the message says how to finish it. Returns None."""
    meta_path = os.path.join(folder, "meta.json")
    labels = os.path.join(folder, "labels.jsonl")
    if os.path.isfile(meta_path):
        try:
            with open(meta_path, encoding="utf-8-sig") as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            return None
        if not (isinstance(meta, dict) and str(meta.get("generator", "")).startswith("ocrkit synth")
                and meta.get("complete") is False):
            return None
        split = meta.get("split") in ("train", "test")
        top = os.path.dirname(os.path.normpath(folder)) if split else folder
        lo, hi = (meta.get("counts", {}).get("shard_range") or [0, 0])[:2]
        done = sum(_count_lines(os.path.join(top, sub, "labels.jsonl"))
                   for sub in (("train", "test") if split else ("",)))
        shown = os.path.relpath(top)
        shown = top if shown.startswith("..") else shown
        raise IncompleteDataset(
            f"{folder}: incomplete: its `ocrkit synth` run was interrupted ({done} of "
            f"{hi - lo} images written); finish it with `ocrkit synth --resume --out {shown}`")
    if os.path.isfile(labels):
        for _, rec in jsonl_records(labels):
            if isinstance(rec, dict) and "font" in rec and "rows" in rec:
                raise IncompleteDataset(
                    f"{folder}: incomplete: written by an interrupted `ocrkit synth` run (no "
                    "meta.json); rerun the command that made it with --overwrite")
            break
    return None


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))
    except OSError:
        return 0


def has_label_file(folder: str) -> bool:
    """True if ``folder`` holds one of the standard label files (a labelled folder)."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in LABEL_FILES)


@dataclass(frozen=True)
class LabelledImage:
    path: str
    rows: tuple[str, ...]
    domain: str | None = None  # "print", "scene", "handwriting", ... when recorded

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
    paddle = sorted(n for n in os.listdir(folder) if n.startswith("rec_gt") and n.endswith(".txt"))
    if paddle:
        return os.path.join(folder, paddle[0]), "tsv"
    for name in ("labels.txt", "tmp_labels.txt"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path, "space"
    raise UsageError(
        f"{folder}: no label file found (looked for labels.jsonl, gt.txt, labels.json, "
        "an MMOCR *.json, rec_gt*.txt, labels.txt, tmp_labels.txt); name one with --labels"
    )


def label_file(source: str, labels: str | None = None, fmt: str = "auto") -> tuple[str, str]:
    """(label file, format) that :func:`read_labels` reads for ``source``."""
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
    return labels, fmt


class ImagePaths:
    """Resolves a label file's image names to files (see the module docstring)."""

    def __init__(self, label_dir: str, image_root: str | None = None) -> None:
        self.label_dir = label_dir
        self.image_root = image_root
        self.found_root: str | None = None
        self.probed = False

    @staticmethod
    def _existing(root: str, rel: str) -> str | None:
        path = os.path.normpath(os.path.join(root, rel))
        if os.path.isfile(path):
            return path
        if not os.path.splitext(rel)[1]:  # text_renderer v1: a name without its suffix
            for suffix in IMAGE_SUFFIXES:
                if os.path.isfile(path + suffix):
                    return path + suffix
        return None

    def __call__(self, rel: str) -> str:
        roots = [self.image_root] if self.image_root else [self.label_dir]
        if self.found_root:
            roots.append(self.found_root)
        for root in roots:
            hit = self._existing(root, rel)
            if hit:
                return hit
        if not self.image_root and not self.probed:
            self.probed = True
            self.found_root = self._probe(rel)
            if self.found_root:
                hit = self._existing(self.found_root, rel)
                if hit:
                    return hit
        return os.path.normpath(os.path.join(roots[0], rel))

    def _probe(self, rel: str) -> str | None:
        """A folder below the label file's folder (3 levels) or its parent's (2) holding
        ``rel``."""
        for top, depth in ((self.label_dir, 3), (os.path.dirname(self.label_dir), 2)):
            for folder, dirs, _ in os.walk(top):
                if folder[len(top):].count(os.sep) >= depth:
                    dirs[:] = []
                    continue
                dirs.sort()
                if folder != self.label_dir and self._existing(folder, rel):
                    return folder
        return None


def read_labels(source: str, labels: str | None = None, fmt: str = "auto",
                issues: LabelIssues | None = None, *, allow_incomplete: bool = False,
                image_root: str | None = None) -> Iterator[LabelledImage]:
    """Yield the labelled images of a folder (or of an explicit label file).

    Malformed label lines are skipped and reported into ``issues`` (when given),
    as are labels without text. A folder left by an interrupted ``ocrkit synth``
    raises :class:`IncompleteDataset`, or with ``allow_incomplete`` is read and
    noted in ``issues.incomplete``.
    """
    labels, fmt = label_file(source, labels, fmt)
    root = os.path.dirname(os.path.abspath(labels))
    issues = issues if issues is not None else LabelIssues()
    try:
        check_complete(root)
    except IncompleteDataset as exc:
        if not allow_incomplete:
            raise
        issues.incomplete.append(str(exc))
    if image_root is not None and not os.path.isdir(image_root):
        raise UsageError(f"--image-root {image_root}: no such folder")
    reader = {"jsonl": _jsonl, "tsv": _tsv, "text-renderer": _text_renderer,
              "mmocr": _mmocr, "space": _space}[fmt]
    resolve = ImagePaths(root, image_root)
    try:
        for rel, rows, where, *domain in reader(labels, issues.skipped):
            if not "".join(rows).strip():
                issues.empty.append(where)
            yield LabelledImage(resolve(rel), tuple(rows), domain[0] if domain else None)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{labels}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start}); convert it, e.g. iconv -f GBK -t UTF-8") from None
    except OSError as exc:
        raise UsageError(f"{labels}: {exc.strerror or exc}") from None


def text_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its line ending) of a UTF-8 text file; a byte-order
    mark is dropped; bytes that are not UTF-8 raise a UsageError naming the line and
    column, and suggest a conversion."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                column = len(raw[:exc.start].decode("utf-8", "replace")) + 1
                raise UsageError(
                    f"{path}:{n}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
                    "label files must be UTF-8: convert it, e.g. iconv -f GBK -t UTF-8") from None
            yield n, text.rstrip("\r\n")


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
    for n, line in text_lines(path):
        if line.strip():
            try:
                yield n, json.loads(line)
            except ValueError:
                yield n, None


def _jsonl(path: str, errors: list[str]):
    for n, rec in jsonl_records(path):
        try:
            if rec is None:
                raise ValueError("not JSON")
            image = rec["image"] if "image" in rec else rec["path"]
            if "rows" in rec:
                if not isinstance(rec["rows"], list):
                    raise TypeError('"rows" is not a list')
                rows = [str(r) for r in rec["rows"]]
            else:
                rows = str(rec["label"] if "label" in rec else rec["text"]).split("\n")
            if not isinstance(image, str) or not image:
                raise TypeError("no image path")
            domain = rec.get("domain")
            if domain is not None and (not isinstance(domain, str) or not domain.strip()):
                raise TypeError('"domain" is not a name')
        except KeyError as exc:
            errors.append(f"{path}:{n}: no {exc.args[0]!r} key")
            continue
        except (ValueError, TypeError) as exc:
            errors.append(f"{path}:{n}: malformed record ({exc})")
            continue
        yield image, rows, f"{path}:{n}", domain


def _delimited(path: str, errors: list[str], sep: str, what: str):
    """``path<sep>label`` lines. With tabs a label holds no further tab (a second tab is
    a malformed line, not part of the label); with spaces the label is everything
    after the first space (TRDG labels contain spaces)."""
    for n, line in text_lines(path):
        if not line:
            continue
        image, found, label = line.partition(sep)
        if not found or not image:
            errors.append(f"{path}:{n}: no {what} between path and label")
            continue
        if sep == "\t" and "\t" in label:
            errors.append(f"{path}:{n}: {line.count(chr(9))} tabs; expected path<TAB>label")
            continue
        yield image, [label], f"{path}:{n}"


def _tsv(path: str, errors: list[str]):
    return _delimited(path, errors, "\t", "tab")


def _space(path: str, errors: list[str]):
    return _delimited(path, errors, " ", "space")


def _text_renderer(path: str, errors: list[str]):
    data = _json_file(path)
    root = os.path.dirname(os.path.abspath(path))
    for key, text in sorted(data.get("labels", {}).items()):
        for sub in ("", "images"):
            hit = next((os.path.join(sub, key + s) for s in IMAGE_SUFFIXES
                        if os.path.isfile(os.path.join(root, sub, key + s))), None)
            if hit:
                yield hit, [text], f"{path}: {key}"
                break
        else:
            errors.append(f"{path}: no image file for label key {key!r}")


def _json_file(path: str) -> dict:
    text = "\n".join(line for _, line in text_lines(path))
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def _mmocr(path: str, errors: list[str]):
    data = _json_file(path)
    for n, item in enumerate(data.get("data_list", [])):
        try:
            yield item["img_path"], [item["instances"][0]["text"]], f"{path}: data_list[{n}]"
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
    check_complete(folder)
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
