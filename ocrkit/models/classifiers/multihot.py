"""EMU multi-hot classifier (Li et al., TCSVT 2022, §III-D and §IV).

Each frame ``h_t`` (``d`` channels) is projected to ``K`` dimensions and
binarised, ``b_t = phi(P^T h_t)`` (Eq. 9, no bias); each class ``j`` has a
code ``c_j`` in ``{-1, 1}^K`` produced by **ClassNet**, an MLP on the class's
one-hot vector. Training uses ``phi = tanh(beta x)``:

* ``beta(h_t) = softplus(MLP(h_t)) + 1`` per frame (Eq. 10, the adaptive
  beta-net), fed ``h_t.detach()`` (footnote 3), so ``beta >= 1``;
* class codes use ``beta'``, an exponential moving average of the batch-mean
  beta (Eq. 15, ``gamma`` = 0.999, ``beta'(0) = 1``), kept as a buffer like
  BatchNorm's statistics (all-reduced across DDP ranks before the update);
* the gradients of ``tanh(beta x)`` are replaced (Eq. 17): d/dx := 1 - tanh^2(x),
  d/dbeta := 1 - tanh^2(beta) (``grad="literal"``, the default); ``grad="exact"``
  keeps Eq. 16's true derivatives;
* the logits are the scaled cosines ``s * cos(b_t, c_j)`` over all classes
  (Eq. 12). The printed ``/tau`` with tau = 20 would keep every logit within
  +-0.05 and nothing would learn: we read it as a scale ``s`` = 20 (``scale``).
  Under a CTC head these are the CTC logits, the blank has a code of its own;
* the regulariser of Eq. 13-14, ``-lambda * 1(beta < beta_hat) * beta`` with
  ``beta_hat = mu / loss`` (the position's loss, detached, clamped at 1e-6),
  comes from :meth:`MultiHotClassifier.aux_loss`, which the training method calls
  with the per-sequence loss (a CTC head has no per-frame targets: every frame of
  a sequence shares its CTC loss per label character).

``beta_mode="schedule"`` is the paper's ablation "w/o beta-Net": one beta for
every frame, ``(1 + 0.5 i) ** 0.5`` at iteration ``i`` (and ``beta'`` the same).

Evaluation uses sign codes, ``sign(0) := +1`` (``torch.sign(0) = 0`` would break
the identity below): the score of class ``j`` is ``b^T c_j = K - 2 Hamming(b,
c_j)``, returned as ``s * (K - 2 H) / K``, the training logit's binary limit.
The deployable form (``packed=True``, :meth:`finalized_state`) drops ClassNet and
the beta-net and keeps the codebook bit-packed (``[N, K/8]`` bytes, most
significant bit first, as ``numpy.packbits``): storage ``r*K*d + N*K/8`` bytes
against the softmax's ``r*N*d`` (§IV-C). ``scoring="popcount"`` scores by XOR and
popcount of packed codes on the CPU, equal to the float +-1 inner product.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

GRAD_MODES = ("literal", "exact")
BETA_MODES = ("adaptive", "schedule")
SCORINGS = ("float", "popcount")
EMBED_MAPS = ("proj", "linear")


class ScaledTanh(torch.autograd.Function):
    """``tanh(beta * x)`` with Eq. 17's replaced gradients (or Eq. 16's exact ones).

    ``beta`` broadcasts against ``x`` (one value per frame, ``[..., 1]``, or a scalar);
    its gradient is summed back to its own shape.
    """

    @staticmethod
    def forward(ctx, x, beta, mode: str = "literal"):
        y = torch.tanh(beta * x)
        ctx.save_for_backward(x, beta, y)
        ctx.mode = mode
        return y

    @staticmethod
    def backward(ctx, grad):
        x, beta, y = ctx.saved_tensors
        gx = gbeta = None
        if ctx.mode == "literal":
            if ctx.needs_input_grad[0]:
                gx = grad * (1 - torch.tanh(x) ** 2)
            if ctx.needs_input_grad[1]:
                gbeta = grad * (1 - torch.tanh(beta) ** 2)
        else:
            slope = grad * (1 - y ** 2)
            if ctx.needs_input_grad[0]:
                gx = slope * beta
            if ctx.needs_input_grad[1]:
                gbeta = slope * x
        if gbeta is not None:
            gbeta = _sum_to(gbeta, beta.shape)
        return gx, gbeta, None


def _sum_to(grad: torch.Tensor, shape) -> torch.Tensor:
    """Sum a broadcast gradient back to ``shape``."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, size in enumerate(shape):
        if size == 1 and grad.shape[i] != 1:
            grad = grad.sum(i, keepdim=True)
    return grad


