"""The router of "Text is Text" (Bhunia et al., ICCV 2021, supplement §C(iii)): a small
CNN that tells which specialist should read an image (handwriting or scene text, or
any set of named domains), the two-stage baseline the unified student is compared with.

What the supplement gives: "a 3 layer CNN with hidden size 128, having 0.3M parameters,
and 0.03 GFlops for 84 x 84 x 3 input - typically used for few-shot classification in
mini-imagenet". Three 3x3 convolutions of 128 channels hold 3,584 + 2 x 147,584 =
298,752 weights and biases (0.299 M: the "0.3 M"), so the layers are fixed by it. What it
does not give is the downsampling, and its FLOPs say there is much: three stride-1
convolutions at 84 x 84 cost 2.1 G multiply-adds, the mini-ImageNet "Conv-4" layout
(each block convolution, BatchNorm, ReLU, 2 x 2 max-pool) 0.35 G. Our choice:

=====  ==========================================  ===============  ==================
block  layers                                      output (84 in)   multiply-adds
=====  ==========================================  ===============  ==================
1      conv 3x3 / 2, BatchNorm, ReLU, max-pool 2   128 x 21 x 21    6,096,384
2      conv 3x3 / 2, BatchNorm, ReLU, max-pool 2   128 x 5 x 5      17,842,176
3      conv 3x3 / 1, BatchNorm, ReLU               128 x 5 x 5      3,686,400
head   global average pool, linear 128 -> N        N                128 N
=====  ==========================================  ===============  ==================

27.6 M multiply-adds for two domains (55.3 M FLOPs counting the multiply and the add
apart): the supplement's 0.03 "GFlops" read as G multiply-adds, the unit most papers
and counters (thop, ptflops) print under that name. :func:`count_macs` measures it;
``ocrkit info`` and ``train-router`` report it. Parameters for two domains: 299,778 (the
convolutions' 298,752, BatchNorm's 768 scales and shifts, the linear layer's 258).

Input: 84 x 84 RGB, every image stretched to the square (the router judges the look of
the ink and background, not the shape of the word; a grey image is replicated to three
channels), normalised as recognizers are (``(x - 0.5) / 0.5``). The names of the
domains it was trained on are part of the checkpoint (``router.domains``, in output
order).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ocrkit.errors import UsageError

SIZE = 84  # the supplement's 84 x 84 x 3 input


class Router(nn.Module):
    """Three 3x3 convolutions of ``hidden`` channels and a linear layer over the named
    ``domains`` (see the module docstring for the strides)."""

    def __init__(self, domains: Sequence[str], hidden: int = 128) -> None:
        super().__init__()
        domains = list(domains)
        if len(domains) < 2 or len(set(domains)) != len(domains):
            raise UsageError(f"a router needs at least two distinct domains, not {domains}")
        if hidden < 1:
            raise UsageError("the router's hidden size must be at least 1")
        self.domains, self.hidden = domains, hidden

        def block(cin: int, stride: int, pool: bool) -> nn.Sequential:
            layers = [nn.Conv2d(cin, hidden, 3, stride, 1, bias=True), nn.BatchNorm2d(hidden),
                      nn.ReLU(inplace=True)]
            return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

        self.block1 = block(3, 2, True)
        self.block2 = block(hidden, 2, True)
        self.block3 = block(hidden, 1, False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(hidden, len(domains))

    def config(self) -> dict:
        """What rebuilds it (stored in checkpoints as ``router``)."""
        return {"domains": list(self.domains), "hidden": self.hidden}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, N]`` over the domains for images ``[B, 3, 84, 84]``."""
        features = self.block3(self.block2(self.block1(images)))
        return self.fc(self.pool(features).flatten(1))


def count_macs(model: nn.Module, shape: Sequence[int]) -> dict:
    """Multiply-adds of one forward pass of ``model`` on a ``shape`` input (one image,
    no batch dimension), counted on every convolution and linear layer by a forward
    hook: a convolution costs ``output elements x (input channels / groups) x kernel
    area``, a linear layer ``in x out`` per row. BatchNorm, ReLU and pooling (a few
    operations per element, under 1 % here) are not counted, as thop and ptflops do
    not. Returns ``{"macs", "flops" (2 per multiply-add), "layers": {name: macs}}``."""
    layers: dict[str, int] = {}
    hooks = []

    def hook(name: str):
        def count(module, inputs, output) -> None:
            per_item = output[0].numel()
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                layers[name] = per_item * (module.in_channels // module.groups) * kh * kw
            else:
                layers[name] = per_item * module.in_features
        return count

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    macs = sum(layers.values())
    return {"macs": macs, "flops": 2 * macs, "layers": layers}


def router_cost(model: Router, size: int = SIZE) -> dict:
    """Parameters and measured multiply-adds of a router at its input size."""
    measured = count_macs(model, (3, size, size))
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "macs": measured["macs"], "flops": measured["flops"],
            "input": [size, size, 3]}


def build_router(ckpt: dict, path: str) -> Router:
    """The router of a ``train-router`` checkpoint, with its weights, in eval mode."""
    kind = ckpt.get("kind", "recognizer")
    if kind != "router":
        article = "an" if kind[:1] in "aeiou" else "a"
        raise UsageError(f"{path} is {article} {kind} checkpoint, expected a router (train "
                         "one with `ocrkit train-router`)")
    model = Router(**ckpt["router"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model
