"""Set up a supervised run from `ocrkit train`'s option dict and run the loop."""

from __future__ import annotations

import os

import torch

from ocrkit import registry
from ocrkit.charset import Charset
from ocrkit.console import default_workers, stderr_console
from ocrkit.data import open_dataset
from ocrkit.errors import UsageError
from ocrkit.models.recognizer import Recognizer, make_spec
from ocrkit.train.data import Collate, InputSpec
from ocrkit.train.loop import Trainer, TrainConfig
from ocrkit.train.methods import SupervisedCTC


def run_training(opts: dict, method_factory=None) -> dict | None:
    """Datasets, charset, model and loop from `ocrkit train`'s options (also the demo's)."""
    quiet = opts["quiet"]
    console = stderr_console(quiet)
    train_set = open_dataset(list(opts["train_paths"]))
    val_set = open_dataset(list(opts["val_paths"])) if opts["val_paths"] else None
    last = os.path.join(opts["out"], "last.pt")
    if opts["resume"] and os.path.isfile(last):  # the weights' own charset, whatever the data
        from ocrkit.checkpoint import load_checkpoint

        charset = Charset(load_checkpoint(last)["charset"])
    elif opts["charset"]:
        charset = Charset.load(opts["charset"])
    else:
        charset = Charset.from_labels(train_set.labels())
    rows = opts.get("rows") or 1
    neck_args = dict(opts["neck_args"])
    if getattr(registry.get("necks", opts["neck"]).load(), "geometry", False):
        neck_args.setdefault("rows", rows)
        if neck_args["rows"] != rows:
            raise UsageError(f"--neck-arg rows={neck_args['rows']} contradicts --rows {rows}")
    elif rows > 1:
        raise UsageError(f"--rows {rows} needs a multi-row neck (multirow-stretch or "
                         f"row-attention), not {opts['neck']!r}")
    spec = make_spec(opts["backbone"], opts["neck"], opts["sequence"], opts["classifier"],
                     opts["head"], backbone_args=opts["backbone_args"],
                     neck_args=neck_args, sequence_args=opts["sequence_args"],
                     classifier_args=opts["classifier_args"], head_args=opts["head_args"])
    multirow = rows > 1
    input_spec = InputSpec(
        height=opts["height"] or (224 if multirow else 32),
        width=opts["width"] or (224 if multirow else 256),
        policy=opts["resize"] or ("stretch" if multirow else "keep-ratio"), rows=rows)
    if input_spec.height < 8 or input_spec.width < 8:
        raise UsageError("--height and --width must be at least 8")
    torch.manual_seed(opts["seed"])  # same seed, same initial weights: runs are reproducible
    model = Recognizer(spec, charset.num_classes,
                       input_size=(input_spec.height, input_spec.width))
    if opts.get("denoiser"):
        from ocrkit.models.denoise import attach_denoiser

        attach_denoiser(model, opts["denoiser"], input_spec,
                        warn=lambda m: console.print(m, highlight=False))
    spec = model.spec  # with the measured feature geometry and the denoiser
    cfg = TrainConfig.from_options(opts)
    method = (method_factory or SupervisedCTC)(charset)
    extra = {"spec": spec, "charset": charset.chars,
             "input": {**input_spec.__dict__}, "train_data": [os.path.abspath(p) for p in
                                                              opts["train_paths"]]}
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"model {spec['backbone']['name']}+{spec['neck']['name']}"
                      f"+{(spec['sequence'] or {}).get('name', 'none')}: {params / 1e6:.2f} M "
                      f"parameters, {charset.num_classes} classes, {len(train_set)} training "
                      f"images", highlight=False)
    trainer = Trainer(model, method, train_set, val_set,
                      Collate(input_spec, charset, opts["unknown"]), cfg, extra,
                      console_print=lambda m: console.print(m, highlight=False))
    summary = trainer.fit()
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return {"out": opts["out"], "parameters": params, "classes": charset.num_classes, **summary}
