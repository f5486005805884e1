"""LMDB datasets in the layout other OCR toolkits read unchanged.

Keys (bytes): ``image-%09d`` (the encoded image file, as is), ``label-%09d``
(UTF-8; rows of a multi-row image joined by ``\\n``), numbered from 1, and
``num-samples`` (ASCII decimal) - as written by deep-text-recognition-benchmark
and read by PaddleOCR, MMOCR and PARSeq. ocrkit adds ``meta`` (JSON: sources,
counts, charset, and the count of samples of each domain), ``domain-%09d`` (UTF-8:
the sample's domain, e.g. ``scene`` or ``handwriting``, for each sample whose label
file records one: ``ocrkit synth`` writes it) and a ``charset.txt`` file beside
``data.mdb``; none of them changes the standard keys, and other readers ignore them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import lmdb

from data_tools.images import ImageError, decode_image
from ocrkit.errors import OcrkitError, UsageError

INITIAL_MAP = 64 << 20
BATCH = 1000


@dataclass
class BuildReport:
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    charset: list[str] = field(default_factory=list)
    domains: dict[str, int] = field(default_factory=dict)  # samples per recorded domain


def check_image(data: bytes) -> None:
    """Decode the whole image; raise :class:`data_tools.images.ImageError` if it is
    truncated, not an image or too large."""
    decode_image(data)


LMDB_FILES = {"data.mdb", "lock.mdb", "charset.txt"}


def is_ocrkit_lmdb(path: str) -> bool:
    """True if ``path`` is a folder holding only an LMDB that ``build-lmdb`` wrote."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    names = set(os.listdir(path))
    if "data.mdb" not in names or not names <= LMDB_FILES:
        return False
    try:
        reader = LmdbReader(path)
    except (OcrkitError, lmdb.Error, ValueError):
        return False
    try:
        return str(reader.meta.get("generator", "")).startswith("ocrkit build-lmdb")
    finally:
        reader.close()


def _temp_name(out: str) -> tuple[str, str]:
    parent = os.path.dirname(os.path.abspath(out)) or "."
    return parent, f".{os.path.basename(os.path.abspath(out))}.tmp-"


def remove_stale_temps(out: str) -> list[str]:
    """Delete temporary databases of earlier builds of ``out`` whose process is gone
    (killed by SIGKILL, or a power cut); a build still running holds the flock on
    its temp folder's lock file and is left alone."""
    from ocrkit.outputs import LOCK_NAME, lock_is_free

    parent, prefix = _temp_name(out)
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        if not (name.startswith(prefix) and os.path.isdir(path)):
            continue
        lock = os.path.join(path, LOCK_NAME)
        if os.path.isfile(lock):
            stale = lock_is_free(lock)
        else:  # a temp of an ocrkit without the lock file: stale if its pid is gone
            pid = name[len(prefix):].split(".")[0]
            stale = pid.isdigit() and not _alive(int(pid))
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def check_lmdb_target(out: str, *, overwrite: bool, inputs: Iterable[str] = ()) -> None:
    """The output policy for an LMDB: never an input (or a folder holding one);
    an existing OUT only with ``overwrite`` and only if it is a single file or an
    LMDB that build-lmdb wrote."""
    from ocrkit.outputs import check_writable, contains, refuse_inputs

    inputs = list(inputs)
    refuse_inputs(out, inputs, flag="OUT")
    if os.path.lexists(out):
        holder = next((i for i in inputs if os.path.isdir(i) and contains(i, out)), None)
        if holder is not None and not is_ocrkit_lmdb(out):
            raise UsageError(f"OUT {out} lies in the input folder {holder}; there ocrkit "
                             "replaces only LMDBs it built: choose another OUT")
        if not overwrite:
            raise UsageError(f"{out}: already exists; pass --overwrite to replace it")
        if os.path.isdir(out) and not is_ocrkit_lmdb(out):
            raise UsageError(f"{out}: is a folder but not an LMDB written by ocrkit build-lmdb; "
                             "--overwrite replaces only those: remove it yourself or choose "
                             "another OUT")
    check_writable(out, flag="OUT")


