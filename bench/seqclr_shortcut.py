"""Does a SeqCLR encoder pair its two views by colour? Its positive-pair top-1 and NT-Xent
on validation images with the pre-training's own views (Appendix B), with SimCLR's colour
distortion added to each view independently, and with both views grey.

    python bench/seqclr_shortcut.py RUN VAL      # RUN: an ocrkit pretrain folder (its last.pt)
"""

from __future__ import annotations

import json
import sys

import torch
from torch.utils.data import DataLoader

from ocrkit.checkpoint import load_checkpoint
from ocrkit.data.batch import InputSpec
from ocrkit.data.seq_augment import SeqAugment
from ocrkit.data.unlabelled import open_unlabelled
from ocrkit.data.views import TwoViews, ViewCollate
from ocrkit.methods.seqclr import SeqCLR, SeqCLRNet
from ocrkit.models.encoder import Encoder

if len(sys.argv) != 3:
    sys.exit("usage: python bench/seqclr_shortcut.py RUN VAL")
run, val = sys.argv[1], sys.argv[2]
ck = load_checkpoint(f"{run}/last.pt")
spec, inp = ck["spec"], ck["input"]
sc = spec["seqclr"]
input_spec = InputSpec(height=inp["height"], width=inp["width"], policy=inp["policy"],
                       channels=inp["channels"])
enc_spec = {k: v for k, v in spec.items() if k != "seqclr"}
encoder = Encoder(enc_spec, input_size=(input_spec.height, input_spec.width))
net = SeqCLRNet(encoder, sc["representation"], sc["projection"], sc["projection_dim"])
net.load_state_dict(ck["train_state"]["net"])
net.eval()
data = open_unlabelled([val], input_spec.mode)
method = SeqCLR(sc["mapping"], sc["windows"], sc["temperature"])


class Grey:
    def __init__(self, aug):
        self.aug = aug

    def __call__(self, im, rng):
        return self.aug(im, rng).convert("L").convert(im.mode)


out = {}
for name, aug in (("appendix B", SeqAugment(ops=tuple(sc["augment_ops"]))),
                  ("+ colour distortion 1", SeqAugment(ops=tuple(sc["augment_ops"]), colour=1.0)),
                  ("both views grey", Grey(SeqAugment(ops=tuple(sc["augment_ops"]))))):
    loader = DataLoader(TwoViews(data, input_spec, aug, 0), batch_size=64,
                        collate_fn=ViewCollate(input_spec), num_workers=0)
    r = method.validate(net, loader, torch.device("cpu"))
    out[name] = {"top1": round(100 * r["top1"], 1), "nt_xent": round(r["loss"], 3)}
    print(name, out[name], flush=True)
print(json.dumps(out))
