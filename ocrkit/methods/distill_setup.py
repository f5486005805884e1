"""Set up `ocrkit distill` from its options: teacher, student, checks, loop.

Everything that can be wrong is found before the first step and said in one
line naming both sides: a checkpoint of the wrong kind, different charsets,
input specs or frame counts, hint layers of different sizes, BiLSTM states of
different widths.
"""

from __future__ import annotations

import copy
import inspect
import json
import os

import torch

from ocrkit import registry
from ocrkit.charset import Charset
from ocrkit.checkpoint import article, load_checkpoint, require_kind, save_checkpoint
from ocrkit.data.batch import InputSpec
from ocrkit.device import cpu_has_bf16
from ocrkit.errors import UsageError
from ocrkit.methods.distill import (
    DistillMethod,
    DistillNet,
    KDConfig,
    _key,
    kd_record,
    regressor,
)
from ocrkit.models.recognizer import Recognizer, check_forward, make_spec
from ocrkit.outputs import file_sha256, main_process
from ocrkit.train.run import (
    check_ctc_fit,
    fit_recognizer,
    labelled_data,
    labelled_setup,
)

PARTS = ("backbone", "neck", "sequence", "classifier", "head")
# The distillation term's default weight per mode, each its reference's: Eq. 13's
# 1 - alpha (alpha not given: 0.5), the DML paper's 1 per peer, PaddleOCR's 1.0 for
# its CTC distillation (PP-OCRv4).
SOFT_WEIGHTS = {"paper": 0.5, "dml": 1.0, "ctc-mean-kl": 1.0}
DERIVED_NECK_ARGS = ("feature_height", "feature_width")
WIDTH_ARGS = ("channels", "width", "width_mult")


# ----------------------------------------------------------------------------- teacher
def load_teacher(path: str) -> dict:
    """``{"spec", "input", "charset" (or None), "state_dict" (or None), "sha256"}`` from a
    recognizer checkpoint, or the architecture only from a run's ``config.json``."""
    digest = file_sha256(path)
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as fh:
                config = json.load(fh)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--teacher {path}: not a readable config.json ({exc})") from None
        if not isinstance(config, dict) or "spec" not in config or "input" not in config:
            raise UsageError(f"--teacher {path}: a config.json of an `ocrkit train` run holds "
                             "\"spec\" and \"input\"; this one does not")
        return {"spec": config["spec"], "input": config["input"], "charset": None,
                "state_dict": None, "sha256": digest}
    ckpt = load_checkpoint(path)
    require_kind(ckpt, path, option="--teacher")
    if "spec" not in ckpt or "charset" not in ckpt:
        raise UsageError(f"--teacher {path}: a checkpoint without a recognizer's spec and "
                         "charset")
    return {"spec": ckpt["spec"], "input": ckpt["input"], "charset": ckpt["charset"],
            "state_dict": ckpt["state_dict"], "sha256": digest}


def architecture(spec: dict) -> dict:
    """A spec without what a build measures or attaches (feature geometry, denoiser)."""
    out = copy.deepcopy(spec)
    out.pop("denoiser", None)
    for key in DERIVED_NECK_ARGS:
        out["neck"].get("args", {}).pop(key, None)
    return out


