"""bench/emu_bench.py keeps a run only when the bench trained it to its end with the
same command: a run cut by a stop (its best.pt is a mid-run checkpoint) is trained
again, and a run of other settings stops the bench instead of entering its table."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

import emu_bench as eb


@pytest.fixture
def trainings(monkeypatch):
    """Every ``ocrkit`` command the bench runs, with a fake that writes best.pt."""
    calls = []

    def fake(args, log):
        calls.append([str(a) for a in args])
        run = args[args.index("-o") + 1]
        os.makedirs(run, exist_ok=True)
        open(os.path.join(run, "best.pt"), "wb").close()
        return {}
    monkeypatch.setattr(eb, "_ocrkit", fake)
    return calls


def test_a_finished_run_is_kept_and_a_cut_one_is_trained_again(tmp_path, trainings):
    common = ["--max-steps", 10]
    run = eb._train(str(tmp_path), "CRNN softmax", ["train"], common, 0, None)
    assert run == str(tmp_path / "CRNN-softmax-s0") and len(trainings) == 1
    assert trainings[0][-1] == "--overwrite" and trainings[0][-3:-1] == ["-o", run]
    assert eb._train(str(tmp_path), "CRNN softmax", ["train"], common, 0, None) == run
    assert len(trainings) == 1  # finished with this command: kept
    # a run cut at step 5 of 10 has a best.pt but no mark of the bench's
    cut = tmp_path / "CRNN-EMU-s1"
    cut.mkdir()
    (cut / "best.pt").write_bytes(b"mid-run")
    eb._train(str(tmp_path), "CRNN EMU", ["train-emu"], common, 1, None)
    assert len(trainings) == 2 and trainings[1][0] == "train-emu"
    assert (cut / eb.DONE).is_file()


def test_a_run_of_other_settings_stops_the_bench(tmp_path, trainings):
    eb._train(str(tmp_path), "CRNN softmax", ["train"], ["--max-steps", 10], 0, None)
    with pytest.raises(SystemExit, match="was trained by another command"):
        eb._train(str(tmp_path), "CRNN softmax", ["train"], ["--max-steps", 20], 0, None)
    assert len(trainings) == 1
