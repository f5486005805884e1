"""Unlabelled images for self-supervised pre-training (``ocrkit pretrain``).

A source is one of:

* an LMDB, or a folder of LMDBs (ocrkit's or deep-text-recognition-benchmark's
  layout): every record's image, its label (if any) ignored;
* a labelled folder (``labels.jsonl``, ``gt.txt`` ...): the images its label file
  lists, the labels ignored (so a synth folder's clean twins or stray files never
  join in);
* any other folder: every image file below it (``.png``, ``.jpg`` ... searched
  recursively, in sorted order);
* a single image file.

Items are :class:`ocrkit.data.datasets.Sample` with no rows. As everywhere in ocrkit,
an image that cannot be read or decoded is returned with ``image=None`` and the
reason; the batch builder drops it and the loop counts it (``broken_samples`` in
``metrics.jsonl``), and an epoch of nothing usable stops the run with the reasons.
"""

from __future__ import annotations

import os
from typing import Sequence

from data_tools.labels import IMAGE_SUFFIXES, LabelIssues, has_label_file, read_labels
from data_tools.lmdb import LmdbReader, corrupt, find_lmdbs
from ocrkit.data.datasets import Sample, _Chained, decode_image
from ocrkit.errors import UsageError


class ImageFiles:
    """Image files read without labels."""

    def __init__(self, paths: Sequence[str], mode: str = "L") -> None:
        self.paths, self.mode = list(paths), mode
        self.issues = LabelIssues()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        path = self.paths[index]
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            reason = "no such file" if isinstance(exc, FileNotFoundError) else (
                f"cannot read ({exc.strerror or exc.__class__.__name__})")
            return Sample(None, [], path, reason)
        image, error = decode_image(data, path, skip_broken=True, mode=self.mode)
        return Sample(image, [], path, error)


class UnlabelledLmdb(_Chained):
    """The images of one or more LMDBs; a record needs no label."""

    def __init__(self, path: str, mode: str = "L") -> None:
        super().__init__([LmdbReader(db) for db in find_lmdbs(path)])
        self.mode = mode

    def __getitem__(self, index: int) -> Sample:
        which, local = self._locate(index)
        reader = self.parts[which]
        key = local + reader.first
        where = f"{reader.path}#{local + 1}"
        try:
            # LmdbReader.record insists on a label; an unlabelled LMDB may have none
            with reader._txn() as txn:
                data = txn.get(b"image-%09d" % key)
        except Exception as exc:  # noqa: BLE001 - lmdb.Error: the database is damaged
            raise corrupt(reader.path, exc) from None
        if data is None:
            return Sample(None, [], where, "no image in the record")
        image, error = decode_image(data, where, skip_broken=True, mode=self.mode)
        return Sample(image, [], where, error)


class Unlabelled(_Chained):
    """Several unlabelled sources read one after the other."""

    def __getitem__(self, index: int) -> Sample:
        which, local = self._locate(index)
        return self.parts[which][local]


def _image_files(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_SUFFIXES)]
    return found


def _source(path: str, mode: str):
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or folder")
    if os.path.isfile(path):
        if not path.lower().endswith(IMAGE_SUFFIXES):
            raise UsageError(f"{path}: not an image, an image folder or an LMDB")
        return ImageFiles([path], mode)
    if os.path.isfile(os.path.join(path, "data.mdb")):
        return UnlabelledLmdb(path, mode)
    if has_label_file(path):
        issues = LabelIssues()
        files = ImageFiles([item.path for item in read_labels(path, issues=issues)], mode)
        files.issues.skipped = issues.skipped  # malformed lines; empty labels do not matter
        return files
    files = _image_files(path)
    if files:
        return ImageFiles(files, mode)
    try:
        return UnlabelledLmdb(path, mode)  # a folder of LMDBs
    except UsageError:
        raise UsageError(f"{path}: no images (.png, .jpg ...) and no LMDB inside") from None


def open_unlabelled(paths: str | Sequence[str], mode: str = "L") -> Unlabelled:
    """The images of ``paths`` (see the module doc), in the given order; ``mode`` is
    the Pillow mode images are decoded in (``L`` or ``RGB``)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    parts = []
    for path in paths:
        part = _source(path, mode)
        if len(part) == 0:
            raise UsageError(f"{path}: no images")
        parts.append(part)
    return Unlabelled(parts)
