"""Charset encoding and safe checkpoints."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from ocrkit.charset import Charset
from ocrkit.checkpoint import load_checkpoint, save_checkpoint
from ocrkit.errors import OcrkitError, UsageError
from ocrkit.models.recognizer import Recognizer, build_model, make_spec


def test_charset_blank_zero_roundtrip_and_policies(tmp_path):
    cs = Charset.from_labels(["天地天", "地玄\n天"])
    assert cs.chars == ["天", "地", "玄"] and cs.num_classes == 4
    assert cs.encode("天玄") == [1, 3] and cs.decode([0, 1, 0, 3, 9]) == "天玄"
    with pytest.raises(OcrkitError, match="not in the charset"):
        cs.encode("天X")
    assert cs.encode("天X", "skip") == [1]
    assert cs.encode("天X", "replace", "地") == [1, 2]
    path = tmp_path / "dict.txt"
    cs.save(path)
    assert Charset.load(path).chars == cs.chars and Charset.load(path).digest == cs.digest
    with pytest.raises(UsageError, match="twice"):
        Charset(["a", "a"])


def _tiny_model():
    spec = make_spec("vgg-small", backbone_args={"channels": (4, 4, 8, 8)},
                     sequence_args={"hidden": 8, "layers": 1})
    return spec, Recognizer(spec, 4)


def test_checkpoint_roundtrip(tmp_path):
    spec, model = _tiny_model()
    path = tmp_path / "m.pt"
    save_checkpoint(str(path), {"spec": spec, "charset": ["a", "b", "c"],
                                "input": {"height": 32, "width": 64}, "state_dict": model.state_dict()})
    ckpt = load_checkpoint(str(path))
    restored, charset = build_model(ckpt)
    x = torch.rand(1, 1, 32, 64)
    model.eval()
    assert torch.equal(restored(x), model(x)) and charset.chars == ["a", "b", "c"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_payload_is_refused_without_running(tmp_path, cli):
    marker = tmp_path / "pwned"
    payload = _Payload()
    _Payload.marker = str(marker)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "ocrkit-checkpoint", "version": 1, "x": payload}, fh)
    torch.save({"format": "ocrkit-checkpoint", "version": 1, "x": payload}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        with pytest.raises(UsageError, match="refused|not a readable"):
            load_checkpoint(str(p))
    assert not marker.exists()
    res = cli("evaluate", tmp_path / "evil2.pt", tmp_path)
    assert res.exit_code == 2 and "refused" in res.stderr and res.stderr.count("\n") == 1
    assert not marker.exists()
