"""Set up unified HTR + STR distillation (``ocrkit distill --teacher NAME=PATH ...``).

Everything that can be wrong is found before the first step, in one line naming the
teacher: a checkpoint that is not an attention-decoder recognizer, an input no mapping
bridges, a domain no training sample has, texts no teacher can supervise (with
``--unrouted error``), labels longer than the student reads. What is mapped is said:
charsets (case, punctuation), input channels, glimpse sizes (a linear map for the
hint), attention-map sizes.

Choices where the paper (its main text unavailable) is silent:

* **Routing.** A teacher named ``htr`` teaches the ``handwriting`` domain, ``str`` the
  ``scene`` domain, any other name the domain of its own name;
  ``--teacher-domain NAME=DOMAIN`` (repeatable) says otherwise.
* **The student** is chosen as ``distill`` chooses it (model options over
  ``--student-preset``, applied to the first ``--teacher``'s architecture; ``same``
  copies it, the paper's setting: one model the size of one specialist).
* **Charset**: ``--charset``, else the teachers' characters together (the first
  teacher's in its order, then each next one's new ones); label characters outside it
  follow ``--unknown`` as in any training.
* **Input**: the first teacher's, with 3 channels when any teacher reads RGB and, for
  keep-ratio lines, the widest teacher's width. Every teacher reads the student's batch:
  RGB and grey are converted (BT.601 luma), keep-ratio models read any width; a
  teacher of another height, resize policy or normalisation is refused.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from ocrkit.charset import Charset
from ocrkit.checkpoint import load_checkpoint
from ocrkit.data.batch import InputSpec
from ocrkit.device import cpu_has_bf16
from ocrkit.errors import UsageError
from ocrkit.methods.distill_setup import (
    _describe_input,
    architecture,
    check_mode_options,
    load_teacher,
    resumed_charset,
    student_spec,
)
from ocrkit.methods.unified import (
    DEFAULT_DOMAINS,
    ClassMap,
    TeacherInfo,
    UnifiedConfig,
    UnifiedMethod,
    UnifiedNet,
    unified_record,
)
from ocrkit.models.recognizer import Recognizer, check_forward
from ocrkit.outputs import main_process
from ocrkit.train.run import fit_recognizer, labelled_data, labelled_setup
from ocrkit.train.sampler import describe_domains, domain_counts

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# Options of single-teacher distillation that mean nothing here (named, not ignored).


# ----------------------------------------------------------------------------- options
def parse_teachers(values) -> list[tuple[str, str]] | None:
    """``--teacher`` values: None for a single plain path (one-teacher distillation);
    ``[(name, path), ...]`` for ``NAME=PATH`` ones. A value that is an existing file is
    a path even if it holds ``=``."""
    values = list(values or ())
    named = [v for v in values if not os.path.isfile(v) and "=" in v]
    if not named:
        if len(values) > 1:
            raise UsageError(f"{len(values)} plain --teacher paths: name each teacher for "
                             "unified distillation (--teacher htr=HTR.pt --teacher str=STR.pt)")
        return None
    if len(named) != len(values):
        plain = next(v for v in values if v not in named)
        raise UsageError(f"--teacher {plain}: name it too (NAME=PATH) when several teachers "
                         "are given")
    out, seen = [], set()
    for value in values:
        name, _, path = value.partition("=")
        if not NAME.match(name):
            raise UsageError(f"--teacher {value}: NAME=PATH with a name of letters, digits, "
                             "- and _ (e.g. htr=runs/htr/best.pt)")
        if name in seen:
            raise UsageError(f"--teacher {name}=...: the name {name!r} is given twice")
        if not os.path.isfile(path):
            raise UsageError(f"--teacher {value}: {path}: no such checkpoint")
        seen.add(name)
        out.append((name, path))
    return out


def teacher_routes(names: list[str], given) -> dict[str, str]:
    """Domain -> teacher name, from ``--teacher-domain NAME=DOMAIN`` or the names."""
    chosen: dict[str, list[str]] = {}
    for item in given or ():
        name, sep, domain = item.partition("=")
        if not sep or not domain:
            raise UsageError(f"--teacher-domain {item!r}: expected NAME=DOMAIN, e.g. "
                             "htr=handwriting")
        if name not in names:
            raise UsageError(f"--teacher-domain {item}: no teacher named {name!r} (teachers: "
                             f"{', '.join(names)})")
        chosen.setdefault(name, []).append(domain)
    routes: dict[str, str] = {}
    for name in names:
        for domain in chosen.get(name) or [DEFAULT_DOMAINS.get(name, name)]:
            if routes.get(domain, name) != name:
                raise UsageError(f"the {domain} domain has two teachers, {routes[domain]} and "
                                 f"{name}: give each domain one (--teacher-domain NAME=DOMAIN)")
            routes[domain] = name
    return routes


# ----------------------------------------------------------------------------- checks
def _teacher_model(name: str, path: str, info: dict) -> Recognizer:
    if info["state_dict"] is None:
        raise UsageError(f"--teacher {name}={path}: a config.json has no weights; unified "
                         "distillation learns from trained specialists (give a checkpoint)")
    model = Recognizer(info["spec"], len(info["charset"]) + 1)
    model.load_state_dict(info["state_dict"])
    if not model.autoregressive:
        raise UsageError(f"--teacher {name}={path}: head {info['spec']['head']['name']!r} reads "
                         "CTC frames; unified distillation compares decoding steps (logits, "
                         "glimpses and attention maps of decoders teacher-forced on the same "
                         "prefix), which a CTC head does not have: train the specialist with "
                         "--head attention")
    return model.eval()


def student_input(opts: dict, teachers: dict[str, InputSpec], explicit: set[str]) -> InputSpec:
    """The student's input (see the module docstring), each teacher checked against it."""
    specs = list(teachers.values())
    first = specs[0]
    base = {**first.__dict__, "channels": max(s.channels for s in specs)}
    if all(s.any_width for s in specs):
        base["width"] = max(s.width for s in specs)
    for key in ("height", "width"):
        if opts.get(key):
            base[key] = opts[key]
    if opts.get("resize"):
        base["policy"] = opts["resize"]
    if "channels" in explicit:
        base["channels"] = opts["channels"]
    if "rows" in explicit:
        base["rows"] = opts["rows"]
    student = InputSpec(**base)
    for name, t in teachers.items():
        same = {k: v for k, v in t.__dict__.items() if k not in ("channels", "width")} == {
            k: v for k, v in student.__dict__.items() if k not in ("channels", "width")}
        if not same or (t.width != student.width and not (t.any_width and student.any_width)):
            raise UsageError(
                f"teacher {name} reads {_describe_input(t)} images (mean {t.mean}, std "
                f"{t.std}), the student {_describe_input(student)} (mean {student.mean}, std "
                f"{student.std}): every teacher reads the student's batch (channels are "
                "converted and keep-ratio lines may be of any width); give the student the "
                "teachers' input, or train the specialists on one input size")
    return student