def scaled_tanh(x: torch.Tensor, beta: torch.Tensor, mode: str = "literal") -> torch.Tensor:
    return ScaledTanh.apply(x, beta, mode)


def sign_codes(x: torch.Tensor) -> torch.Tensor:
    """+-1 codes with ``sign(0) = +1``."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """``[..., K]`` real codes -> ``[..., K/8]`` uint8, bit set where code >= 0, most
    significant bit first (``numpy.packbits``'s order)."""
    k = codes.shape[-1]
    bits = (codes >= 0).to(torch.uint8).reshape(*codes.shape[:-1], k // 8, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8,
                           device=codes.device)
    return (bits * weights).sum(-1, dtype=torch.uint8)


def unpack_codes(packed: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """``[..., K/8]`` uint8 -> ``[..., K]`` +-1 codes."""
    # integer division and remainder (not shifts and masks): ONNX exports them at any opset
    powers = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], device=packed.device,
                          dtype=torch.int32)
    bits = torch.remainder(torch.div(packed.to(torch.int32).unsqueeze(-1), powers,
                                     rounding_mode="floor"), 2)
    return bits.reshape(*packed.shape[:-1], -1).to(dtype) * 2 - 1


def popcount_scores(frames: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Inner products of +-1 codes from packed bits: ``K - 2 * popcount(a XOR b)``.

    ``frames`` ``[F, K/8]`` and ``codebook`` ``[N, K/8]`` uint8 -> ``[F, N]`` int32.
    Words of 64 bits when K is a multiple of 64, else bytes. One word of every class
    at a time (the codebook transposed, ``[words, N]``), accumulated over the words
    for 16 frames at once: the temporaries stay in cache (4x faster than XOR-ing
    whole ``[F, N, words]`` blocks)."""
    k = codebook.shape[-1] * 8
    word = np.uint64 if codebook.shape[-1] % 8 == 0 else np.uint8
    a = np.ascontiguousarray(frames).view(word)
    b = np.ascontiguousarray(np.ascontiguousarray(codebook).view(word).T)  # [words, N]
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.int32)
    chunk = 16
    tmp = np.empty((chunk, b.shape[1]), dtype=word)
    for start in range(0, a.shape[0], chunk):
        n = min(chunk, a.shape[0] - start)
        acc = np.zeros((n, b.shape[1]), dtype=np.uint16)  # popcounts up to K <= 65535
        for w in range(b.shape[0]):
            np.bitwise_xor(a[start:start + n, w, None], b[w][None], out=tmp[:n])
            acc += np.bitwise_count(tmp[:n])
        out[start:start + n] = k
        out[start:start + n] -= 2 * acc.astype(np.int32)
    return out


class MultiHotClassifier(nn.Module):
    """Frames ``[..., d]`` -> class logits ``[..., N]`` through K-bit codes.

    Args:
        bits: K, a multiple of 8 (the paper: 512).
        scale: s, the logit scale of the cosine (the paper's tau = 20 read as a scale).
        classnet_hidden: ClassNet's hidden width (one-hot -> hidden -> K; the paper
            does not give it).
        beta_hidden: the beta-net MLP's hidden width (Fig. 6 is not given in words).
        mu, lam, gamma: Eq. 13's mu, Eq. 14's lambda, Eq. 15's gamma.
        grad: ``literal`` (Eq. 17) or ``exact`` (Eq. 16).
        beta_mode: ``adaptive`` (the beta-net) or ``schedule`` ((1 + 0.5 i) ** 0.5).
        packed: the deployable form (codebook only; no ClassNet, no beta-net).
        scoring: ``float`` (+-1 matrix product) or ``popcount`` (CPU, packed codes;
            evaluation only).
        embed_map: how :meth:`embedding_table` maps the K-bit codes to the decoder's d
            (the paper leaves it open): ``proj``, the projection P itself (no
            parameters), or ``linear``, a K x d matrix of its own (deployed with the
            codebook: ``r*K*d`` bytes more).
    """

    def __init__(self, *, in_channels: int, num_classes: int, bits: int = 512,
                 scale: float = 20.0, classnet_hidden: int = 256, beta_hidden: int = 64,
                 mu: float = 1.0, lam: float = 1e-4, gamma: float = 0.999,
                 grad: str = "literal", beta_mode: str = "adaptive", packed: bool = False,
                 scoring: str = "float", embed_map: str = "proj") -> None:
        super().__init__()
        if bits < 8 or bits % 8 or bits > 65535:
            raise ValueError(f"bits={bits}: K must be a multiple of 8 from 8 to 65528")
        if grad not in GRAD_MODES:
            raise ValueError(f"grad={grad!r}: one of {', '.join(GRAD_MODES)}")
        if beta_mode not in BETA_MODES:
            raise ValueError(f"beta_mode={beta_mode!r}: one of {', '.join(BETA_MODES)}")
        if scoring not in SCORINGS:
            raise ValueError(f"scoring={scoring!r}: one of {', '.join(SCORINGS)}")
        if embed_map not in EMBED_MAPS:
            raise ValueError(f"embed_map={embed_map!r}: one of {', '.join(EMBED_MAPS)}")
        if not 0 < gamma < 1:
            raise ValueError(f"gamma={gamma}: the EMA decay must lie in (0, 1)")
        if scale <= 0 or mu <= 0 or lam < 0:
            raise ValueError("scale and mu must be positive, lam not negative")
        self.in_channels, self.num_classes, self.bits = in_channels, num_classes, bits
        self.scale, self.mu, self.lam, self.gamma = float(scale), float(mu), float(lam), gamma
        self.grad, self.beta_mode, self.packed, self.scoring = grad, beta_mode, packed, scoring
        self.proj = nn.Linear(in_channels, bits, bias=False)  # P of Eq. 9
        self.embed_map = nn.Linear(bits, in_channels, bias=False) \
            if embed_map == "linear" else None
        if packed:
            self.register_buffer("codebook", torch.zeros(num_classes, bits // 8,
                                                         dtype=torch.uint8))
            self.classnet = self.beta_net = None
        else:
            # ClassNet on one-hot vectors: its first linear layer applied to a one-hot
            # vector is a row lookup, so it is an embedding (same function, no N x N input).
            self.classnet = nn.Sequential(nn.Embedding(num_classes, classnet_hidden),
                                          nn.ReLU(inplace=True),
                                          nn.Linear(classnet_hidden, bits))
            self.beta_net = (nn.Sequential(nn.Linear(in_channels, beta_hidden),
                                           nn.ReLU(inplace=True), nn.Linear(beta_hidden, 1))
                             if beta_mode == "adaptive" else None)
            self.register_buffer("beta_prime", torch.ones(()))  # Eq. 15, beta'(0) = 1
            self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self._beta: torch.Tensor | None = None  # the last training forward's beta
        self._codes: torch.Tensor | None = None  # evaluation's class codes

    # ------------------------------------------------------------------ codes
    def class_logits_raw(self) -> torch.Tensor:
        """ClassNet's pre-activation outputs for every class ``[N, K]``."""
        ids = torch.arange(self.num_classes, device=self.proj.weight.device)
        return self.classnet(ids)

    def class_codes(self) -> torch.Tensor:
        """The +-1 class codes ``[N, K]`` evaluation and deployment use (computed once
        per evaluation: cached outside training, cleared by ``train()`` and loads)."""
        if not self.training and self._codes is not None and not torch.jit.is_tracing() \
                and self._codes.device == self.proj.weight.device:
            return self._codes
        if self.packed:
            codes = unpack_codes(self.codebook)
        else:
            with torch.no_grad():
                codes = sign_codes(self.class_logits_raw().float())
        if not self.training and not torch.jit.is_tracing():
            self._codes = codes
        return codes

    def train(self, mode: bool = True):
        self._codes = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._codes = None
        super()._load_from_state_dict(*args, **kwargs)

    def beta(self, x: torch.Tensor) -> torch.Tensor:
        """beta per frame ``[..., 1]`` (Eq. 10), or the schedule's value."""
        if self.beta_mode == "schedule":
            value = (1 + 0.5 * float(self.iteration)) ** 0.5
            return torch.full((*x.shape[:-1], 1), value, device=x.device)
        return F.softplus(self.beta_net(x.detach().float())) + 1

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj(x).float()
        if self.training and not self.packed:
            beta = self.beta(x)
            b = scaled_tanh(z, beta, self.grad)
            # a copy: aux_loss updates beta' in place before the backward pass
            c = scaled_tanh(self.class_logits_raw().float(), self.beta_prime.clone(), self.grad)
            self._beta = beta
            return self.scale * F.normalize(b, dim=-1) @ F.normalize(c, dim=-1).t()
        self._beta = None
        if self.scoring == "popcount" and self.packed and not torch.is_grad_enabled() \
                and z.device.type == "cpu" and not torch.jit.is_tracing():
            scores = popcount_scores(pack_codes(z.reshape(-1, self.bits)).numpy(),
                                     self.codebook.numpy())
            scores = torch.from_numpy(scores).reshape(*z.shape[:-1], -1).float()
        else:
            scores = sign_codes(z) @ self.class_codes().t()
        return scores * (self.scale / self.bits)

    def embedding_table(self) -> torch.Tensor:
        """The output embedding ``[N, d]`` Light-Former shares with the codebook
        (Fig. 5): each class's sign code mapped back to ``d`` by the projection P
        itself, ``c_y P^T / sqrt(K)``, or (``embed_map=linear``) by a K x d matrix of
        its own (the paper leaves the K -> d map open). Sign codes in training too (no
        gradient into ClassNet from here), so the decoder reads at training what it
        reads deployed."""
        codes = self.class_codes() if not self.training else \
            sign_codes(self.class_logits_raw().detach().float())
        if self.embed_map is not None:
            return self.embed_map(codes.to(self.embed_map.weight.dtype))
        return codes @ self.proj.weight / self.bits ** 0.5

    @property
    def embedding_reader_needed(self) -> str | None:
        """What of this classifier only a head reading :meth:`embedding_table` uses
        (the recognizer refuses it under any other head); ``None``: nothing."""
        return "embed_map=linear" if self.embed_map is not None else None

    # ------------------------------------------------------------------ training
    def aux_loss(self, loss: torch.Tensor, mask: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        """Eq. 13-15 after a training forward, given each sequence's loss ``[S]`` (CTC:
        every frame of a sequence shares it) or each position's ``[S, T]`` (an
        attention decoder: Eq. 13 as printed), ``mask`` ``[S, T]`` the positions
        that count (targets, not padding).

        Returns ``{"emu_reg": regulariser (to add to the loss), "beta": batch-mean beta,
        "beta_prime": beta' after the update}``; updates beta' (Eq. 15)."""
        beta = self._beta
        if beta is None:
            raise RuntimeError("aux_loss needs a training forward first")
        beta = beta.reshape(loss.shape[0], -1)  # [S, T]
        loss = loss.detach().float().clamp_min(1e-6)
        beta_hat = self.mu / (loss.unsqueeze(1) if loss.dim() == 1 else loss)
        weight = torch.ones_like(beta) if mask is None else mask.to(beta.dtype)
        count = weight.sum().clamp_min(1)
        below = (beta < beta_hat).to(beta.dtype) * weight
        reg = -self.lam * (below * beta).sum() / count
        with torch.no_grad():
            mean = (beta.detach() * weight).sum() / count
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(mean)
                mean /= torch.distributed.get_world_size()
            self.beta_prime.mul_(self.gamma).add_((1 - self.gamma) * mean)
            self.iteration += 1
            if self.beta_mode == "schedule":
                self.beta_prime.fill_((1 + 0.5 * float(self.iteration)) ** 0.5)
        return {"emu_reg": reg, "beta": mean, "beta_prime": self.beta_prime.clone(),
                "beta_below_hat": (below.sum() / count).detach()}

    # ------------------------------------------------------------------ deployment
    def finalized_state(self) -> dict[str, torch.Tensor]:
        """The deployable form's state: the projection, the bit-packed codebook (and the
        K -> d embedding map when it has one)."""
        if self.packed:
            return {k: v.detach().clone() for k, v in self.state_dict().items()}
        with torch.no_grad():
            codebook = pack_codes(self.class_logits_raw().float())
        state = {"proj.weight": self.proj.weight.detach().clone(), "codebook": codebook.cpu()}
        if self.embed_map is not None:
            state["embed_map.weight"] = self.embed_map.weight.detach().clone()
        return state

    def code_report(self) -> dict:
        """See :func:`code_report`."""
        return code_report(self.class_codes())


def code_report(codes: torch.Tensor) -> dict:
    """Minimum Hamming distance between two of the +-1 class codes ``[N, K]`` and how
    many pairs are identical (those classes could not be told apart)."""
    with torch.no_grad():
        codes = codes.float()
        n, bits = codes.shape
        dmin, ties = bits, 0
        for start in range(0, n, 1024):
            ham = (bits - codes[start:start + 1024] @ codes.t()) / 2
            rows = torch.arange(start, min(n, start + 1024))
            ham[rows - start, rows] = float(bits + 1)  # not a code against itself
            dmin = min(dmin, int(ham.min()))
            ties += int((ham == 0).sum())
    return {"bits": bits, "classes": n, "min_hamming": dmin if n > 1 else None,
            "duplicate_pairs": ties // 2}


def storage_bytes(bits: int, classes: int, dim: int, float_bytes: int = 4) -> dict:
    """§IV-C: bytes of the softmax classifier (r N d) and of EMU (r K d + N K / 8)."""
    softmax = float_bytes * classes * dim
    emu = float_bytes * bits * dim + classes * bits // 8
    return {"softmax": softmax, "emu": emu, "ratio": emu / softmax,
            "psi": bits / classes + bits / (8 * float_bytes * dim)}


def multihot(*, in_channels: int, num_classes: int, **kwargs) -> MultiHotClassifier:
    return MultiHotClassifier(in_channels=in_channels, num_classes=num_classes, **kwargs)
