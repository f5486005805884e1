"""The one set-up every training command shares before its first step.

:class:`RunSetup` checks the loop's options, claims the run folder (refused if it
holds another run, locked against a second writer, removed again if the run fails
before writing anything) and builds the :class:`~ocrkit.train.loop.Trainer`.
Labelled recognizer data (``train``, ``train-emu``, ``distill``) comes through
:func:`labelled_data` - datasets, charset, unknown characters counted and
refused or reported, and with ``--label-fraction`` a random subset of the
training images (:func:`label_subset`) - and :func:`recognizer_from_options`
builds and checks the model ``train`` and ``train-emu`` describe by options (run
once on a blank input; labels that cannot fit its CTC frames counted), which
``--init-encoder`` starts from a pre-trained encoder (``ocrkit pretrain``). The
order is the user's protection: everything that can be wrong is found before the
first step.

``--label-fraction F --subset-seed S`` keeps ``round(F n)`` (at least 1) of the
``n`` training images: the first of a permutation of ``0..n-1`` drawn from
``numpy.random.default_rng(S)``, in their dataset order. It depends on nothing but
S and n, so every method (supervised, SeqCLR fine-tuning, distillation) and every
``--seed`` trains on the same images, and with one S a smaller fraction's images
are part of a larger one's (SeqCLR's Table 2 protocol: "the same randomly selected
data for all the experiments").
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ocrkit import registry
from ocrkit.charset import Charset
from ocrkit.console import stderr_console
from ocrkit.data import open_dataset
from ocrkit.data.augment import augmented
from ocrkit.data.batch import Collate, InputSpec
from ocrkit.errors import UsageError
from ocrkit.models.recognizer import Recognizer, check_forward, make_spec
from ocrkit.outputs import LOCK_NAME, RUN_MARKER, claim_run_folder, main_process
from ocrkit.train.loop import TrainConfig, Trainer


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


# --unknown not given: skip, but refuse data of which more than this share of labels
# would change (a charset that does not fit the data is a mistake far more often than
# a choice; --unknown skip says it is one).
UNKNOWN_REFUSE_SHARE = 0.05


def check_unknown_options(opts: dict) -> None:
    """--unknown / --replacement combinations no data can make right (checked first)."""
    _check_replacement(opts.get("unknown"), opts.get("replacement"))


def _check_replacement(policy: str | None, replacement: str | None) -> None:
    if policy == "replace" and replacement is None:
        raise UsageError("--unknown replace needs --replacement CHAR: the charset character "
                         "that characters outside the charset become")
    if replacement is not None and policy != "replace":
        raise UsageError("--replacement is used with --unknown replace only")


def apply_unknown_policy(charset: Charset, labels: list[str], policy: str | None,
                         replacement: str | None, warn, what: str = "training",
                         source: str = "the charset") -> None:
    """Check every label once against the charset and say what the policy does to them
    (error: refuse; skip: drop those characters; replace: map them to ``replacement``;
    None: skip unless more than :data:`UNKNOWN_REFUSE_SHARE` of the labels change).
    Data of which no label keeps a character is refused whatever the policy."""
    _check_replacement(policy, replacement)
    report = charset.unknown_in(labels)
    empty = sum(1 for label in labels if not label.replace("\n", ""))
    if empty == report.labels:
        raise UsageError(f"no {what} sample left: all {report.labels} labels are empty")
    if not report.affected:
        return
    example = report.examples[0].replace("\n", " / ")
    if policy != "replace" and report.emptied + empty == report.labels:
        raise UsageError(f"no {what} sample left: {report.emptied} of {report.labels} labels "
                         f"hold only characters outside {source} ({len(report.chars)} "
                         f"distinct, e.g. {example!r})"
                         + (f" and {empty} are empty" if empty else "")
                         + "; give a charset that covers the data")
    if policy is None and report.affected > UNKNOWN_REFUSE_SHARE * report.labels:
        raise UsageError(f"{what} data: {report.describe()} ({source}), e.g. {example!r}: "
                         f"more than {UNKNOWN_REFUSE_SHARE:.0%} of the labels would change; "
                         "--unknown skip trains anyway (those characters dropped), --unknown "
                         "replace --replacement C maps them to C")
    if policy == "error":
        raise UsageError(f"{what} data: {report.describe()}, e.g. {example!r}; --unknown skip "
                         "drops them, --unknown replace --replacement C maps them to C")
    if policy == "replace":
        if replacement not in charset:
            raise UsageError(f"--unknown replace: --replacement {replacement!r} is not in the "
                             "charset; add it to the dictionary or name one of its characters")
        warn(f"warning: --unknown replace: {report.describe()}; they are trained as "
             f"{replacement!r}")
        return
    emptied = (f"; {report.emptied} become empty and are not used" if report.emptied else "")
    warn(f"warning: --unknown skip: {report.describe()} ({source}); those characters are "
         f"dropped from the labels{emptied}")


def check_ctc_fit(model, out, labels: list[str], charset: Charset, opts: dict,
                  input_spec: "InputSpec", say, what: str = "training") -> None:
    """Refuse data whose every label needs more CTC frames than the model gives at its
    widest input (the loss of such a sample is infinite, zeroed by ``zero_infinity``: a
    run would log loss 0 and learn nothing); warn with the share when some do. Says
    which ``--width`` would fit. ``out`` is the model's output for a blank input of the
    training size."""
    from ocrkit.models.heads.ctc import CTCHead, frames_needed

    if model.autoregressive or not isinstance(model.head, CTCHead):
        return
    logits, row_loss, rows = out.logits, opts.get("row_loss"), input_spec.rows
    if logits.dim() == 4:  # [B, H, T, K]: per text row, or all rows joined
        per_row = row_loss != "joined"
        frames = logits.shape[2] * (1 if per_row else logits.shape[1])
    else:
        per_row = row_loss == "per-row" and rows > 1
        if per_row:
            start, end = model.row_spans(logits.shape[1])[0]
            frames = end - start
        else:
            frames = logits.shape[1]
    policy, replacement = opts.get("unknown") or "skip", opts.get("replacement")
    needs = []
    for label in labels:
        parts = label.split("\n") if per_row else [label.replace("\n", "")]
        ids = [charset.encode(p, policy, replacement) for p in parts]
        if any(ids):
            needs.append(max(frames_needed(i) for i in ids))
    bad = sum(1 for n in needs if n > frames)
    if not bad:
        return
    longest, width = max(needs), input_spec.width
    fit = -(-longest * width // frames)
    fit = -(-fit // 8) * 8
    unit = "text row" if per_row else "label"
    detail = (f"the model gives {frames} CTC frames per {unit} at --width {width} and the "
              f"longest needs {longest} (one per character, plus a blank between repeated "
              f"ones); --width {fit} would fit every {unit}")
    if bad == len(needs):
        raise UsageError(f"no {what} {unit} fits the model: {detail} (or use a backbone with "
                         "a smaller horizontal stride)")
    say(f"warning: {bad} of {len(needs)} {what} labels ({100 * bad / len(needs):.1f} %) need "
        f"more CTC frames than the model gives and cannot be learnt: {detail}")


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


def check_labels(charset: Charset, labels: list[str], val_set, opts: dict, say,
                 source: str = "the charset") -> None:
    """Apply --unknown to the training labels; say what validation cannot match."""
    apply_unknown_policy(charset, labels, opts.get("unknown"), opts.get("replacement"), say,
                         source=source)
    if val_set is not None:
        report = charset.unknown_in(val_set.labels())
        if report.affected:
            say(f"warning: validation data: {report.describe()}; the model cannot output "
                "them, so they count as errors")


def build_charset(opts: dict, labels: list[str]) -> tuple[Charset, str]:
    """The run's charset and where it is from: a resumed run's own, ``--charset``, or
    the training labels'."""
    last = os.path.join(opts["out"], "last.pt")
    if opts.get("resume") and os.path.isfile(last):  # the weights' own charset
        from ocrkit.checkpoint import load_checkpoint

        ckpt = load_checkpoint(last)
        if "charset" not in ckpt:
            kind = ckpt.get("kind", "other")
            raise UsageError(f"--resume: {last} is {'an' if kind[0] in 'aeiou' else 'a'} "
                             f"{kind} checkpoint, not a recognizer run; choose another -o")
        return Charset(ckpt["charset"]), "the resumed run's charset"
    if opts.get("charset"):
        return Charset.load(opts["charset"]), "--charset"
    return Charset.from_labels(labels), "the labels' charset"