def union_charset(opts: dict, teachers: dict[str, dict], resumed: dict | None, last: str
                  ) -> tuple[Charset, str]:
    if resumed is not None:
        return resumed_charset(resumed, last)
    if opts.get("charset"):
        return Charset.load(opts["charset"]), "--charset"
    chars: list[str] = []
    for info in teachers.values():
        chars += [c for c in info["charset"] if c not in chars]
    return Charset(chars), f"the teachers' charsets together ({', '.join(teachers)})"


def _check_same_teachers(last: str, ckpt: dict, teachers: dict[str, dict]) -> None:
    """``--resume`` continues with the teachers it was distilled from (by content)."""
    was = {n: t.get("sha256") for n, t in
           ((ckpt.get("distill") or {}).get("teachers") or {}).items()}
    now = {n: t["sha256"] for n, t in teachers.items()}
    if was != now:
        def show(d: dict) -> str:
            return ", ".join(f"{n} (sha256 {(s or '')[:12]})" for n, s in d.items()) or "none"
        raise UsageError(f"--resume: {last} was distilled from {show(was)}, this command gives "
                         f"{show(now)}; resume with the run's own teachers, or start a new run "
                         "(another -o, or --overwrite)")


def routing_report(routes: dict[str, str], domains: list, labels: list[str],
                   charset: Charset, info: dict[str, TeacherInfo]
                   ) -> tuple[dict[str, int], dict[str, int]]:
    """Training samples each teacher supervises, and why the others are not
    (``domain X``, ``teacher N cannot read them``)."""
    taught = {name: 0 for name in info}
    left: dict[str, int] = {}
    for domain, label in zip(domains, labels):
        name = routes.get(domain)
        if name is None:
            key = f"domain {domain}" if domain is not None else "no domain recorded"
            left[key] = left.get(key, 0) + 1
            continue
        text = label.replace("\n", "")
        t = info[name]
        if len(text) > t.max_length or not t.class_map.readable(text, charset):
            key = f"{name} cannot read them (characters or length)"
            left[key] = left.get(key, 0) + 1
            continue
        taught[name] += 1
    return taught, left


