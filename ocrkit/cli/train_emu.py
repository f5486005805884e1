"""`ocrkit train-emu`: a recognizer with the EMU multi-hot classifier (Li et al. 2022).

Sugar over `ocrkit train`: the same loop, data, model options and run folder, with
``--classifier multihot`` and the paper's hyper-parameters as options.
"""

from __future__ import annotations

import os

import click
from click.core import ParameterSource

from ocrkit.cli._common import (
    FiniteFloat,
    adopt_run_config,
    config_option,
    json_line,
    replayable,
)
from ocrkit.cli.train import model_options, train_options


def emu_options(f):
    options = [
        click.option("--bits", "-K", type=click.IntRange(min=8), default=512, show_default=True,
                     help="K, bits per class code (a multiple of 8; 64 for word-wide popcount)."),
        click.option("--scale", type=FiniteFloat(0, open_min=True), default=20.0,
                     show_default=True,
                     help="Logit scale s of the cosine (Eq. 12's tau = 20, read as a scale)."),
        click.option("--mu", type=FiniteFloat(0, open_min=True), default=1.0, show_default=True,
                     help="Eq. 13: beta_hat = mu / loss."),
        click.option("--lambda-reg", type=FiniteFloat(0), default=1e-4, show_default=True,
                     help="Eq. 14: weight of the -1(beta < beta_hat) * beta regulariser."),
        click.option("--gamma", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=0.999, show_default=True,
                     help="Eq. 15: EMA decay of the class codes' sharpness beta'."),
        click.option("--emu-grad", type=click.Choice(["literal", "exact"]), default="literal",
                     show_default=True,
                     help="literal: Eq. 17's replaced gradients; exact: Eq. 16's."),
        click.option("--beta-mode", type=click.Choice(["adaptive", "schedule"]),
                     default="adaptive", show_default=True,
                     help="adaptive: the beta-net (Eq. 10); schedule: beta = (1 + 0.5 i)^0.5 "
                          "(the paper's ablation without it)."),
        click.option("--classnet-hidden", type=click.IntRange(min=1), default=256,
                     show_default=True, help="ClassNet's hidden width (not in the paper)."),
        click.option("--beta-hidden", type=click.IntRange(min=1), default=64, show_default=True,
                     help="The beta-net MLP's hidden width (not in the paper)."),
        click.option("--scoring", type=click.Choice(["float", "popcount"]), default="float",
                     show_default=True,
                     help="How the deployed model scores classes: a +-1 matrix product, or "
                          "XOR and popcount of packed codes (CPU; same scores)."),
        click.option("--embed-map", type=click.Choice(["proj", "linear"]), default="proj",
                     show_default=True,
                     help="--head lightformer: how the decoder's output embedding maps the "
                          "K-bit codes to d: the projection P (no parameters) or a K x d "
                          "matrix of its own (r*K*d bytes more)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


# --head lightformer: Light-Former's model (Tables I-II: MobileNetV3-small, 48x160 input;
# the decoder reads every cell of the 6 x 40 map) for the options not given.
LIGHTFORMER = {"backbone": "mobilenetv3-small", "neck": "tokens", "sequence": "none",
               "height": 48, "width": 160}

EMU_KEYS = {"bits": "bits", "scale": "scale", "mu": "mu", "lambda_reg": "lam",
            "gamma": "gamma", "emu_grad": "grad", "beta_mode": "beta_mode",
            "classnet_hidden": "classnet_hidden", "beta_hidden": "beta_hidden",
            "scoring": "scoring", "embed_map": "embed_map"}


@click.command("train-emu", context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit train-emu --train s1/train --val s1-val -o runs/emu --max-steps 3000
  ocrkit train-emu --train s1/train --val s1-val -o runs/lf-emu --head lightformer
  ocrkit train-emu --train s1/train --val s1-val -o runs/emu-k256 --bits 256 \\
      --backbone mobilenetv3-small --neck cap --height 48 --width 160
  ocrkit info runs/emu/best.pt        # parameters and bytes per part, code distances
""")
@train_options
@model_options(exclude=("classifier", "classifier_args"))
@emu_options
@config_option("train-emu")
def train_emu(**opts) -> None:
    """Train a recognizer whose classifier is EMU's multi-hot codes: under CTC
    (PP-OCR + EMU, Table VII) or Light-Former's decoder (--head lightformer:
    MobileNetV3-small, tokens, 48x160 unless given; the decoder's output embedding
    is the codebook).

    best.pt holds the deployable form: the projection and a bit-packed codebook
    (ClassNet and the beta-net dropped); last.pt keeps everything for --resume.
    Every EMU term (emu_reg, beta, beta_prime) is logged in metrics.jsonl. The summary
    JSON adds the codebook's minimum Hamming distance and duplicate codes.
    """
    from ocrkit.methods.supervised import train_supervised

    ctx = click.get_current_context()
    taken = adopt_run_config(ctx, opts, "train-emu")
    if opts["bits"] % 8:
        raise click.BadParameter(f"{opts['bits']}: K must be a multiple of 8",
                                 param_hint="--bits")
    if opts["head"] == "lightformer":  # Light-Former-EMU: the paper's model unless told
        for key, value in LIGHTFORMER.items():
            if ctx.get_parameter_source(key) in (ParameterSource.DEFAULT, None) and \
                    key not in taken:
                opts[key] = value
    opts["_config"] = replayable("train-emu", opts)
    opts["classifier"] = "multihot"
    opts["classifier_args"] = {arg: opts[key] for key, arg in EMU_KEYS.items()}
    opts["_flag_names"] = {f"spec.classifier.args.{arg}": f"--{key.replace('_', '-')}"
                           for key, arg in EMU_KEYS.items()}
    result = train_supervised(opts)
    if result is None:
        return
    best = os.path.join(opts["out"], "best.pt")
    if os.path.isfile(best):
        from ocrkit.checkpoint import load_checkpoint
        from ocrkit.models.recognizer import build_model

        model, _ = build_model(load_checkpoint(best))
        result["codes"] = model.classifier.code_report()
        if result["codes"]["duplicate_pairs"]:
            click.echo(f"ocrkit: warning: {result['codes']['duplicate_pairs']} pairs of "
                       "classes share a code and cannot be told apart; train longer or "
                       "raise --bits", err=True)
    click.echo(json_line(result))
