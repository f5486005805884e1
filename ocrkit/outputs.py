"""What a command may do to outputs that already exist: one policy for every command.

1. **Inputs are never written.** An output that is an input, or a folder that holds
   one, is refused, with or without ``--overwrite``.
2. **Replace only what is recognisably ocrkit's, and only when asked.** An existing
   output is replaced only with ``--overwrite`` and only when ocrkit recognises it
   as its own product of that kind: a run folder (its ``.ocrkit-run.json`` marker,
   or only the files a run writes), an LMDB written by ``build-lmdb``, a dataset
   written by ``synth``, or a single file. Anything else is refused even with
   ``--overwrite``: ocrkit does not delete what it did not create.
3. **``--resume`` continues; it never starts over.** It continues a run folder of
   the same command.
4. **Nothing half-written under a final name.** Files are written to a hidden
   temporary name in the same folder and renamed when complete.
5. **One writer per folder.** While a command writes a folder it holds a lock
   (``flock`` on ``.ocrkit.lock``, removed when the command ends); a second writer
   is refused with the first one's pid. The lock dies with its process, even on
   ``kill -9`` (the file is then left behind, unlocked, and is reused).

docs/safety.md lists what each command does with outputs that exist.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from typing import Callable, Iterable, Iterator

from ocrkit.errors import UsageError

LOCK_NAME = ".ocrkit.lock"
RUN_MARKER = ".ocrkit-run.json"
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "config.json", "curve.png")


# ----------------------------------------------------------------------------- paths
def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def contains(folder: str, path: str) -> bool:
    """True if ``path`` is ``folder`` or lies inside it (symlinks resolved)."""
    f, p = _real(folder), _real(path)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def refuse_inputs(out: str, inputs: Iterable[str], flag: str = "-o") -> None:
    """Refuse an output that is one of the inputs or a folder holding one."""
    if not os.path.lexists(out):
        return
    for item in inputs:
        if item == "-" or not os.path.exists(item):
            continue
        if contains(out, item):
            what = "is" if _real(out) == _real(item) else "contains"
            raise UsageError(f"{flag} {out} {what} the input {item}; ocrkit never writes over "
                             "its inputs: choose an output outside them")


def check_writable(path: str, flag: str = "-o", *, folder: bool = False) -> None:
    """Refuse early when ``path`` (a file, or with ``folder`` a folder) could not be
    created or written: its nearest existing ancestor must be a writable folder. No
    work is then done for an output that cannot land."""
    probe = _real(path) if folder else os.path.dirname(_real(path))
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{flag} {path}: cannot write there ({probe} is a file, not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write there ({probe} is read-only or not "
                         "ours: permission denied or a read-only file system)")


def check_output_file(path: str, *, overwrite: bool = False, inputs: Iterable[str] = (),
                      flag: str = "-o", replaceable: Callable[[str], bool] | None = None,
                      hint: str = "pass --overwrite to replace it") -> None:
    """Check a single output file before any work: not an input, not a folder, and
    not an existing file unless ``overwrite`` (or ``replaceable(path)`` says it is a
    regenerable ocrkit report)."""
    refuse_inputs(path, inputs, flag)
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a folder; name a file")
    if os.path.lexists(path) and not overwrite and not (replaceable and replaceable(path)):
        raise UsageError(f"{flag} {path}: already exists; {hint}")
    check_writable(path, flag)


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success and
    remove it on any failure or interruption (``path`` is then untouched)."""
    folder = os.path.dirname(_real(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


# ----------------------------------------------------------------------------- locks
class FolderLock:
    """An exclusive ``flock`` on ``FOLDER/.ocrkit.lock`` held while a command writes it."""

    def __init__(self, folder: str, command: str) -> None:
        self.folder, self.command = folder, command
        self.path = os.path.join(folder, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the folder checks still apply
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 4096).decode("utf-8", "replace")
                os.close(fd)
                try:
                    info = json.loads(holder)
                    who = (f"`ocrkit {info.get('command')}`, pid {info.get('pid')} on "
                           f"{info.get('host')}")
                except ValueError:
                    who = "another process"
                raise UsageError(f"{self.folder} is being written by {who}; wait for it to "
                                 "finish or choose another output") from None
            try:  # the holder we waited on may have removed the file: lock the current one
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"command": self.command, "pid": os.getpid(),
                                 "host": socket.gethostname()}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (the file goes first, while still
        held, so no other process can lock a file that is about to vanish)."""
        if self._fd is not None:
            try:
                os.remove(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_is_free(path: str) -> bool:
    """True when nobody holds the flock on lock file ``path`` (its writer is gone)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- run folders
def _run_state(out: str, entries: set[str]) -> tuple[bool, dict | None]:
    """(whether ``out`` is an ocrkit run folder, its marker or None)."""
    marker = None
    if RUN_MARKER in entries:
        try:
            with open(os.path.join(out, RUN_MARKER), encoding="utf-8") as fh:
                marker = json.load(fh)
        except (OSError, ValueError):
            marker = {}
        return True, marker
    ours = {e for e in entries if e in RUN_FILES or (e.startswith(".ckpt-") and e.endswith(".tmp"))}
    legacy = bool(ours) and ours == entries and bool({"last.pt", "best.pt"} & ours)
    return legacy, None


def _describe(out: str, entries: set[str]) -> str:
    last = os.path.join(out, "last.pt")
    if os.path.isfile(last):
        try:
            from ocrkit.checkpoint import load_checkpoint

            step = load_checkpoint(last).get("meta", {}).get("step")
            return f"last.pt at step {step}"
        except Exception:  # noqa: BLE001 - only a description
            return "last.pt"
    return ", ".join(sorted(entries)[:3])


def claim_run_folder(out: str, *, command: str, resume: bool = False,
                     overwrite: bool = False, inputs: Iterable[str] = ()) -> FolderLock:
    """Make ``out`` this run's folder and lock it; see the module rules.

    Returns the held lock (release it when the run ends). An empty or new folder
    is claimed; an ocrkit run folder needs ``resume`` (same command) or
    ``overwrite`` (its run files are deleted, nothing else); any other non-empty
    folder is refused.
    """
    if resume and overwrite:
        raise UsageError("give --resume or --overwrite, not both")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"-o {out}: exists and is not a folder")
    refuse_inputs(out, inputs)
    check_writable(out, folder=True)
    os.makedirs(out, exist_ok=True)
    lock = FolderLock(out, command).acquire()
    try:
        listing = set(os.listdir(out)) - {LOCK_NAME}
        entries = listing - {RUN_MARKER}
        is_run, marker = _run_state(out, listing)
        if entries or marker is not None:
            if not is_run:
                shown = ", ".join(sorted(entries)[:4]) + (" ..." if len(entries) > 4 else "")
                raise UsageError(f"-o {out}: not empty and not an ocrkit run folder (holds "
                                 f"{shown}); choose another -o")
            was = (marker or {}).get("command")
            if resume:
                if was and was != command:
                    raise UsageError(f"-o {out}: holds an `ocrkit {was}` run; resume it with "
                                     f"`ocrkit {was} --resume`, or choose another -o")
            elif entries:
                if not overwrite:
                    raise UsageError(
                        f"-o {out}: already holds a run ({_describe(out, entries)}); pass "
                        "--resume to continue it, --overwrite to start over, or choose another -o")
                for name in entries:
                    if name in RUN_FILES or (name.startswith(".ckpt-") and name.endswith(".tmp")):
                        os.remove(os.path.join(out, name))
        if marker is None or not resume:
            write_json(os.path.join(out, RUN_MARKER), {
                "command": command, "ocrkit": _version(),
                "created": datetime.datetime.now().isoformat(timespec="seconds")})
    except BaseException:
        lock.release()
        raise
    return lock


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str, obj) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False, indent=1)
            fh.write("\n")


def _version() -> str:
    from ocrkit import __version__

    return __version__


def main_process() -> bool:
    """Rank 0 under torchrun (only it writes outputs), or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


__all__ = ["FolderLock", "atomic_file", "check_output_file", "check_writable",
           "claim_run_folder", "contains", "file_sha256", "lock_is_free", "main_process",
           "refuse_inputs", "write_json"]
