"""One exception hierarchy: user mistakes become one-line CLI errors.

The CLI prints ``ocrkit: error: <message>`` and exits with ``exit_code``: 2 for
problems with what the user asked for (flags, files, fonts, corpora), 1 for
failures while working (a full disk, an interrupted write).
"""

from __future__ import annotations


class OcrkitError(Exception):
    """A failure the user can act on; carries the process exit code."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(OcrkitError):
    """Bad input from the user: a flag, a file, a font, a corpus (exit 2)."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so cleanup code runs as for Ctrl-C (exit 143)."""


class Interrupted(OcrkitError):
    """Work stopped by Ctrl-C (exit 130) or SIGTERM (exit 143) after saving what it
    could; the message says how to continue."""

    exit_code = 130


def plain_message(exc: BaseException) -> str:
    """The message of ``exc`` as a user should read it. An exception raised in a
    DataLoader worker reaches the main process rebuilt around the worker's whole
    traceback ("Caught UsageError in DataLoader worker process 0. Original
    Traceback ..."): its last line holds the original message."""
    import re

    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = next((line for line in reversed(text.splitlines()) if line.strip()), text)
    return re.sub(r"^[\w.]+: ", "", last.strip(), count=1)