def _grid(model: Recognizer, out, who: str, cfg: UnifiedConfig) -> bool:
    """Whether a model's attention map is a 2-D grid of tokens (the ``tokens`` neck,
    column by column); a map over ``h*w`` positions from another neck is refused for
    the attention term (its layout is unknown)."""
    h, w = out.extras["feature_size"]
    size = out.extras["attention"].shape[-1]
    if model.spec["neck"]["name"] == "tokens":
        return h > 1
    if h > 1 and size == h * w and cfg.w_attention > 0:
        raise UsageError(f"the {who}'s attention map covers {size} = {h}x{w} positions of a "
                         f"{model.spec['neck']['name']!r} neck, whose layout is unknown; "
                         "--w-attention 0, or a cap or tokens neck")
    return False


# ----------------------------------------------------------------------------- run
def run_unified(opts: dict) -> dict | None:
    """Teachers, student, routing and loop for ``ocrkit distill --teacher NAME=PATH ...``."""
    explicit = set(opts.get("_explicit", ()))
    check_mode_options(opts, explicit, unified=True)
    named = opts["teachers"]
    names = [n for n, _ in named]
    routes = teacher_routes(names, opts.get("teacher_domain"))
    cfg = UnifiedConfig(
        temperature=opts["temperature"] or 2.0,
        w_logits=opts.get("w_logits", 1.0), w_hint=opts.get("w_hint", 1.0),
        w_attention=opts.get("w_attention", 1.0), w_affinity=opts.get("w_affinity", 1.0),
        hint_loss=opts.get("hint_loss") or "mse",
        attention_loss=opts.get("attention_loss") or "kl",
        affinity_loss=opts.get("affinity_loss") or "mse",
        charset_map=opts.get("charset_map") or "fold", unrouted=opts.get("unrouted") or "ce",
        warmup=opts.get("kd_warmup") or 0.0, routes=routes)
    if not cfg.active():
        raise UsageError("every distillation weight is 0 (--w-logits, --w-hint, --w-attention, "
                         "--w-affinity): that is `ocrkit train`")
    setup = labelled_setup(opts, "distill", [p for _, p in named])
    say = setup.say
    with setup.claim():
        loaded = {name: load_teacher(path) for name, path in named}
        paths = dict(named)
        teachers = {name: _teacher_model(name, paths[name], loaded[name]) for name in names}
        last = os.path.join(opts["out"], "last.pt")
        resumed = load_checkpoint(last) if opts.get("resume") and os.path.isfile(last) else None
        if resumed is not None:
            _check_same_teachers(last, resumed, loaded)
        data = labelled_data(setup, lambda labels: union_charset(opts, loaded, resumed, last))
        labels, charset = data.labels, data.charset

        t_inputs = {n: InputSpec(**loaded[n]["input"]) for n in names}
        s_input = student_input(opts, t_inputs, explicit)
        spec = student_spec(opts, architecture(loaded[names[0]]["spec"]), explicit)
        spec["in_channels"] = s_input.channels
        torch.manual_seed(opts["seed"])
        student = Recognizer(spec, charset.num_classes,
                             input_size=(s_input.height, s_input.width))
        if not student.autoregressive:
            raise UsageError(f"the student's head {spec['head']['name']!r} reads CTC frames; "
                             "unified distillation trains an attention decoder: --head "
                             "attention (or --student-preset half|same over an attention "
                             "teacher)")
        longest = max((len(label.replace("\n", "")) for label in labels), default=0)
        if longest > student.head.max_length:
            raise UsageError(f"the training labels run to {longest} characters and the "
                             f"student's head reads at most {student.head.max_length}: "
                             f"--head-arg max_length={longest}")

        s_out = check_forward(student, s_input.height, s_input.width, s_input.channels)
        fold = cfg.charset_map == "fold"
        info, maps, notes = {}, {}, []
        for name in names:
            t_out = check_forward(teachers[name], s_input.height, s_input.width,
                                  t_inputs[name].channels)
            cmap = ClassMap(charset, Charset(loaded[name]["charset"]), fold)
            info[name] = TeacherInfo(cmap, t_inputs[name].channels,
                                     teachers[name].head.max_length,
                                     _grid(teachers[name], t_out, f"teacher {name}", cfg))
            cs, ct = s_out.extras["glimpses"].shape[-1], t_out.extras["glimpses"].shape[-1]
            if cs != ct and cfg.w_hint > 0:
                torch.manual_seed(opts["seed"] + 2)
                maps[name] = nn.Linear(cs, ct)
                notes.append(f"{name}: hint through a linear map of the student's {cs}-channel "
                             f"glimpses to its {ct}")
            if cmap.describe():
                notes.append(f"{name}: charset mapped ({cfg.charset_map}): {cmap.describe()}")
            if t_inputs[name].channels != s_input.channels:
                notes.append(f"{name}: reads the student's {s_input.channels}-channel batch as "
                             f"{t_inputs[name].channels}-channel images")
        student_grid = _grid(student, s_out, "student", cfg)

        domains = list(data.train_set.domains())
        taught, left = routing_report(routes, domains, labels, charset, info)
        _check_routing(cfg, routes, taught, left, domains, len(labels))
        say_unrouted(say, left, len(labels))
        precision = opts.get("teacher_precision") or "auto"
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        net = UnifiedNet(student, teachers, info, cfg, maps, student_grid=student_grid,
                         teacher_precision=precision)
        record = unified_record(cfg, {
            name: {"source": paths[name], "sha256": loaded[name]["sha256"],
                   "spec": architecture(loaded[name]["spec"]),
                   "domains": sorted(d for d, n in routes.items() if n == name),
                   "charset_map": info[name].class_map.describe()} for name in names})
        method = UnifiedMethod(charset, cfg, record)
        extra = {"spec": student.spec, "charset": charset.chars,
                 "input": {**s_input.__dict__}, "distill": record}
        s_params = sum(p.numel() for p in student.parameters() if p.requires_grad)
        t_params = {n: sum(p.numel() for p in t.parameters()) for n, t in teachers.items()}
        shown = ", ".join(f"{n} {t_params[n] / 1e6:.2f} M ("
                          f"{', '.join(record['teachers'][n]['domains'])}: {taught[n]} "
                          "training samples)" for n in names)
        say(f"unified distillation: student {spec['backbone']['name']}+{spec['head']['name']} "
            f"{s_params / 1e6:.2f} M parameters; teachers {shown}, frozen, {precision}; terms "
            f"{', '.join(cfg.active())} at T {cfg.temperature}; {charset.num_classes} classes, "
            f"{len(data.train_set)} training images")
        for note in notes:
            say(note)
        summary = fit_recognizer(setup, net, method, data, s_input, extra)
    if not main_process():
        return None
    return {"out": opts["out"], "kd_mode": "unified", "parameters": s_params,
            "teacher_parameters": t_params,
            "parameter_share": round(s_params / max(t_params.values()), 4),
            "classes": charset.num_classes, "terms": list(cfg.active()),
            "teachers": {n: {"domains": record["teachers"][n]["domains"],
                             "training_samples": taught[n]} for n in names},
            "unrouted_samples": sum(left.values()), **summary}


