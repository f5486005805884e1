"""bench/emu_bench.py keeps a run only when the bench trained it to its end with the
same command: a run cut by a stop (its best.pt is a mid-run checkpoint) is trained
again, and a run of other settings stops the bench instead of entering its table;
``select`` chooses Light-Former's settings on the validation split alone."""

from __future__ import annotations

import json
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
        _write_run(args)
        return {}
    monkeypatch.setattr(eb, "_ocrkit", fake)
    return calls


def _write_run(args) -> None:
    """What a training (or synth) command leaves in its ``-o`` folder, for the bench."""
    run = str(args[list(args).index("-o") + 1])
    os.makedirs(run, exist_ok=True)
    open(os.path.join(run, "best.pt"), "wb").close()
    with open(os.path.join(run, "config.json"), "w") as fh:
        fh.write('{"options": {"max_steps": 20}}')


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


def test_select_reads_only_validation_and_its_winners_reuse_their_runs(tmp_path, monkeypatch,
                                                                       capsys):
    """``select`` ranks the Light-Former candidates by the validation split alone (the
    fake test split ranks them the other way round); ``accuracy`` given the options it
    prints trains the winners at the other seeds only."""
    val_score = {"Light-Former-crnn-encoder": 0.60, "Light-Former-crnn-encoder-CTC-0.5": 0.50,
                 "Light-Former-EMU-crnn-encoder": 0.30,
                 "Light-Former-EMU-crnn-encoder-CTC-0.5": 0.45,
                 "Light-Former-EMU-crnn-encoder-CTC-0.5-embed-map-linear": 0.40,
                 "Light-Former-EMU-crnn-encoder-CTC-0.5-embed-map-linear-bits-384": 0.55}
    calls = []

    def fake(args, log):
        args = [str(a) for a in args]
        calls.append(args)
        if "-o" in args:
            _write_run(args)
            return {}
        if args[0] == "info":
            return {"classes": 9, "tensor_bytes": 2 ** 20, "parts": {"classifier": {"bytes": 0}}}
        run = os.path.basename(os.path.dirname(args[1])).rsplit("-s", 1)[0]
        score = val_score[run]
        if not args[2].endswith("-val"):
            score = 1.0 - score  # the test split would choose the other candidates
        return {"one_minus_ned": score, "accuracy": score / 2}
    monkeypatch.setattr(eb, "_ocrkit", fake)
    common = ["--out", str(tmp_path), "--steps", "20", "--classes", "9", "--lf-encoder", "crnn",
              "--lf-lr", "1e-3"]
    monkeypatch.setattr(sys, "argv", ["emu_bench.py", "select", *common])
    eb.main()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert not [c for c in calls if c[0] == "evaluate" and not c[2].endswith("-val")]
    chosen = {r["decoder"]: r["model"] for r in lines if r.get("selected")}
    assert chosen == {"Light-Former": "Light-Former +crnn-encoder",
                      "Light-Former-EMU": "Light-Former-EMU +crnn-encoder +CTC 0.5 "
                                          "+embed-map-linear +bits-384"}
    options = lines[-1]["accuracy_options"]
    assert options == ["--lf-softmax-ctc-weight", "0", "--lf-ctc-weight", "0.5",
                       "--lf-embed-map", "linear", "--lf-bits", "384"]
    before = len(calls)
    monkeypatch.setattr(sys, "argv", ["emu_bench.py", "accuracy", *common, "--models",
                                      "Light-Former,Light-Former-EMU", *options])
    eb.main()
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == sorted(chosen.values())
    new = [c[c.index("-o") + 1] for c in calls[before:] if "-o" in c]
    assert sorted(os.path.basename(r) for r in new) == sorted(
        f"{m.replace(' +', '-').replace(' ', '-')}-s{s}" for m in chosen.values() for s in (1, 2))
    # the winners' test figures are read at every seed, the losers' never
    assert rows[0]["1-NED"][0] == 40.0 and rows[1]["1-NED"][0] == 45.0