# ----------------------------------------------------------------------------- student
def _halved(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(max(1, int(v) // 2) for v in value)
    if isinstance(value, int):
        return max(1, value // 2)
    if isinstance(value, float):
        return value / 2
    return value


def half_spec(teacher_spec: dict) -> dict:
    """``--student-preset half``: the teacher's backbone at half width (``channels``,
    ``width`` or ``width_mult`` halved), one BiLSTM layer of the same hidden size (Eq.
    15 needs equal states); strides, and so the frame count, are kept."""
    spec = architecture(teacher_spec)
    backbone = spec["backbone"]
    factory = registry.get("backbones", backbone["name"]).load()
    params = inspect.signature(factory).parameters
    for name in WIDTH_ARGS:
        if name in params:
            value = backbone["args"].get(name, params[name].default)
            if value is inspect.Parameter.empty:
                continue
            backbone["args"][name] = _halved(value)
            break
    else:
        raise UsageError(f"--student-preset half: backbone {backbone['name']!r} has no "
                         f"{'/'.join(WIDTH_ARGS)} argument to halve; describe the student "
                         "with --backbone/--backbone-arg and --student-preset none")
    if spec.get("sequence") and spec["sequence"]["name"] == "bilstm":
        spec["sequence"]["args"]["layers"] = 1
    return spec


def student_spec(opts: dict, teacher_spec: dict | None, explicit: set[str]) -> dict:
    """The student: ``train``'s model options, over the ``half`` preset (or ``same``:
    the teacher's architecture as it is) when chosen."""
    mine = make_spec(opts["backbone"], opts["neck"], opts["sequence"], opts["classifier"],
                     opts["head"], backbone_args=opts["backbone_args"],
                     neck_args=opts["neck_args"], sequence_args=opts["sequence_args"],
                     classifier_args=opts["classifier_args"], head_args=opts["head_args"],
                     row_sequence=opts.get("row_sequence"))
    if opts["student_preset"] == "none" or teacher_spec is None:
        return mine
    spec = half_spec(teacher_spec) if opts["student_preset"] == "half" else architecture(
        teacher_spec)
    if "row_sequence" in explicit:  # per-row (the default) is kept implicit in specs
        spec.pop("row_sequence", None)
        if "row_sequence" in mine:
            spec["row_sequence"] = mine["row_sequence"]
    for part in PARTS:
        if part in explicit:  # a component named on the command line replaces the preset's
            spec[part] = mine[part]
        elif f"{part}_args" in explicit and spec.get(part):
            spec[part]["args"].update(opts[f"{part}_args"])
    return spec


# ----------------------------------------------------------------------------- checks
def _describe_input(spec: InputSpec) -> str:
    rows = f", {spec.rows} rows" if spec.rows > 1 else ""
    return f"{spec.height}x{spec.width} {spec.policy}{rows}"


def _hint_pairs(cfg: KDConfig, student: Recognizer, teacher: Recognizer, s_in: InputSpec,
                t_in: InputSpec, requested: list[str], say) -> list[tuple[str, str]]:
    """Checked (student tap, teacher tap) pairs: those asked for, else the deeper half of
    the backbone stages both models name whose outputs have the same height and width.

    The paper names neither M nor the layers. FitNets guides one middle layer; the
    deeper stages hold what the sequence stage reads, and the early ones are the
    costly ones (stage1's map is 16 times stage4's on vgg-small): hints on every
    stage cost 0.23 of a student step, on the deeper half 0.07
    (bench/distill_bench.py). ``--hint stage1=stage1 --hint ...`` restores any set."""
    if cfg.mode != "paper" or not cfg.lambda_hint or requested == ["none"]:
        return []
    if requested:
        pairs = []
        for item in requested:
            a, sep, b = item.partition("=")
            if not sep or not a or not b:
                raise UsageError(f"--hint {item!r}: expected STUDENT_TAP=TEACHER_TAP, e.g. "
                                 "stage2=stage2 (or --hint none)")
            student.tap_module(a), teacher.tap_module(b)
            pairs.append((a, b))
    else:
        names = [n for n in student.tap_points() if n.startswith("stage")
                 and n in teacher.tap_points()]
        pairs = [(n, n) for n in names]
    s_out = check_forward(student, s_in.height, s_in.width, s_in.channels, [a for a, _ in pairs])
    t_out = check_forward(teacher, t_in.height, t_in.width, t_in.channels, [b for _, b in pairs])
    kept = []
    for a, b in pairs:
        ss, ts = tuple(s_out.taps[a].shape), tuple(t_out.taps[b].shape)
        same = len(ss) == len(ts) and (ss[2:] if len(ss) == 4 else ss[1:-1]) == (
            ts[2:] if len(ts) == 4 else ts[1:-1])
        if same:
            kept.append((a, b))
        elif requested:
            raise UsageError(f"--hint {a}={b}: the student's {a} is {ss[1:]}, the teacher's "
                             f"{b} {ts[1:]}; a 1x1 regressor needs the same height and width")
    if not kept:
        say("warning: no backbone stage of the student matches a teacher stage in size: the "
            "hint term is off (name pairs with --hint S=T)")
    if not requested:
        kept = kept[len(kept) // 2:]
    return kept


def check_heads(cfg: KDConfig, student: Recognizer, teacher: Recognizer,
                labels: list[str]) -> None:
    """Heads the mode can compare: both CTC, or both autoregressive (compared per
    decoding step, teacher-forced on the same targets; every label must fit both
    decoders' ``max_length``)."""
    if student.autoregressive != teacher.autoregressive:
        kinds = {True: "decodes step by step", False: "reads CTC frames"}
        raise UsageError(f"the student's head {student.spec['head']['name']!r} "
                         f"{kinds[student.autoregressive]} and the teacher's "
                         f"{teacher.spec['head']['name']!r} {kinds[teacher.autoregressive]}: "
                         "distill compares CTC frames or decoder steps, so give both the "
                         "same kind of head")
    if not student.autoregressive:
        return
    if cfg.mode == "ctc-mean-kl":
        raise UsageError("--kd-mode ctc-mean-kl compares CTC class frequencies (blank "
                         "negated); autoregressive heads distil per decoding step with "
                         "--kd-mode paper or dml")
    longest = max((len(label.replace("\n", "")) for label in labels), default=0)
    for role, model in (("student", student), ("teacher", teacher)):
        if longest > model.head.max_length:
            raise UsageError(f"the training labels run to {longest} characters and the "
                             f"{role}'s head {model.spec['head']['name']!r} reads at most "
                             f"{model.head.max_length}: both decoders are teacher-forced on "
                             "every label" + (f"; --head-arg max_length={longest}"
                                              if role == "student" else ""))


def check_pair(cfg: KDConfig, student: Recognizer, teacher: Recognizer, s_in: InputSpec,
               t_in: InputSpec) -> None:
    """Frame counts and BiLSTM widths the mode needs, checked on a blank input
    (autoregressive heads are compared per decoding step: no frame count)."""
    s_out = check_forward(student, s_in.height, s_in.width, s_in.channels)
    t_out = check_forward(teacher, t_in.height, t_in.width, t_in.channels)
    if cfg.mode != "ctc-mean-kl" and not student.autoregressive and tuple(
            s_out.logits.shape[1:-1]) != tuple(
            t_out.logits.shape[1:-1]):
        raise UsageError(
            f"the teacher gives {tuple(t_out.logits.shape[1:-1])} frames for a "
            f"{_describe_input(t_in)} image, the student {tuple(s_out.logits.shape[1:-1])}: "
            f"--kd-mode {cfg.mode} compares them frame by frame, so keep the teacher's "
            "horizontal stride (e.g. its width_stride) or use --kd-mode ctc-mean-kl")
    if cfg.mode == "paper" and cfg.lambda_lstm:
        if s_out.rnn_state is None or t_out.rnn_state is None:
            who = "student" if s_out.rnn_state is None else "teacher"
            raise UsageError(f"the lstm term (Eq. 15) needs a BiLSTM sequence stage and the "
                             f"{who} has none; pass --lambda-lstm 0")
        hs, ht = s_out.rnn_state[0].shape[-1], t_out.rnn_state[0].shape[-1]
        if hs != ht:
            raise UsageError(f"the lstm term (Eq. 15) compares BiLSTM states of the same size: "
                             f"the teacher's hidden size is {ht // 2}, the student's {hs // 2}; "
                             f"give --sequence-arg hidden={ht // 2} or --lambda-lstm 0")


# Options of one kind of distillation only (attribute -> flag): the other kind refuses them
SINGLE_ONLY = {"kd_mode": "--kd-mode", "online": "--online", "teacher_init": "--teacher-init",
               "soft_weight": "--soft-weight", "skd_form": "--skd-form", "t2": "--t2",
               "lambda_hint": "--lambda-hint", "lambda_lstm": "--lambda-lstm",
               "kd_gate": "--kd-gate", "hint": "--hint", "kd_reduction": "--kd-reduction"}
UNIFIED_ONLY = {"teacher_domain": "--teacher-domain", "unrouted": "--unrouted",
                "w_logits": "--w-logits", "w_hint": "--w-hint",
                "w_attention": "--w-attention", "w_affinity": "--w-affinity",
                "hint_loss": "--hint-loss", "attention_loss": "--attention-loss",
                "affinity_loss": "--affinity-loss", "charset_map": "--charset-map"}


def check_mode_options(opts: dict, explicit: set[str], unified: bool) -> None:
    """Refuse, in one line, an option of the other kind of distillation."""
    if unified:
        for key, flag in SINGLE_ONLY.items():
            if key in explicit and not (key == "kd_mode" and opts[key] == "paper"):
                raise UsageError(f"{flag} is for distillation from one teacher; unified "
                                 "distillation (--teacher NAME=PATH) uses frozen specialists "
                                 "and weighs its terms with --w-logits, --w-hint, "
                                 "--w-attention and --w-affinity")
        return
    for key, flag in UNIFIED_ONLY.items():
        if key in explicit:
            raise UsageError(f"{flag} is for unified distillation: name the teachers "
                             "(--teacher htr=HTR.pt --teacher str=STR.pt)")


# ----------------------------------------------------------------------------- run
def run_distill(opts: dict) -> dict | None:
    """Teacher, student, data and loop from `ocrkit distill`'s options with one teacher
    (several named teachers: :func:`ocrkit.methods.unified_setup.run_unified`)."""
    explicit = set(opts.get("_explicit", ()))
    check_mode_options(opts, explicit, unified=False)
    mode = opts["kd_mode"]
    if mode == "dml" and opts["online"]:
        raise UsageError("--online is for --kd-mode paper (dml always trains both peers)")
    if mode == "ctc-mean-kl" and opts["online"]:
        raise UsageError("--kd-mode ctc-mean-kl distils from a frozen teacher; drop --online")
    if opts["teacher"] is None and mode != "dml":
        raise UsageError(f"--kd-mode {mode} needs --teacher (a checkpoint, or a config.json "
                         "with --online)")
    temperature = opts["temperature"] or {"paper": 1.5, "dml": 1.0, "ctc-mean-kl": 0.5}[mode]
    setup = labelled_setup(opts, "distill", [opts["teacher"]] if opts["teacher"] else [])
    say = setup.say
    with setup.claim():
        teacher_info = load_teacher(opts["teacher"]) if opts["teacher"] else None
        last = os.path.join(opts["out"], "last.pt")
        resumed = load_checkpoint(last) if opts.get("resume") and os.path.isfile(last) else None
        if resumed is not None:
            _check_same_teacher(last, resumed, opts, teacher_info)
        init = opts["teacher_init"] or ("checkpoint" if teacher_info and teacher_info["state_dict"]
                                        is not None and mode != "dml" else "scratch")
        trains = mode == "dml" or opts["online"]
        if teacher_info and teacher_info["state_dict"] is None and (
                init == "checkpoint" or not trains):
            raise UsageError(f"--teacher {opts['teacher']}: a config.json has no weights; "
                             "train that teacher alongside with --online (--teacher-init "
                             "scratch), or give a checkpoint")
        if init == "scratch" and not trains:
            raise UsageError("a teacher trained from scratch learns only with --online "
                             "(or --kd-mode dml)")

        data = labelled_data(setup, lambda labels: _charset(opts, teacher_info, labels, last,
                                                            resumed))
        labels, charset = data.labels, data.charset

        # Inputs: the teacher's, unless the student is given its own (ctc-mean-kl only).
        t_input = InputSpec(**teacher_info["input"]) if teacher_info else None
        s_input = _student_input(opts, t_input, explicit, mode)
        t_input = t_input or s_input
        if t_input.rows != s_input.rows:
            raise UsageError(f"the teacher reads {t_input.rows} rows per image, the student "
                             f"{s_input.rows}")

        t_arch = architecture(teacher_info["spec"]) if teacher_info else None
        spec = student_spec(opts, t_arch, explicit)
        if s_input.rows > 1:
            spec["neck"]["args"].setdefault("rows", s_input.rows)
        spec["in_channels"] = s_input.channels  # the student reads what its input holds
        torch.manual_seed(opts["seed"])
        student = Recognizer(spec, charset.num_classes, input_size=(s_input.height, s_input.width))
        torch.manual_seed(opts["seed"] + 1)  # a peer from scratch starts elsewhere
        teacher = Recognizer(t_arch or architecture(student.spec), charset.num_classes,
                             input_size=(t_input.height, t_input.width))
        if teacher_info and teacher_info["spec"].get("denoiser"):
            weights = teacher_info["state_dict"]
            if weights is None:
                raise UsageError(f"--teacher {opts['teacher']}: its model cleans images with a "
                                 "denoiser whose weights only its checkpoint holds; give that")
            teacher.set_denoiser(teacher_info["spec"]["denoiser"], {
                k[len("denoiser."):]: v for k, v in weights.items() if k.startswith("denoiser.")})
        if init == "checkpoint":
            teacher.load_state_dict(teacher_info["state_dict"])
        if teacher.denoiser is not None:  # the student cleans its input the same way
            student.set_denoiser(teacher.spec["denoiser"], teacher.denoiser.state_dict())
            say("the teacher carries a box-line denoiser: the student gets the same one")

        kd = KDConfig(mode=mode, online=opts["online"], temperature=temperature,
                      soft_weight=opts["soft_weight"] if opts.get("soft_weight") is not None
                      else SOFT_WEIGHTS[mode], skd_form=opts["skd_form"], t2=opts["t2"],
                      lambda_hint=opts["lambda_hint"], lambda_lstm=opts["lambda_lstm"],
                      reduction=opts["kd_reduction"],
                      warmup=opts.get("kd_warmup") or 0.0, gate=opts.get("kd_gate") or "none")
        trained = ("teacher", teacher) if (opts["online"] or mode == "dml") else None
        check_heads(kd, student, teacher, labels)
        for role, model in (("student", student), ("teacher", teacher)):
            if hasattr(model.classifier, "aux_loss") and (role == "student" or trained):
                raise UsageError(f"the {role} would train an EMU (multihot) classifier, which "
                                 "distill does not do yet: give the student --classifier "
                                 "linear (a frozen EMU teacher is fine), or train EMU models "
                                 "with train-emu")
        check_pair(kd, student, teacher, s_input, t_input)
        check_ctc_fit(student, check_forward(student, s_input.height, s_input.width,
                                             s_input.channels),
                      labels, charset, opts, s_input, say)
        kd.hints = _hint_pairs(kd, student, teacher, s_input, t_input, list(opts["hint"]), say)
        regs = {}
        if kd.hints:
            s_out = check_forward(student, s_input.height, s_input.width, s_input.channels,
                                  [a for a, _ in kd.hints])
            t_out = check_forward(teacher, t_input.height, t_input.width, t_input.channels,
                                  [b for _, b in kd.hints])
            regs = {_key(a, b): regressor(s_out.taps[a].shape, t_out.taps[b].shape)
                    for a, b in kd.hints}
        precision = opts.get("teacher_precision") or "auto"
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        net = DistillNet(student, teacher, kd, regs, teacher_precision=precision)
        record = kd_record(kd, {"source": opts["teacher"],
                                "sha256": teacher_info["sha256"] if teacher_info else None,
                                "spec": t_arch, "init": init})
        method = DistillMethod(charset, kd, record)
        extra = {"spec": student.spec, "charset": charset.chars,
                 "input": {**s_input.__dict__}, "distill": record}
        s_params = sum(p.numel() for p in student.parameters() if p.requires_grad)
        t_params = sum(p.numel() for p in teacher.parameters())
        role = "peer" if mode == "dml" else "teacher"
        say(f"student {spec['backbone']['name']}+{(spec['sequence'] or {}).get('name', 'none')}: "
            f"{s_params / 1e6:.2f} M parameters ({100 * s_params / t_params:.0f} % of the "
            f"{role}'s); {role} {t_params / 1e6:.2f} M "
            f"({'trained too' if net.trains_teacher else 'frozen, ' + precision}); --kd-mode "
            f"{mode}; hints "
            f"{', '.join(f'{a}={b}' for a, b in kd.hints) or 'none'}; {charset.num_classes} "
            f"classes, {len(data.train_set)} training images")
        summary = fit_recognizer(setup, net, method, data, s_input, extra, teacher_spec=t_input)
        if main_process() and net.trains_teacher:
            _save_teacher(opts["out"], net.teacher_model, charset, t_input, summary)
    if not main_process():
        return None
    result = {"out": opts["out"], "parameters": s_params, f"{role}_parameters": t_params,
              "parameter_share": round(s_params / t_params, 4),
              "classes": charset.num_classes, "kd_mode": mode, "online": opts["online"],
              "hints": [f"{a}={b}" for a, b in kd.hints], **summary}
    if net.trains_teacher:
        result["teacher_checkpoint"] = os.path.join(opts["out"], "teacher.pt")
    return result


def _check_same_teacher(last: str, ckpt: dict, opts: dict, teacher: dict | None) -> None:
    """``--resume`` continues a student with the teacher it was distilled from: another
    teacher file (by content) is refused, naming both."""
    was = (ckpt.get("distill") or {}).get("teacher") or {}
    old_sha, new_sha = was.get("sha256"), teacher["sha256"] if teacher else None
    if old_sha != new_sha:
        old = f"{was.get('source')} (sha256 {old_sha[:12]})" if old_sha else "no teacher"
        new = f"{opts['teacher']} (sha256 {new_sha[:12]})" if new_sha else "none"
        raise UsageError(f"--resume: {last} was distilled from {old}, this command gives "
                         f"--teacher {new}; resume with the run's own teacher, or start a new "
                         "run (another -o, or --overwrite)")


def resumed_charset(resumed: dict, last: str) -> tuple[Charset, str]:
    """A resumed distillation run's charset (one line when ``last`` is not one)."""
    if "charset" not in resumed:
        kind = resumed.get("kind", "other")
        raise UsageError(f"--resume: {last} is {article(kind)} {kind} checkpoint, not a "
                         "distillation run; choose another -o")
    return Charset(resumed["charset"]), "the resumed run's charset"


def _charset(opts: dict, teacher: dict | None, labels: list[str], last: str,
             resumed: dict | None) -> tuple[Charset, str]:
    """The student's charset and where it is from: the resumed run's, the teacher's,
    ``--charset`` or the labels'."""
    if resumed is not None:
        return resumed_charset(resumed, last)
    given = Charset.load(opts["charset"]) if opts.get("charset") else None
    if teacher and teacher["charset"] is not None:
        mine = Charset(teacher["charset"])
        if given is not None and given.chars != mine.chars:
            raise UsageError(f"--charset {opts['charset']} ({len(given)} characters, "
                             f"{given.digest}) differs from the teacher's ({len(mine)}, "
                             f"{mine.digest}): the student must use the teacher's classes")
        return mine, f"the teacher's charset ({opts['teacher']})"
    if given is not None:
        return given, "--charset"
    return Charset.from_labels(labels), "the labels' charset"


def _student_input(opts: dict, teacher: InputSpec | None, explicit: set[str], mode: str
                   ) -> InputSpec:
    if teacher is None:  # dml without --teacher: train's defaults
        rows = opts.get("rows") or 1
        return InputSpec(height=opts["height"] or (224 if rows > 1 else 32),
                         width=opts["width"] or (224 if rows > 1 else 256),
                         policy=opts["resize"] or ("stretch" if rows > 1 else "keep-ratio"),
                         rows=rows, channels=opts.get("channels", 1))
    given = {k: opts[k] for k in ("height", "width") if opts.get(k)}
    if "channels" in explicit:
        given["channels"] = opts["channels"]
    if opts.get("resize"):
        given["policy"] = opts["resize"]
    if "rows" in explicit:
        given["rows"] = opts["rows"]
    student = InputSpec(**{**teacher.__dict__, **given})
    if student != teacher and mode != "ctc-mean-kl":
        raise UsageError(f"the student must read the teacher's input "
                         f"({_describe_input(teacher)}), not {_describe_input(student)}: "
                         f"--kd-mode {mode} compares them frame by frame (--kd-mode "
                         "ctc-mean-kl allows another input)")
    return student


def _save_teacher(out: str, teacher: Recognizer, charset: Charset, spec: InputSpec,
                  summary: dict) -> None:
    """The teacher (or peer) trained alongside, as an ordinary recognizer checkpoint."""
    save_checkpoint(os.path.join(out, "teacher.pt"), {
        "spec": teacher.spec, "charset": charset.chars, "input": {**spec.__dict__},
        "state_dict": {k: v.detach().cpu() for k, v in teacher.state_dict().items()},
        "meta": {"step": summary["steps"], "trained_with": "ocrkit distill"}})
