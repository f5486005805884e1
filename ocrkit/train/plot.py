"""Training-curve PNG drawn with Pillow (no plotting dependency): training loss and
each named loss term (log scale, one shared axis) and the validation metric
(0..1) by step."""

from __future__ import annotations

import json
import math

from PIL import Image, ImageDraw

W, H, PAD = 720, 360, 48


TERM_COLOURS = ((40, 150, 60), (150, 60, 170), (230, 140, 20), (20, 150, 160), (120, 120, 40),
                (200, 80, 140))


def plot_curves(metrics_path: str, out_path: str, metric: str) -> None:
    losses, vals = [], []
    terms: dict[str, list] = {}
    with open(metrics_path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if "loss" in rec and rec["loss"] > 0:
                losses.append((rec["step"], math.log10(rec["loss"])))
            for name, value in rec.get("terms", {}).items():
                if value > 0:
                    terms.setdefault(name, []).append((rec["step"], math.log10(value)))
            if "val" in rec and metric in rec["val"]:
                vals.append((rec["step"], float(rec["val"][metric])))
    if not losses and not vals:
        return
    last = max(s for s, _ in losses + vals) or 1
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.rectangle((PAD, PAD // 2, W - PAD, H - PAD), outline=(120, 120, 120))

    def xy(step, y, lo, hi):
        x = PAD + (W - 2 * PAD) * step / last
        return x, (H - PAD) - (H - 1.5 * PAD) * (y - lo) / max(hi - lo, 1e-9)

    if losses:
        every = losses + [p for pts in terms.values() for p in pts]
        lo, hi = min(v for _, v in every), max(v for _, v in every)
        for k, (name, pts) in enumerate(sorted(terms.items())):
            colour = TERM_COLOURS[k % len(TERM_COLOURS)]
            if len(pts) > 1:
                d.line([xy(s, v, lo, hi) for s, v in pts], fill=colour, width=1)
            d.text((PAD + 6, PAD // 2 + 4 + 12 * k), name, fill=colour)
        d.line([xy(s, v, lo, hi) for s, v in losses], fill=(200, 60, 40), width=2)
        d.text((PAD, 4), f"log10 loss {hi:.2f} .. {lo:.2f}", fill=(200, 60, 40))
    if vals:
        d.line([xy(s, v, 0.0, 1.0) for s, v in vals], fill=(30, 90, 200), width=2)
        for s, v in vals:
            x, y = xy(s, v, 0.0, 1.0)
            d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(30, 90, 200))
        d.text((W // 2, 4), f"val {metric} (0..1), last {vals[-1][1]:.3f}", fill=(30, 90, 200))
    d.text((W // 2 - 20, H - PAD + 8), f"step (0 .. {last})", fill=(0, 0, 0))
    img.save(out_path)
