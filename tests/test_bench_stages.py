"""bench/stages.py: a bench's OUT keeps the settings its stages ran with, and a later
run with other settings stops before it adds a stage (stages are cached by name, so
it would otherwise mix, say, float32 and bfloat16 rows in one table)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

from stages import Stages, amp_flags, format_spread, spread, spread_cell  # noqa: E402


def test_a_second_run_with_other_settings_stops_in_one_line(tmp_path):
    out = tmp_path / "bench"
    first = {"recipe": ["--lr", "1e-3", "--amp"], "scale": {"steps": 5000, "fractions": (0.1,)}}
    Stages(str(out)).same_settings(first)
    assert json.loads((out / "settings.json").read_text())["scale"]["fractions"] == [0.1]
    Stages(str(out)).same_settings(first)  # the same settings: more seeds may join
    with pytest.raises(SystemExit) as err:
        Stages(str(out)).same_settings({**first, "recipe": ["--lr", "1e-3", "--no-amp"]})
    message = str(err.value)
    assert "other settings (recipe" in message and "\n" not in message
    assert json.loads((out / "settings.json").read_text())["recipe"][-1] == "--amp"


def test_amp_flags_auto_follows_the_cpu_and_explicit_choices_win(monkeypatch):
    import ocrkit.device

    monkeypatch.setattr(ocrkit.device, "cpu_has_bf16", lambda: True)
    assert amp_flags(None, "cpu") == ["--amp"]
    monkeypatch.setattr(ocrkit.device, "cpu_has_bf16", lambda: False)
    assert amp_flags(None, "cpu") == ["--no-amp"]
    assert amp_flags(None, "cpu", auto=False) == []  # the loop's own default
    assert amp_flags(True, "cpu", auto=False) == ["--amp"]
    assert amp_flags(False, "cpu") == ["--no-amp"]


def test_a_run_from_an_archived_snapshot_names_its_commit(monkeypatch):
    """`git archive` fills ARCHIVED_COMMIT in (.gitattributes); outside a checkout the
    benches' provenance names that commit, inside one git's HEAD."""
    import subprocess

    import stages

    assert (stages.ARCHIVED_COMMIT.startswith("$Format")
            or len(stages.ARCHIVED_COMMIT) == 40)  # a checkout, or an archive of one
    monkeypatch.setattr(stages, "ARCHIVED_COMMIT", "c0ffee" * 6 + "abcd")

    def no_git(*args, **kwargs):
        raise subprocess.CalledProcessError(128, "git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert stages.provenance()["commit"] == "c0ffee" * 6 + "abcd (git archive)"
    monkeypatch.setattr(stages, "ARCHIVED_COMMIT", "$Format:%H$")
    assert stages.provenance()["commit"] is None


def test_spread_is_the_mean_min_and_max_and_one_seed_shows_alone():
    mean, lo, hi = spread([0.42, 0.40, 0.47], 100)
    assert (round(mean, 6), round(lo, 6), round(hi, 6)) == (43.0, 40.0, 47.0)
    assert spread_cell([0.42, 0.40, 0.47], 100) == "43.0 (40.0-47.0)"
    assert spread_cell([0.425], 100) == "42.5"
    # three seeds that agree still say they are three (a range, not one run)
    assert format_spread(95.0, 95.0, 95.0, 3, digits=2) == "95.00 (95.0-95.0)"
    with pytest.raises(ValueError):
        spread([])
