"""Cost of a distillation step against the student's own training step.

Times the optimizer step alone (forward, backward, clipping, update) on one fixed
batch, so data loading does not blur the comparison: the student trained with CTC
alone, then the same student distilled offline (frozen teacher, no graph), online
(teacher trained too), with DML and with ctc-mean-kl. The target of issue 10: an
offline distillation step costs at most 1.6x the student's own step.

    python bench/distill_bench.py                 # CPU, the CPU-scale Table 5 models
    python bench/distill_bench.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrkit.charset import Charset  # noqa: E402
from ocrkit.data.batch import Collate, InputSpec  # noqa: E402
from ocrkit.device import cpu_has_bf16  # noqa: E402
from ocrkit.methods.distill import (  # noqa: E402
    DistillMethod,
    DistillNet,
    KDConfig,
    _key,
    regressor,
)
from ocrkit.methods.distill_setup import half_spec  # noqa: E402
from ocrkit.methods.supervised import SupervisedCTC  # noqa: E402
from ocrkit.models.recognizer import Recognizer, check_forward, make_spec  # noqa: E402


def batch(size: int, spec: InputSpec, charset: Charset) -> dict:
    from PIL import Image

    from ocrkit.data import Sample

    g = torch.Generator().manual_seed(0)
    samples = []
    for i in range(size):
        arr = (torch.rand(spec.height, spec.width, generator=g) * 255).byte().numpy()
        samples.append(Sample(Image.fromarray(arr), ["".join(charset.chars[(i + k) % 100]
                                                            for k in range(6))], str(i)))
    return Collate(spec, charset)(samples)


class Stepper:
    """One variant: a network, its method and optimizer, timed one step at a time."""

    def __init__(self, net, method, data, device) -> None:
        self.net, self.method, self.data, self.device = net, method, data, device
        self.params = [p for g in method.param_groups(net) for p in g["params"]]
        self.opt = torch.optim.Adam(self.params, lr=1e-4)
        self.times: list[float] = []
        net.train()

    def step(self, record: bool = True) -> None:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        loss = self.method.loss(self.net, self.data, self.device).total
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        sync()
        if record:
            self.times.append(time.perf_counter() - t)


def interleaved(steppers: dict, rounds: int, per_round: int = 2) -> dict[str, float]:
    """Median ms per step of each variant, measured in interleaved rounds so that a
    noisy machine (a shared VM) slows every variant alike."""
    for s in steppers.values():
        for _ in range(3):
            s.step(record=False)
    for _ in range(rounds):
        for s in steppers.values():
            for _ in range(per_round):
                s.step()
    return {name: statistics.median(s.times) * 1000 for name, s in steppers.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--classes", type=int, default=500)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    charset = Charset([chr(0x4E00 + i) for i in range(args.classes)])
    spec_in = InputSpec(32, 162, "keep-ratio")
    teacher_spec = make_spec("vgg-small", backbone_args={"channels": (32, 64, 128, 128),
                                                         "width_stride": 8},
                             sequence_args={"hidden": 128, "layers": 2})
    student_spec = half_spec(teacher_spec)
    data = batch(args.batch_size, spec_in, charset)

    def build(spec):
        return Recognizer(spec, charset.num_classes, input_size=(32, 162))

    steppers = {}
    student = build(student_spec).to(device)
    steppers["student alone (CTC)"] = Stepper(student, _Supervised(charset), data, device)
    for name, cfg in (("offline, paper (frozen teacher)", KDConfig()),
                      ("offline, paper, teacher fp32", KDConfig()),
                      ("offline, paper, hints on every stage", KDConfig()),
                      ("offline, paper, no hints", KDConfig(lambda_hint=0)),
                      ("offline, ctc-mean-kl", KDConfig(mode="ctc-mean-kl", temperature=0.5)),
                      ("online, paper (teacher trained)", KDConfig(online=True)),
                      ("dml (two peers)", KDConfig(mode="dml", temperature=1.0))):
        s, t = build(student_spec), build(teacher_spec if cfg.mode != "dml" else student_spec)
        regs = {}
        if cfg.mode == "paper" and cfg.lambda_hint:
            names = [n for n in s.tap_points() if n.startswith("stage")]
            names = names if "every stage" in name else names[len(names) // 2:]  # the default
            so, to = check_forward(s, 32, 162, taps=names), check_forward(t, 32, 162, taps=names)
            cfg.hints = [(n, n) for n in names]
            regs = {_key(n, n): regressor(so.taps[n].shape, to.taps[n].shape) for n in names}
        precision = "fp32" if "fp32" in name or not cpu_has_bf16() else "bf16"
        net = DistillNet(s, t, cfg, regs, teacher_precision=precision).to(device)
        steppers[name] = Stepper(net, DistillMethod(charset, cfg, {}), data, device)
    results = interleaved(steppers, args.steps)
    base = results["student alone (CTC)"]
    ps = sum(p.numel() for p in student.parameters())
    pt = sum(p.numel() for p in build(teacher_spec).parameters())
    print(f"device {device}, batch {args.batch_size}, input 32x162, {charset.num_classes} "
          f"classes; teacher {pt / 1e6:.2f} M parameters, student {ps / 1e6:.2f} M; "
          f"median of {2 * args.steps} steps in interleaved rounds, torch threads {torch.get_num_threads()}; frozen "
          f"teacher in {'bf16' if cpu_has_bf16() and device.type == 'cpu' else 'fp32'} unless noted")
    print(f"{'step':<36} {'ms':>8} {'x student':>10}")
    for name, ms in results.items():
        print(f"{name:<36} {ms:8.1f} {ms / base:10.2f}")


class _Supervised(SupervisedCTC):
    def param_groups(self, core):
        return [{"name": "model", "params": list(core.parameters())}]


if __name__ == "__main__":
    main()
