"""Map-style datasets (usable by ``torch.utils.data.DataLoader`` as they are).

Each item is a :class:`Sample`: the PIL image (greyscale ``L`` by default, ``RGB``
on request; every file mode decoded by :mod:`data_tools.images`), its rows and its
domain (``print``, ``scene``, ``handwriting`` ...: what ``labels.jsonl`` or the LMDB's
``domain-%09d`` key records, None where nothing is recorded). A
sample whose image cannot be decoded is returned with ``image=None`` and an
``error`` when ``skip_broken`` is on (the collate function drops it and reports
it), and raises otherwise - so one corrupt record never kills a long run
silently or loudly without a choice.

Label-file problems met while opening (malformed lines skipped, empty labels)
are kept in the dataset's ``issues`` (:class:`data_tools.labels.LabelIssues`)
for the command to report.
"""

from __future__ import annotations

import bisect
import io
import os
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from data_tools.images import ImageError
from data_tools.images import decode_image as _decode
from data_tools.labels import LabelIssues, has_label_file, read_labels
from data_tools.lmdb import LmdbReader, find_lmdbs
from ocrkit.errors import OcrkitError, UsageError


@dataclass
class Sample:
    image: Image.Image | None
    rows: list[str]
    key: str
    error: str | None = None
    domain: str | None = None  # where the sample comes from, when its dataset says

    @property
    def label(self) -> str:
        return "\n".join(self.rows)


def decode_image(data: bytes, key: str, skip_broken: bool, mode: str = "L"
                 ) -> tuple[Image.Image | None, str | None]:
    """(image, None), or (None, reason) for undecodable bytes (raises unless skip_broken)."""
    try:
        return _decode(data, mode), None
    except ImageError as exc:
        if not skip_broken:
            raise OcrkitError(f"{key}: {exc}") from None
        return None, str(exc)


def image_aspect(source: bytes | str | None) -> float:
    """Width / height from an image's header (encoded bytes or a file path; nothing
    decoded); 0.0 for anything that is not a readable image."""
    if not source:
        return 0.0
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - any unreadable header; the loader reports the image
        return 0.0
    return w / h if h else 0.0


class _Chained:
    """Index arithmetic for a dataset made of consecutive parts."""

    issues: LabelIssues

    def __init__(self, parts: Sequence) -> None:
        self.parts = list(parts)
        self.issues = LabelIssues()
        for part in self.parts:
            if getattr(part, "issues", None):
                self.issues.extend(part.issues)
        self._ends, total = [], 0
        for part in self.parts:
            total += len(part)
            self._ends.append(total)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _locate(self, index: int) -> tuple[int, int]:
        """(part, index inside it) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        which = bisect.bisect_right(self._ends, index)
        return which, index - (self._ends[which - 1] if which else 0)


class LmdbDataset(_Chained):
    """One or more LMDBs (or folders scanned for them) read as one dataset."""

    def __init__(self, paths: str | Sequence[str], *, skip_broken: bool = True,
                 mode: str = "L") -> None:
        paths = [paths] if isinstance(paths, str) else list(paths)
        super().__init__([LmdbReader(db) for p in paths for db in find_lmdbs(p)])
        self.readers = self.parts
        self.skip_broken, self.mode = skip_broken, mode

    def __getitem__(self, index: int) -> Sample:
        which, local = self._locate(index)
        reader = self.readers[which]
        data, label, domain = reader.record(local)
        key = f"{reader.path}#{local + 1}"
        image, error = decode_image(data, key, self.skip_broken, self.mode)
        return Sample(image, label.split("\n"), key, error, domain)

    def labels(self) -> list[str]:
        return [label for r in self.readers for label in r.labels()]

    def domains(self) -> list[str | None]:
        """Each sample's domain, in order (without decoding any image)."""
        return [d for r in self.readers for d in r.domains()]

    def aspects(self) -> list[float]:
        """Each image's width / height, from its header (see :func:`image_aspect`)."""
        return [image_aspect(data) for r in self.readers for data in r.images()]


class FolderDataset:
    """A labelled image folder (labels.jsonl, gt.txt, ... see data_tools.labels)."""

    def __init__(self, path: str, *, skip_broken: bool = True, mode: str = "L") -> None:
        self.issues = LabelIssues()
        self.items = list(read_labels(path, issues=self.issues))
        if not self.items:
            raise UsageError(f"{path}: no labelled images"
                             + (f" ({self.issues.skipped[0]})" if self.issues.skipped else ""))
        self.skip_broken, self.mode = skip_broken, mode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        try:
            with open(item.path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            reason = "no such file" if isinstance(exc, FileNotFoundError) else (
                f"cannot read ({exc.strerror or exc.__class__.__name__})")
            if not self.skip_broken:
                raise OcrkitError(f"{item.path}: {reason}") from None
            return Sample(None, list(item.rows), item.path, reason, item.domain)
        image, error = decode_image(data, item.path, self.skip_broken, self.mode)
        return Sample(image, list(item.rows), item.path, error, item.domain)

    def labels(self) -> list[str]:
        return [item.label for item in self.items]

    def domains(self) -> list[str | None]:
        return [item.domain for item in self.items]

    def aspects(self) -> list[float]:
        """Each image's width / height, from its file's header (0.0: unreadable)."""
        return [image_aspect(item.path) for item in self.items]


class ConcatDataset(_Chained):
    """Several datasets read one after the other."""

    def __getitem__(self, index: int) -> Sample:
        which, local = self._locate(index)
        return self.parts[which][local]

    def labels(self) -> list[str]:
        return [label for p in self.parts for label in p.labels()]

    def domains(self) -> list[str | None]:
        return [d for p in self.parts for d in p.domains()]

    def aspects(self) -> list[float]:
        return [a for p in self.parts for a in p.aspects()]


def _is_lmdb_tree(path: str) -> bool:
    if os.path.isfile(os.path.join(path, "data.mdb")):
        return True
    return os.path.isdir(path) and not has_label_file(path)


def open_dataset(paths: str | Sequence[str], *, skip_broken: bool = True, mode: str = "L"):
    """LMDBs, folders of LMDBs or labelled folders, concatenated in the given order.

    The result has ``issues``: label-file problems met while opening (see
    :class:`data_tools.labels.LabelIssues`)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    parts = []
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such dataset")
        if os.path.isdir(path) and _is_lmdb_tree(path):
            part = LmdbDataset(path, skip_broken=skip_broken, mode=mode)
        else:
            part = FolderDataset(path, skip_broken=skip_broken, mode=mode)
        if len(part) == 0:
            raise UsageError(f"{path}: the dataset is empty")
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    return ConcatDataset(parts)
