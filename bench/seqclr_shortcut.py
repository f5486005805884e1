"""Does a SeqCLR encoder pair its two views by colour? Its positive-pair top-1 and NT-Xent
on validation images with the pre-training's own views (Appendix B), with SimCLR's colour
distortion added to each view independently, and with both views grey.

With the window mapping it also says what tells the instances apart, from the
pre-training's own views: top-1 of the positive among the other windows of the same
image only (both views: position or the letters there), and among the same window of
the other images only (the image's letters or its style); and the mean cosine
similarity of the projected instances of: a positive pair; two windows of one image;
the same window of two images; other windows of two images. A high third against
the fourth means the instances carry their position in the word.

    python bench/seqclr_shortcut.py RUN VAL      # RUN: an ocrkit pretrain folder (its last.pt)
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

PAIRS = ("pos", "same_image", "same_window", "other")


def window_stats(za: torch.Tensor, zb: torch.Tensor, windows: int) -> dict:
    """Sums and counts over one batch's instances ``[M, D]`` per view (image-major,
    ``windows`` per image): positives beating every rival of the same image
    (``within``) and of the same window in other images (``across``), and the summed
    cosine similarity of each kind of pair."""
    z = F.normalize(torch.cat([za, zb]).float(), dim=1)
    m = za.shape[0]
    cos = z @ z.t()
    idx = torch.arange(2 * m)
    image, window = (idx % m) // windows, idx % windows
    same_img, same_win = image[:, None] == image[None, :], window[:, None] == window[None, :]
    masks = {"pos": (idx[:, None] % m == idx[None, :] % m) & (idx[:, None] != idx[None, :]),
             "same_image": same_img & ~same_win, "same_window": ~same_img & same_win,
             "other": ~same_img & ~same_win}
    pos = cos[masks["pos"]]  # one positive per row, in row order
    out = {"anchors": 2 * m}
    for key, mask in (("within", masks["same_image"]), ("across", masks["same_window"])):
        rival = cos.masked_fill(~mask, float("-inf")).max(dim=1).values
        out[key] = int((pos > rival).sum())
    for key in PAIRS:
        out[f"sum {key}"], out[f"n {key}"] = float(cos[masks[key]].sum()), int(masks[key].sum())
    return out


def summary(stats: list[dict]) -> dict:
    total = {k: sum(s[k] for s in stats) for k in stats[0]}
    return {"top1 within the image": round(100 * total["within"] / total["anchors"], 1),
            "top1 across images, same window":
                round(100 * total["across"] / total["anchors"], 1),
            **{f"cos {k}": round(total[f"sum {k}"] / max(total[f"n {k}"], 1), 3)
               for k in PAIRS}}


class Grey:
    def __init__(self, aug):
        self.aug = aug

    def __call__(self, im, rng):
        return self.aug(im, rng).convert("L").convert(im.mode)


def main() -> None:
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

    def loader(aug):
        return DataLoader(TwoViews(data, input_spec, aug, 0), batch_size=64,
                          collate_fn=ViewCollate(input_spec), num_workers=0)

    ops = tuple(sc["augment_ops"])
    out = {}
    for name, aug in (("appendix B", SeqAugment(ops=ops)),
                      ("+ colour distortion 1", SeqAugment(ops=ops, colour=1.0)),
                      ("both views grey", Grey(SeqAugment(ops=ops)))):
        r = method.validate(net, loader(aug), torch.device("cpu"))
        out[name] = {"top1": round(100 * r["top1"], 1), "nt_xent": round(r["loss"], 3)}
        print(name, out[name], flush=True)
    if sc["mapping"] == "window":
        with torch.no_grad():
            stats = [window_stats(*method.views(net, b["images"], b["widths"]), sc["windows"])
                     for b in loader(SeqAugment(ops=ops))]
        out["what separates instances"] = summary(stats)
        print("what separates instances", out["what separates instances"], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