class RunSetup:
    """A training command's run: its messages, loop configuration, run folder and
    trainer. ``inputs`` are the paths it reads (never written over)."""

    def __init__(self, opts: dict, command: str, inputs: list[str]) -> None:
        self.opts, self.command, self.inputs = opts, command, list(inputs)
        self.console = stderr_console(opts["quiet"])
        self.cfg = TrainConfig.from_options(opts, warn=self.say)

    def say(self, msg: str) -> None:
        if main_process():
            self.console.print(msg, highlight=False)

    def claim(self):
        """The run folder, claimed for the run's duration (see :func:`run_folder`)."""
        return run_folder(self.opts, self.command, self.inputs)

    def trainer(self, model, method, train_set, val_set, collate: Callable, extra: dict,
                val_collate: Callable | None = None) -> Trainer:
        return Trainer(model, method, train_set, val_set, collate, self.cfg, extra,
                       console_print=self.say, val_collate=val_collate,
                       config=self.opts.get("_config"),
                       flag_names=self.opts.get("_flag_names"))


@dataclass
class LabelledData:
    """Training and validation sets, the training labels and the run's charset."""

    train_set: object
    val_set: object | None
    labels: list[str]
    charset: Charset


def labelled_setup(opts: dict, command: str, extra_inputs=()) -> RunSetup:
    """:class:`RunSetup` for a command that trains on labelled images (``--train``)."""
    if not opts.get("train_paths"):
        raise UsageError("missing option --train (training data; --resume takes a run's own "
                         "from its config.json)")
    if opts.get("subset_seed") is not None and opts.get("label_fraction") is None:
        raise UsageError("--subset-seed chooses the images --label-fraction keeps; give "
                         "--label-fraction")
    check_unknown_options(opts)
    return RunSetup(opts, command, [*opts["train_paths"], *(opts.get("val_paths") or ()),
                                    *extra_inputs])


