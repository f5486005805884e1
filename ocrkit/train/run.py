"""Set up a supervised run from `ocrkit train`'s option dict and run the loop.

The order is the user's protection: options are checked, then the run folder is
claimed (refused if it holds another run, locked against a second writer), then
data, charset and model are checked (unknown characters counted and reported,
the model run once on a blank input) - all before the first step.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ocrkit import registry
from ocrkit.charset import Charset
from ocrkit.console import stderr_console
from ocrkit.data import open_dataset
from ocrkit.data.augment import augmented
from ocrkit.errors import UsageError
from ocrkit.models.recognizer import Recognizer, check_forward, make_spec
from ocrkit.outputs import LOCK_NAME, RUN_MARKER, claim_run_folder, main_process
from ocrkit.train.data import Collate, InputSpec
from ocrkit.train.loop import Trainer, TrainConfig
from ocrkit.train.methods import SupervisedCTC


@contextlib.contextmanager
def run_folder(opts: dict, command: str, inputs=()):
    """Claim ``opts["out"]`` for this run on the main process (other ranks write nothing)."""
    if not main_process():
        yield None
        return
    out = opts["out"]
    created = not os.path.exists(out)
    lock = claim_run_folder(out, command=command, resume=opts.get("resume", False),
                            overwrite=opts.get("overwrite", False), inputs=inputs)
    try:
        yield lock
    except BaseException:
        if created:  # a run that failed before writing anything leaves no folder behind
            with contextlib.suppress(OSError):
                if set(os.listdir(out)) <= {RUN_MARKER, LOCK_NAME}:
                    os.remove(os.path.join(out, RUN_MARKER))
                    lock.release()
                    os.rmdir(out)
        raise
    finally:
        lock.release()


def apply_unknown_policy(charset: Charset, labels: list[str], policy: str,
                         replacement: str | None, warn, what: str = "training") -> None:
    """Check every label once against the charset and say what the policy does to them
    (error: refuse; skip: drop those characters; replace: map them to ``replacement``)."""
    report = charset.unknown_in(labels)
    if not report.affected:
        return
    example = report.examples[0].replace("\n", " / ")
    if policy == "error":
        raise UsageError(f"{what} data: {report.describe()}, e.g. {example!r}; --unknown skip "
                         "drops them, --unknown replace --replacement C maps them to C")
    if policy == "replace":
        if replacement is None or replacement not in charset:
            raise UsageError(f"--unknown replace: --replacement {replacement!r} is not in the "
                             "charset; add it to the dictionary or name one of its characters")
        warn(f"warning: --unknown replace: {report.describe()}; they are trained as "
             f"{replacement!r}")
        return
    emptied = (f"; {report.emptied} become empty and are not used" if report.emptied else "")
    warn(f"warning: --unknown skip: {report.describe()}; those characters are dropped from "
         f"the labels{emptied}")


def open_datasets(opts: dict, say) -> tuple:
    """The training and validation sets (None without --val); label-file problems said.
    Images are decoded in colour for ``--channels 3``."""
    mode = "RGB" if opts.get("channels", 1) == 3 else "L"
    train_set = open_dataset(list(opts["train_paths"]), mode=mode)
    val_set = open_dataset(list(opts["val_paths"]), mode=mode) if opts["val_paths"] else None
    for name, data in (("training", train_set), ("validation", val_set)):
        for line in (data.issues.warnings() if data is not None else []):
            say(f"warning: {name} data: {line}")
    return train_set, val_set


def check_labels(charset: Charset, labels: list[str], val_set, opts: dict, say) -> None:
    """Apply --unknown to the training labels; say what validation cannot match."""
    apply_unknown_policy(charset, labels, opts["unknown"], opts.get("replacement"), say)
    if val_set is not None:
        report = charset.unknown_in(val_set.labels())
        if report.affected:
            say(f"warning: validation data: {report.describe()}; the model cannot output "
                "them, so they count as errors")


def build_charset(opts: dict, labels: list[str]) -> Charset:
    """The run's charset: a resumed run's own, ``--charset``, or the training labels'."""
    last = os.path.join(opts["out"], "last.pt")
    if opts.get("resume") and os.path.isfile(last):  # the weights' own charset
        from ocrkit.checkpoint import load_checkpoint

        ckpt = load_checkpoint(last)
        if "charset" not in ckpt:
            raise UsageError(f"--resume: {last} is a {ckpt.get('kind', 'other')} checkpoint, "
                             "not a recognizer run; choose another -o")
        return Charset(ckpt["charset"])
    if opts.get("charset"):
        return Charset.load(opts["charset"])
    return Charset.from_labels(labels)


