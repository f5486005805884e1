"""LMDB datasets in the layout other OCR toolkits read unchanged.

Keys (bytes): ``image-%09d`` (the encoded image file, as is), ``label-%09d``
(UTF-8; rows of a multi-row image joined by ``\\n``), numbered from 1, and
``num-samples`` (ASCII decimal) - as written by deep-text-recognition-benchmark
and read by PaddleOCR, MMOCR and PARSeq. ocrkit adds ``meta`` (JSON: sources,
counts, charset) and a ``charset.txt`` file beside ``data.mdb``; neither
changes the standard keys.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import lmdb
from PIL import Image

from ocrkit.errors import OcrkitError, UsageError

INITIAL_MAP = 64 << 20
BATCH = 1000


@dataclass
class BuildReport:
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    charset: list[str] = field(default_factory=list)


def check_image(data: bytes) -> None:
    """Decode the whole image; raise if it is truncated or not an image."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()


def write_lmdb(samples: Iterable, out: str, *, overwrite: bool = False,
               sources: Iterable[str] = (), on_item: Callable[[], None] | None = None,
               strict: bool = False) -> BuildReport:
    """Write ``samples`` (objects with ``.path`` and ``.label``) into the LMDB ``out``.

    The database is built at a temporary path and renamed on success, so ``out``
    is either the previous complete database or the new one. Unreadable or
    undecodable images are skipped and listed in the report. The map grows as
    needed instead of reserving a huge address range up front. With ``strict``,
    the first bad image aborts the build and nothing is written.
    """
    if os.path.exists(out) and not overwrite:
        raise UsageError(f"{out}: already exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(out)) or "."
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create its folder ({exc.strerror or exc})") from None
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    report = BuildReport()
    chars: Counter = Counter()
    try:
        env = lmdb.open(tmp, map_size=INITIAL_MAP, subdir=True, meminit=False, map_async=True)
    except lmdb.Error as exc:
        raise UsageError(f"{out}: cannot create the database ({exc})") from None
    try:
        batch: list[tuple[bytes, bytes]] = []
        for sample in samples:
            try:
                with open(sample.path, "rb") as fh:
                    data = fh.read()
                check_image(data)
            except Exception as exc:  # noqa: BLE001 - any decoder failure means "bad image"
                if strict:
                    raise OcrkitError(f"--strict: unreadable image {sample.path} "
                                      f"({_reason(exc)}); {out} was not written") from None
                report.skipped.append((sample.path, _reason(exc)))
                if on_item:
                    on_item()
                continue
            report.written += 1
            n = report.written
            label = sample.label
            chars.update(label.replace("\n", ""))
            batch += [(b"image-%09d" % n, data), (b"label-%09d" % n, label.encode("utf-8"))]
            if len(batch) >= 2 * BATCH:
                _put(env, batch)
                batch = []
            if on_item:
                on_item()
        report.charset = sorted(chars)
        meta = {"generator": "ocrkit build-lmdb", "sources": list(sources),
                "num_samples": report.written, "skipped": len(report.skipped),
                "charset": "".join(report.charset)}
        batch += [(b"num-samples", str(report.written).encode()),
                  (b"meta", json.dumps(meta, ensure_ascii=False).encode("utf-8"))]
        _put(env, batch)
        env.sync(True)
        env.close()
        with open(os.path.join(tmp, "charset.txt"), "w", encoding="utf-8") as fh:
            fh.writelines(c + "\n" for c in report.charset)
        if os.path.exists(out):
            old = tmp + ".old"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as exc:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise OcrkitError(f"writing {out} failed ({exc.strerror or exc}); nothing was replaced"
                          ) from None
    except BaseException:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:120]


def _put(env: lmdb.Environment, items: list[tuple[bytes, bytes]]) -> None:
    """Write items in one transaction, doubling the map until they fit."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def find_lmdbs(path: str) -> list[str]:
    """``path`` if it is an LMDB folder, else every LMDB folder below it (sorted)."""
    if os.path.isfile(os.path.join(path, "data.mdb")):
        return [path]
    if not os.path.isdir(path):
        raise UsageError(f"{path}: no such LMDB folder")
    found = sorted(root for root, _, files in os.walk(path) if "data.mdb" in files)
    if not found:
        raise UsageError(f"{path}: no LMDB (data.mdb) inside")
    return found


class LmdbReader:
    """Read-only access to one LMDB; safe to use after ``fork`` (reopens per process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._env = None
        self._pid = None
        with self._txn() as txn:
            raw = txn.get(b"num-samples")
            if raw is None:
                raise UsageError(f"{path}: not an OCR LMDB (no num-samples key)")
            self.num_samples = int(raw)
            meta = txn.get(b"meta")
        self.meta = json.loads(meta) if meta else {}

    def _txn(self):
        if self._env is not None and self._pid != os.getpid():
            # Forked child (a DataLoader worker): the inherited handle must not be used,
            # and py-lmdb refuses a second open of the same path until it is closed.
            try:
                self._env.close()
            except lmdb.Error:
                pass
            self._env = None
        if self._env is None:
            try:
                self._env = lmdb.open(self.path, readonly=True, lock=False, readahead=False,
                                      meminit=False, max_readers=512)
            except lmdb.Error as exc:
                raise UsageError(f"{self.path}: cannot open LMDB ({exc})") from None
            self._pid = os.getpid()
        return self._env.begin(write=False, buffers=False)

    def __len__(self) -> int:
        return self.num_samples

    def get(self, index: int) -> tuple[bytes, str]:
        """Image bytes and label of sample ``index`` (0-based; keys start at 1)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        with self._txn() as txn:
            image = txn.get(b"image-%09d" % (index + 1))
            label = txn.get(b"label-%09d" % (index + 1))
        if image is None or label is None:
            raise OcrkitError(f"{self.path}: sample {index + 1} is missing")
        return image, label.decode("utf-8")

    def labels(self) -> Iterator[str]:
        with self._txn() as txn:
            for n in range(1, self.num_samples + 1):
                raw = txn.get(b"label-%09d" % n)
                if raw is not None:
                    yield raw.decode("utf-8")