def labelled_data(setup: RunSetup, charset_for: Callable | None = None) -> LabelledData:
    """The datasets and charset (``charset_for(labels) -> (charset, where from)``; by
    default a resumed run's, ``--charset`` or the labels'), with --unknown applied."""
    opts = setup.opts
    train_set, val_set = open_datasets(opts, setup.say)
    if opts.get("label_fraction") is not None:
        train_set = label_subset(train_set, opts["label_fraction"], opts.get("subset_seed") or 0)
        setup.say(f"--label-fraction {opts['label_fraction']:g}: {len(train_set)} of "
                  f"{train_set.of} training images (--subset-seed "
                  f"{opts.get('subset_seed') or 0})")
    labels = train_set.labels()
    charset, source = (charset_for or (lambda lab: build_charset(opts, lab)))(labels)
    check_labels(charset, labels, val_set, opts, setup.say, source=source)
    return LabelledData(train_set, val_set, labels, charset)


class LabelSubset:
    """The images ``indices`` of a labelled dataset (``of``: how many it has)."""

    def __init__(self, dataset, indices) -> None:
        self.dataset, self.indices = dataset, [int(i) for i in indices]
        self.of = len(dataset)
        self.issues = getattr(dataset, "issues", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    def labels(self) -> list[str]:
        labels = self.dataset.labels()
        return [labels[i] for i in self.indices]

    def domains(self) -> list:
        domains = self.dataset.domains()
        return [domains[i] for i in self.indices]


def subset_indices(size: int, fraction: float, seed: int) -> list[int]:
    """The indices ``--label-fraction fraction --subset-seed seed`` keeps of ``size``
    images (see the module doc), in dataset order."""
    keep = min(size, max(1, round(fraction * size)))
    return sorted(np.random.default_rng(seed).permutation(size)[:keep].tolist())


def label_subset(dataset, fraction: float, seed: int) -> LabelSubset:
    """``dataset`` cut to its ``--label-fraction`` subset."""
    if not 0 < fraction <= 1:
        raise UsageError(f"--label-fraction {fraction}: a share in (0, 1]")
    return LabelSubset(dataset, subset_indices(len(dataset), fraction, seed))


def fit_recognizer(setup: RunSetup, model, method, data: LabelledData, input_spec: InputSpec,
                   extra: dict, teacher_spec: InputSpec | None = None) -> dict:
    """Train ``model`` (or a method's network around it) on labelled data: augmented
    training images (``--augment``), batches padded to their widest line, validation
    lines at their own width. ``extra`` goes into every checkpoint."""
    opts = setup.opts
    if opts.get("bucket_widths") and not input_spec.any_width:
        raise UsageError(f"--bucket-widths: every batch of this input ({input_spec.policy}, "
                         f"{input_spec.rows} row(s)) is {input_spec.width} px wide; only "
                         "keep-ratio single rows vary in width")
    train_set = augmented(data.train_set, opts, input_spec.rows)
    collate = Collate(input_spec, data.charset, opts.get("unknown") or "skip",
                      opts.get("replacement"), teacher_spec=teacher_spec, width="batch")
    extra = {**extra, "train_data": [os.path.abspath(p) for p in opts["train_paths"]]}
    trainer = setup.trainer(model, method, train_set, data.val_set, collate, extra,
                            val_collate=Collate(input_spec, None, width="any"))
    return trainer.fit()


def input_spec_from(opts: dict, rows: int) -> InputSpec:
    """The input the options describe (multi-row inputs default to 224x224, stretched)."""
    multirow = rows > 1
    spec = InputSpec(height=opts["height"] or (224 if multirow else 32),
                     width=opts["width"] or (224 if multirow else 256),
                     policy=opts["resize"] or ("stretch" if multirow else "keep-ratio"),
                     rows=rows, channels=opts.get("channels", 1))
    if spec.height < 8 or spec.width < 8:
        raise UsageError("--height and --width must be at least 8")
    return spec


def load_init_model(path: str) -> dict:
    """What ``--init-from`` starts from: a recognizer checkpoint's trainable network
    (``spec``, ``input``, ``charset``, ``state_dict``; EMU's from ``last.pt``'s training
    state, its deployed codebook being bit-packed), or one line saying why not."""
    import copy

    from ocrkit.checkpoint import load_checkpoint, require_kind

    ckpt = load_checkpoint(path)
    require_kind(ckpt, path, option="--init-from")
    spec, state = ckpt["spec"], ckpt["state_dict"]
    if ((spec.get("classifier") or {}).get("args") or {}).get("packed"):
        train_state = ckpt.get("train_state") or {}
        identity = train_state.get("identity") or {}
        if "net" not in train_state or "spec" not in identity:
            raise UsageError(f"--init-from {path}: its EMU classifier is the deployable form "
                             "(bit-packed codes, no ClassNet), which cannot train; start from "
                             "the run's last.pt")
        spec, state = identity["spec"], train_state["net"]
    return {"path": os.path.abspath(path), "spec": copy.deepcopy(spec), "input": ckpt["input"],
            "charset": ckpt["charset"], "state_dict": state,
            "steps": (ckpt.get("meta") or {}).get("step")}


def recognizer_from_options(opts: dict, data: LabelledData, say,
                            init: dict | None = None) -> tuple[Recognizer, InputSpec]:
    """The recognizer ``train``'s model options describe (or, with ``init`` from
    :func:`load_init_model`, the one it holds, with its weights), built and checked on
    a blank input of the training size: rows and neck agree, the labels fit its head
    (CTC frames, an autoregressive head's length), the denoiser attached."""
    if init is not None:
        spec, input_spec = init["spec"], InputSpec(**init["input"])
    else:
        spec, input_spec = _spec_from_options(opts)
    torch.manual_seed(opts["seed"])  # same seed, same initial weights: runs are reproducible
    model = Recognizer(spec, data.charset.num_classes,
                       input_size=(input_spec.height, input_spec.width))
    if init is not None:
        try:
            model.load_state_dict(init["state_dict"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"--init-from {init['path']}: its weights do not fit the model "
                             f"it describes ({first.rstrip(':. ')})") from None
    if opts.get("denoiser"):
        from ocrkit.models.denoise import attach_denoiser

        attach_denoiser(model, opts["denoiser"], input_spec, warn=say)
    if getattr(model.neck, "note", None):
        say(model.neck.note)
    out = check_forward(model, input_spec.height, input_spec.width, input_spec.channels)
    if model.row_sequence != "per-row" and out.visual.dim() != 4:
        raise UsageError(f"--row-sequence {model.row_sequence} orders text rows, and the neck "
                         f"{model.spec['neck']['name']!r} returns one sequence per image "
                         "(use it with "
                         "row-attention)")
    if model.autoregressive:
        longest = max((len(label.replace("\n", "")) for label in data.labels), default=0)
        if longest > model.head.max_length:
            head = f"head {model.spec['head']['name']!r}"
            fix = f"--head-arg max_length={longest}"
            if init is not None:
                head, fix = f"the --init-from model's {head}", "leave the longer labels out"
            raise UsageError(f"the training labels run to {longest} characters and {head} "
                             f"reads at most {model.head.max_length}; {fix}")
    check_ctc_fit(model, out, data.labels, data.charset, opts, input_spec, say)
    if opts.get("row_loss") and input_spec.rows == 1:
        raise UsageError("--row-loss chooses how a multi-row model's CTC loss is laid out; "
                         "give --rows")
    return model, input_spec


def _spec_from_options(opts: dict) -> tuple[dict, InputSpec]:
    """The model spec and input the options describe (rows and neck checked)."""
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
                     row_sequence=opts.get("row_sequence"), in_channels=opts.get("channels", 1))
    return spec, input_spec_from(opts, rows)


def run_training(opts: dict, method_factory: Callable) -> dict | None:
    """`ocrkit train` (also train-emu's and the demo's): labelled data, the recognizer
    its options describe, ``method_factory(charset, opts)``'s method, the loop."""
    init_from = opts.get("init_from")
    if opts.get("freeze_encoder") and not (opts.get("init_encoder") or init_from):
        raise UsageError("--freeze-encoder keeps the encoder --init-encoder (an `ocrkit "
                         "pretrain` checkpoint) or --init-from (a recognizer) loads fixed; "
                         "give one of them")
    if init_from and opts.get("init_encoder"):
        raise UsageError("--init-from (a whole recognizer) and --init-encoder (a pre-trained "
                         "encoder) both give the starting weights; give one of them")
    init = load_init_model(init_from) if init_from else None
    if init is not None:  # the data are read, augmented and checked as the model's input
        inp = init["input"]
        opts.update(channels=inp.get("channels", 1), height=inp["height"], width=inp["width"],
                    resize=inp["policy"], rows=inp.get("rows", 1))
    setup = labelled_setup(opts, "train", [p for p in (opts.get("init_encoder"), init_from)
                                           if p])
    with setup.claim():
        data = labelled_data(setup, None if init is None else lambda labels: (
            Charset(init["charset"]), f"the charset of --init-from {init_from}"))
        model, input_spec = recognizer_from_options(opts, data, setup.say, init)
        spec = model.spec  # with the measured feature geometry and the denoiser
        extra = {"spec": spec, "charset": data.charset.chars, "input": {**input_spec.__dict__}}
        if opts.get("init_encoder"):
            from ocrkit.models.encoder import init_encoder

            extra["encoder"] = init_encoder(model, opts["init_encoder"], input_spec,
                                            freeze=opts.get("freeze_encoder", False),
                                            warn=setup.say)
        if init is not None:
            extra["init_from"] = {"source": init["path"], "steps": init["steps"],
                                  "frozen": bool(opts.get("freeze_encoder"))}
            if opts.get("freeze_encoder"):
                from ocrkit.models.encoder import freeze_encoder

                freeze_encoder(model)
        if opts.get("label_fraction") is not None:
            extra["label_subset"] = {"fraction": opts["label_fraction"],
                                     "seed": opts.get("subset_seed") or 0,
                                     "images": len(data.train_set), "of": data.train_set.of}
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        frozen = " trainable (encoder frozen)" if opts.get("freeze_encoder") else ""
        setup.say(f"model {spec['backbone']['name']}+{spec['neck']['name']}"
                  f"+{(spec['sequence'] or {}).get('name', 'none')}: {params / 1e6:.2f} M "
                  f"parameters{frozen}, {data.charset.num_classes} classes, "
                  f"{len(data.train_set)} training images"
                  + (f", encoder from {opts['init_encoder']}" if opts.get("init_encoder")
                     else "")
                  + (f", weights from {init_from}" if init_from else ""))
        summary = fit_recognizer(setup, model, method_factory(data.charset, opts), data,
                                 input_spec, extra)
    if not main_process():
        return None
    return {"out": opts["out"], "parameters": params, "classes": data.charset.num_classes,
            **summary}