def run_training(opts: dict, method_factory=None) -> dict | None:
    """Datasets, charset, model and loop from `ocrkit train`'s options (also the demo's)."""
    quiet = opts["quiet"]
    console = stderr_console(quiet)

    def say(msg: str) -> None:
        if main_process():
            console.print(msg, highlight=False)

    cfg = TrainConfig.from_options(opts, warn=say)
    inputs = list(opts["train_paths"]) + list(opts["val_paths"] or ())
    with run_folder(opts, "train", inputs):
        train_set, val_set = open_datasets(opts, say)
        train_set = augmented(train_set, opts, opts.get("rows") or 1)
        labels = train_set.labels()
        charset = build_charset(opts, labels)
        check_labels(charset, labels, val_set, opts, say)
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
                         classifier_args=opts["classifier_args"], head_args=opts["head_args"],
                         row_sequence=opts.get("row_sequence"),
                         in_channels=opts.get("channels", 1))
        multirow = rows > 1
        input_spec = InputSpec(
            height=opts["height"] or (224 if multirow else 32),
            width=opts["width"] or (224 if multirow else 256),
            policy=opts["resize"] or ("stretch" if multirow else "keep-ratio"), rows=rows,
            channels=opts.get("channels", 1))
        if input_spec.height < 8 or input_spec.width < 8:
            raise UsageError("--height and --width must be at least 8")
        torch.manual_seed(opts["seed"])  # same seed, same initial weights: runs are reproducible
        model = Recognizer(spec, charset.num_classes,
                           input_size=(input_spec.height, input_spec.width))
        if opts.get("denoiser"):
            from ocrkit.models.denoise import attach_denoiser

            attach_denoiser(model, opts["denoiser"], input_spec, warn=say)
        out = check_forward(model, input_spec.height, input_spec.width, input_spec.channels)
        if model.row_sequence != "per-row" and out.visual.dim() != 4:
            raise UsageError(f"--row-sequence {model.row_sequence} orders text rows, and the neck "
                             f"{opts['neck']!r} returns one sequence per image (use it with "
                             "row-attention)")
        if model.autoregressive:
            longest = max((len(label.replace("\n", "")) for label in labels), default=0)
            if longest > model.head.max_length:
                raise UsageError(f"the training labels run to {longest} characters and head "
                                 f"{opts['head']!r} reads at most {model.head.max_length}; "
                                 f"--head-arg max_length={longest}")
        spec = model.spec  # with the measured feature geometry and the denoiser
        if opts.get("row_loss") and rows == 1:
            raise UsageError("--row-loss chooses how a multi-row model's CTC loss is laid out; "
                             "give --rows")
        method = method_factory(charset) if method_factory else \
            SupervisedCTC(charset, row_loss=opts.get("row_loss"))
        extra = {"spec": spec, "charset": charset.chars,
                 "input": {**input_spec.__dict__},
                 "train_data": [os.path.abspath(p) for p in opts["train_paths"]]}
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        say(f"model {spec['backbone']['name']}+{spec['neck']['name']}"
            f"+{(spec['sequence'] or {}).get('name', 'none')}: {params / 1e6:.2f} M "
            f"parameters, {charset.num_classes} classes, {len(train_set)} training images")
        trainer = Trainer(model, method, train_set, val_set,
                          Collate(input_spec, charset, opts["unknown"], opts.get("replacement"),
                                  width="batch"),
                          cfg, extra, console_print=say,
                          val_collate=Collate(input_spec, None, width="any"),
                          config=opts.get("_config"), flag_names=opts.get("_flag_names"))
        summary = trainer.fit()
    if not main_process():
        return None
    return {"out": opts["out"], "parameters": params, "classes": charset.num_classes, **summary}
