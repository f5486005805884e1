"""`ocrkit demo --head attention`: the English demos train an attention decoder (the
specialists unified distillation learns from) and write what docs/unified.md reads;
CTC stays the default, and the Chinese demo refuses the option."""

from __future__ import annotations


import pytest

from conftest import one_line_error
from ocrkit.demo import EnglishDemoConfig, english_train_options


@pytest.mark.parametrize("task, longest", [("scene-en", 16), ("handwriting-en", 20)])
def test_attention_head_reads_the_longest_word_the_demo_draws(task, longest):
    cfg = EnglishDemoConfig(task=task, head="attention")
    opts = english_train_options(cfg, "t.lmdb", "v.lmdb", "charset.txt", "run")
    assert opts["head"] == "attention" and opts["head_args"] == {"max_length": longest}
    assert cfg.max_chars == longest  # the synthesized words' longest label (--cols)
    ctc = english_train_options(EnglishDemoConfig(task=task), "t.lmdb", "v.lmdb",
                                "charset.txt", "run")
    assert ctc["head"] == "ctc" and ctc["head_args"] == {}
    # the encoder and recipe are the same for both heads
    same = {k: v for k, v in opts.items() if not k.startswith("head")}
    assert same == {k: v for k, v in ctc.items() if not k.startswith("head")}


def test_chinese_demo_refuses_the_attention_head(cli, tmp_path):
    # tiny sizes: a build that forgot the refusal runs a short demo, not the full one
    res = cli("demo", "--head", "attention", "--out", tmp_path / "d", "--train-images", 10,
              "--test-images", 1, "--steps", 1, "--charset-size", 10, "-q")
    one_line_error(res, 2, "--head attention is for the English demos")
    assert not (tmp_path / "d").exists()


def test_english_demos_train_in_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    import ocrkit.device as device

    for native, expected in ((True, True), (False, False)):
        monkeypatch.setattr(device, "cpu_has_bf16", lambda native=native: native)
        opts = english_train_options(EnglishDemoConfig(device="cpu"), "t", "v", "c", "r")
        assert opts["amp"] is expected and opts["bucket_widths"] == 16
    chosen = EnglishDemoConfig(device="cpu", amp=False)  # a setting given wins
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    assert english_train_options(chosen, "t", "v", "c", "r")["amp"] is False


def test_chinese_demo_refuses_amp(cli, tmp_path):
    res = cli("demo", "--amp", "--out", tmp_path / "d", "--train-images", 10,
              "--test-images", 1, "--steps", 1, "--charset-size", 10, "-q")
    one_line_error(res, 2, "--amp/--no-amp is for the English demos")
    assert not (tmp_path / "d").exists()
