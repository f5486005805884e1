"""The ocrkit command: light start-up, help, aliases, errors."""

from __future__ import annotations

import subprocess
import sys

from ocrkit.cli import COMMANDS


def test_help_lists_commands_without_importing_torch():
    code = (
        "import sys\n"
        "from ocrkit.cli import main\n"
        "sys.argv = ['ocrkit', '--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'numpy', 'PIL', 'lmdb') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout


def test_subcommand_help_does_not_import_torch():
    code = (
        "import sys\nfrom ocrkit.cli import main\n"
        "for cmd in ('synth', 'build-lmdb', 'stats', 'fonts'):\n"
        "    sys.argv = ['ocrkit', cmd, '--help']\n"
        "    try:\n        main()\n    except SystemExit as e:\n        assert e.code == 0\n"
        "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "TORCH False" in proc.stderr
    assert "--box-lines" in proc.stdout and "book order" in proc.stdout


def test_unknown_command_and_bad_flag_are_one_line_exit_2(cli):
    res = cli("synthesise")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "ocrkit: error:" in res.stderr
    res = cli("synth", "--rows", "many")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "--rows" in res.stderr


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "ocrkit", "--version"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.startswith("ocrkit, version")


def test_fonts_lists_the_pip_font(cli, cjk_font):
    res = cli("fonts", "--font", cjk_font)
    assert res.exit_code == 0 and '"index": 2' in res.stdout and "CJK SC" in res.stdout