def _check_routing(cfg: UnifiedConfig, routes: dict[str, str], taught: dict[str, int],
                   left: dict[str, int], domains: list, total: int) -> None:
    """A teacher without samples, no sample for any teacher, or (``--unrouted error``)
    any sample without a teacher: one line each. Otherwise the unrouted are said."""
    present = describe_domains(domain_counts(domains))
    for name, n in taught.items():
        if n == 0:
            mine = ", ".join(d for d, t in routes.items() if t == name)
            raise UsageError(f"teacher {name} teaches {mine} and no training sample it can "
                             f"read has that domain (training domains: {present}); "
                             f"--teacher-domain {name}=DOMAIN says which it teaches")
    if not left:
        return
    why = "; ".join(f"{n} {reason}" for reason, n in sorted(left.items(), key=lambda kv: -kv[1]))
    if cfg.unrouted == "error":
        raise UsageError(f"--unrouted error: {sum(left.values())} of {total} training samples "
                         f"have no teacher ({why}); --teacher-domain NAME=DOMAIN routes a "
                         "domain, --unrouted ce lets them learn from their labels")


def say_unrouted(say, left: dict[str, int], total: int) -> None:
    if left:
        why = "; ".join(f"{n} {reason}" for reason, n in left.items())
        say(f"warning: {sum(left.values())} of {total} training samples have no teacher "
            f"({why}): they learn from their labels only (--unrouted error refuses them)")