def write_lmdb(samples: Iterable, out: str, *, overwrite: bool = False,
               sources: Iterable[str] = (), on_item: Callable[[], None] | None = None,
               strict: bool = False) -> BuildReport:
    """Write ``samples`` (objects with ``.path`` and ``.label``, and optionally
    ``.domain``: written as ``domain-%09d`` when set) into the LMDB ``out``.

    The database is built at a temporary path and renamed on success, so ``out``
    is either the previous complete database or the new one. Unreadable or
    undecodable images are skipped and listed in the report. The map grows as
    needed instead of reserving a huge address range up front. With ``strict``,
    the first bad image aborts the build and nothing is written. An interrupted
    build (Ctrl-C, SIGTERM) removes its temporary database; one killed outright
    leaves it behind, and the next build of the same ``out`` removes it.
    See :func:`check_lmdb_target` for what may be replaced.
    """
    from ocrkit.outputs import FolderLock

    sources = list(sources)
    check_lmdb_target(out, overwrite=overwrite, inputs=sources)
    parent, prefix = _temp_name(out)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create its folder ({exc.strerror or exc})") from None
    remove_stale_temps(out)
    tmp = os.path.join(parent, f"{prefix}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    lock = FolderLock(tmp, "build-lmdb").acquire()
    report = BuildReport()
    chars: Counter = Counter()
    domains: Counter = Counter()
    env = None
    try:
        try:
            env = lmdb.open(tmp, map_size=INITIAL_MAP, subdir=True, meminit=False,
                            map_async=True)
        except lmdb.Error as exc:
            raise OcrkitError(f"{out}: cannot create the database ({exc})") from None
        batch: list[tuple[bytes, bytes]] = []
        for sample in samples:
            try:
                with open(sample.path, "rb") as fh:
                    data = fh.read()
                check_image(data)
            except (OSError, ImageError) as exc:
                why = (exc.strerror or "cannot read") if isinstance(exc, OSError) else str(exc)
                if strict:
                    raise OcrkitError(f"--strict: unreadable image {sample.path} ({why}); "
                                      f"{out} was not written") from None
                report.skipped.append((sample.path, why))
                if on_item:
                    on_item()
                continue
            report.written += 1
            n = report.written
            label = sample.label
            chars.update(label.replace("\n", ""))
            batch += [(b"image-%09d" % n, data), (b"label-%09d" % n, label.encode("utf-8"))]
            domain = getattr(sample, "domain", None)
            if domain:
                batch.append((b"domain-%09d" % n, domain.encode("utf-8")))
                domains[domain] += 1
            if len(batch) >= 2 * BATCH:
                _put(env, batch)
                batch = []
            if on_item:
                on_item()
        if report.written == 0:
            first = f" (e.g. {report.skipped[0][0]}: {report.skipped[0][1]})" if report.skipped else ""
            raise OcrkitError(f"no readable image among {len(report.skipped)}{first}; "
                              f"{out} was not written")
        report.charset = sorted(chars)
        meta = {"generator": "ocrkit build-lmdb", "sources": sources,
                "num_samples": report.written, "skipped": len(report.skipped),
                "charset": "".join(report.charset)}
        if domains:
            meta["domains"] = dict(sorted(domains.items()))
            report.domains = meta["domains"]
        batch += [(b"num-samples", str(report.written).encode()),
                  (b"meta", json.dumps(meta, ensure_ascii=False).encode("utf-8"))]
        _put(env, batch)
        env.sync(True)
        env.close()
        env = None
        with open(os.path.join(tmp, "charset.txt"), "w", encoding="utf-8") as fh:
            fh.writelines(c + "\n" for c in report.charset)
        _swap_in(tmp, out, overwrite)
    except (OSError, lmdb.Error) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else
                  str(exc).split(": ", 1)[-1] or exc.__class__.__name__)
        if _free_bytes(parent) < (1 << 20):  # LMDB reports a full disk as an I/O error
            reason = "No space left on device"
        raise OcrkitError(f"writing {out} failed ({reason}); nothing was replaced") from None
    finally:
        if env is not None:
            env.close()
        lock.release()
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def _free_bytes(folder: str) -> int:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return 1 << 62
    return st.f_bavail * st.f_frsize


def _swap_in(tmp: str, out: str, overwrite: bool) -> None:
    """Rename the finished temp database to ``out`` (the old ``out`` moved aside first
    and deleted only after the swap)."""
    from ocrkit.outputs import LOCK_NAME

    with contextlib.suppress(OSError):
        os.remove(os.path.join(tmp, LOCK_NAME))
    if os.path.lexists(out):
        if not overwrite:
            raise UsageError(f"{out}: appeared while this build ran (another build?); "
                             "nothing was replaced")
        old = tmp + ".old"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True) if os.path.isdir(old) else os.remove(old)
    else:
        os.replace(tmp, out)


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


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


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


_SHARED: dict[str, list] = {}  # real path -> [environment, pid, readers using it]


def _shared_env(path: str):
    """One read-only environment per database and process, shared by every reader.

    py-lmdb refuses to open the same database twice in one process (``train
    --train X --val X``); a handle inherited through ``fork`` (a DataLoader worker)
    must not be used, so the child opens its own.
    """
    key = os.path.realpath(path)
    entry = _SHARED.get(key)
    if entry is not None and entry[1] != os.getpid():
        with contextlib.suppress(lmdb.Error):
            entry[0].close()
        entry = None
    if entry is None:
        try:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False,
                            max_readers=512)
        except lmdb.Error as exc:
            raise UsageError(f"{path}: cannot open LMDB ({_lmdb_reason(exc)}){_REMEDY}"
                             ) from None
        try:
            _check_complete(path, env)
        except BaseException:
            env.close()
            raise
        entry = _SHARED[key] = [env, os.getpid(), 0]
    entry[2] += 1
    return entry[0]


_REMEDY = "; copy it again from its source, or rebuild it with `ocrkit build-lmdb`"


