"""Shared fixtures: a CJK font, a CLI runner, small synthetic datasets."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from data_tools.synth.fonts import pip_font_files, system_font_files

LATIN_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)


def pytest_configure(config) -> None:
    # Tiny models on a 2-core machine: one thread per process (this one and every ocrkit
    # subprocess a test starts) runs the suite faster than torch's default of one per core,
    # and two subprocesses of one test (torchrun) do not fight over the cores. Before torch
    # is imported; a value the caller set wins.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # The README's test command runs every test (CI too); `-m "not slow"` leaves out the
    # long end-to-end ones (subprocess runs, torchrun, the demo) while working on a part.
    config.addinivalue_line("markers", "slow: a long end-to-end test (subprocesses, "
                                       "torchrun, the demo); run by default")


@pytest.fixture(scope="session")
def cjk_font() -> str:
    """The pip-installed Noto Sans CJK (``pip install ".[fonts]"``): tests need it."""
    found = pip_font_files()
    if not found:
        pytest.fail("no CJK font: install the test extras with pip install '.[fonts,test]'")
    return found[0]


@pytest.fixture(scope="session")
def latin_font() -> str:
    """A font without CJK glyphs (DejaVu Sans where present)."""
    for path in LATIN_CANDIDATES + tuple(f for f in system_font_files() if "DejaVuSans" in f):
        if os.path.isfile(path):
            return path
    pytest.skip("no Latin-only system font here")


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        from ocrkit.cli import cli

        return self.runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def read_labels(folder) -> list[dict]:
    with open(os.path.join(folder, "labels.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="session")
def multirow_set(tmp_path_factory, cjk_font) -> str:
    """A 3-row, 12-image synthetic folder shared by read-only tests."""
    from ocrkit.cli import cli

    out = tmp_path_factory.mktemp("sets") / "m3"
    result = CliRunner().invoke(cli, ["synth", "--rows", "3", "-n", "12", "--seed", "5",
                                      "--font", cjk_font, "--out", str(out), "-w", "1", "-q"])
    assert result.exit_code == 0, result.output
    return str(out)


def free_port() -> str:
    """A TCP port nobody listens on now (for torchrun's --master_port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def one_line_error(res, code: int, *needles: str) -> str:
    """Assert exit ``code``, no traceback, and that stderr ends with a single
    ``ocrkit: error: ...`` line holding every needle; returns that line."""
    stderr = res.stderr
    assert res.exit_code == code, stderr
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("ocrkit: error:")]
    assert len(errors) == 1 and stderr.rstrip("\n").endswith(errors[0]), stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]