def _lmdb_reason(exc: Exception) -> str:
    """py-lmdb's message without its C-level prefix (``mdb_get: MDB_PAGE_NOTFOUND: ...``)."""
    text = " ".join(str(exc).split())
    return text.split(": ", 1)[-1] if text.startswith("mdb_") else text


def _check_complete(path: str, env) -> None:
    """Refuse a database whose data file is shorter than the pages its meta page says
    it uses (an interrupted copy or download): reading such a file through the memory
    map would kill the process with SIGBUS, with no message at all."""
    data = os.path.join(path, "data.mdb") if os.path.isdir(path) else path
    try:
        size = os.path.getsize(data)
        used = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    except (OSError, lmdb.Error):
        return
    if size < used:
        raise UsageError(f"{path}: truncated LMDB: data.mdb holds {size:,} bytes of the "
                         f"{used:,} its pages need (an interrupted copy?){_REMEDY}")


def corrupt(path: str, exc: Exception) -> UsageError:
    """The one-line error for an LMDB page that cannot be read."""
    return UsageError(f"{path}: corrupt LMDB ({_lmdb_reason(exc)}){_REMEDY}")


def _release_env(path: str) -> None:
    key = os.path.realpath(path)
    entry = _SHARED.get(key)
    if entry is not None and entry[1] == os.getpid():
        entry[2] -= 1
        if entry[2] <= 0:
            with contextlib.suppress(lmdb.Error):
                entry[0].close()
            del _SHARED[key]


class LmdbReader:
    """Read-only access to one LMDB; safe to use after ``fork`` (reopens per process),
    and any number of readers of one database may coexist in a process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._env = None
        self._pid = None
        try:
            self._read_header()
        except lmdb.Error as exc:
            raise corrupt(path, exc) from None

    def _read_header(self) -> None:
        path = self.path
        with self._txn() as txn:
            raw = txn.get(b"num-samples")
            if raw is None:
                raise UsageError(f"{path}: not an OCR LMDB (no num-samples key)")
            try:
                self.num_samples = int(raw)
            except ValueError:
                raise UsageError(f"{path}: num-samples is not a number ({raw[:20]!r})") from None
            meta = txn.get(b"meta")
            # deep-text-recognition-benchmark numbers samples from 1; text_renderer from 0
            # (image-000000000 ..., plus size- keys ocrkit ignores).
            self.first = 0 if txn.get(b"image-%09d" % 0) is not None else 1
            first_domain = txn.get(b"domain-%09d" % self.first)
        try:
            self.meta = json.loads(meta) if meta else {}
        except ValueError:
            self.meta = {}
        if not isinstance(self.meta, dict):
            self.meta = {}
        # Whether to look for domain keys at all (an LMDB of another toolkit has none).
        self.has_domains = bool(self.meta.get("domains")) or first_domain is not None

    def _txn(self):
        if self._env is None or self._pid != os.getpid():
            self._env = _shared_env(self.path)
            self._pid = os.getpid()
        return self._env.begin(write=False, buffers=False)

    def close(self) -> None:
        if self._env is not None and self._pid == os.getpid():
            _release_env(self.path)
        self._env = None

    def __len__(self) -> int:
        return self.num_samples

    def get(self, index: int) -> tuple[bytes, str]:
        """Image bytes and label of sample ``index`` (0-based, whatever the keys' base)."""
        return self.record(index)[:2]

    def record(self, index: int) -> tuple[bytes, str, str | None]:
        """Image bytes, label and domain (None when the LMDB records none for it) of
        sample ``index``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        key = index + self.first
        domain = None
        try:
            with self._txn() as txn:
                image = txn.get(b"image-%09d" % key)
                label = txn.get(b"label-%09d" % key)
                if self.has_domains:
                    domain = txn.get(b"domain-%09d" % key)
        except lmdb.Error as exc:
            raise corrupt(self.path, exc) from None
        if image is None or label is None:
            raise UsageError(f"{self.path}: corrupt LMDB (sample {key} of {self.num_samples} "
                             f"is missing){_REMEDY}")
        return image, _text(label), _text(domain) if domain is not None else None

    def domains(self) -> Iterator[str | None]:
        """Each sample's domain (None where none is recorded), in order."""
        try:
            with self._txn() as txn:
                for n in range(self.first, self.num_samples + self.first):
                    raw = txn.get(b"domain-%09d" % n) if self.has_domains else None
                    yield _text(raw) if raw is not None else None
        except lmdb.Error as exc:
            raise corrupt(self.path, exc) from None

    def images(self) -> Iterator[bytes | None]:
        """Each sample's image bytes (None where the record is missing), in order, in
        one read transaction."""
        try:
            with self._txn() as txn:
                for n in range(self.first, self.num_samples + self.first):
                    yield txn.get(b"image-%09d" % n)
        except lmdb.Error as exc:
            raise corrupt(self.path, exc) from None

    def labels(self) -> Iterator[str]:
        try:
            with self._txn() as txn:
                for n in range(self.first, self.num_samples + self.first):
                    raw = txn.get(b"label-%09d" % n)
                    if raw is not None:
                        yield _text(raw)
        except lmdb.Error as exc:
            raise corrupt(self.path, exc) from None
