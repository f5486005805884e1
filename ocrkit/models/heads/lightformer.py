"""Light-Former's decoder (Li et al. 2022, §III-C): an autoregressive head.

A Transformer decoder **without feed-forward blocks** whose units **share their
parameters across layers** (ALBERT-style, the paper's ref. [52]): one unit - masked
self-attention (Eq. 1) then cross-attention over the image tokens (Eq. 2), each
with a residual connection and LayerNorm - is applied ``layers`` times (3 by
default). The LayerNorms are shared too, so the parameter count does not depend on
``layers``. ``ffn=N`` and ``share=False`` rebuild the standard decoder for Table
IV's baseline rows.

Tokens: class 0 (the CTC blank in ocrkit's charsets) is the end-of-text symbol;
the start symbol is a learned vector. The output embedding is the classifier's
(``classifier.embed(ids)``: a softmax classifier's weight rows, or EMU's class
codes - the "shared" output embedding of Fig. 5), normalised by a LayerNorm,
plus a sinusoidal position. ``embed="own"`` gives the head its own table.

The head calls the classifier (``forward(tokens, classifier, targets)``): with
targets it runs once over all positions (teacher forcing) and returns logits
``[B, L+1, N]``; without, it decodes greedily for ``max_length + 1`` steps at most
(all of them while tracing, so an exported graph is a fixed-length loop), and
stops early once every line has ended. What the paper leaves open (heads,
maximum length, positions, post-LN) is an argument.

``ctc_weight=w`` (default 0, the paper's training) adds joint CTC-attention
training (Kim, Hori & Watanabe 2017; the paper does not use it): the image tokens,
averaged per column of the backbone map when they are the ``tokens`` neck's (one
per cell, column by column: ``w`` CTC frames, not ``h*w``, a quarter of the
classifier's work on a 4-row map), are classified by the *same* classifier and
trained with CTC (class 0, the end symbol, as the blank), weight ``w`` next to
the decoder's cross-entropy. It adds no parameters and changes nothing at
inference; it gives the encoder a per-character signal from the first step,
which the decoder's cross-attention otherwise has to find on its own. At 4,901 classes
it did not shorten MobileNetV3-small's slow start, but on a VGG + BiLSTM encoder it
made Light-Former-EMU learn (docs/results.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ocrkit.models.heads.sequence_targets import (  # noqa: F401  (IGNORE: re-exported)
    IGNORE,
    aux_ctc_loss,
    eos_targets,
    kept_reading,
    sequence_loss,
)
from ocrkit.models.necks.tokens import sinusoid


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Eq. 1-2). Written out rather than
    ``nn.MultiheadAttention``, whose traced graph keeps the batch and sequence
    lengths of the example: an exported model must read any batch and line width."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

    def keys(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``memory`` ``[B, heads, n, d/heads]``: computed once per
        image when the memory does not change (cross-attention over the image tokens)."""
        return self._split(self.k(memory)), self._split(self.v(memory))

    def forward(self, x, memory, mask=None, need_weights: bool = False, kv=None):
        b = x.shape[0]
        q = self._split(self.q(x))  # [B, heads, n, d/heads]
        k, v = kv if kv is not None else self.keys(memory)
        scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5)
        if mask is not None:
            scores = scores + mask
        weights = scores.softmax(-1)
        out = (self.drop(weights) @ v).transpose(1, 2).reshape(b, -1, q.shape[1] * q.shape[-1])
        return self.out(out), (weights.mean(1) if need_weights else None)

    def step(self, x: torch.Tensor, past: tuple | None):
        """Self-attention of one new position ``x`` ``[B, 1, d]`` over the earlier
        positions' keys and values ``past`` (cached: a causal decoder never changes
        them) and its own; returns the output and the cache grown by one."""
        k, v = self.keys(x)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        out, _ = self.forward(x, None, kv=(k, v))
        return out, (k, v)


class DecoderUnit(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(d, heads, dropout)
        self.cross_attn = Attention(d, heads, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.ffn = (nn.Sequential(nn.Linear(d, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(ffn, d)) if ffn else None)
        self.norm3 = nn.LayerNorm(d) if ffn else None

    def forward(self, x, memory, mask, need_weights: bool = False, kv=None):
        a, _ = self.self_attn(x, x, mask)
        return self._after_self(self.norm1(x + self.drop(a)), memory, need_weights, kv)

    def step(self, x, kv, past, need_weights: bool = False):
        """One new position (greedy decoding): ``(output, grown cache, weights)``."""
        a, past = self.self_attn.step(x, past)
        x, weights = self._after_self(self.norm1(x + self.drop(a)), None, need_weights, kv)
        return x, past, weights

    def _after_self(self, x, memory, need_weights, kv):
        a, weights = self.cross_attn(x, memory, need_weights=need_weights, kv=kv)
        x = self.norm2(x + self.drop(a))
        if self.ffn is not None:
            x = self.norm3(x + self.drop(self.ffn(x)))
        return x, weights


class LightFormerHead(nn.Module):
    """Args:
        in_channels: channels of the image tokens (projected to ``d_model`` if they differ).
        num_classes: classes including class 0, the end symbol.
        d_model: decoder width (the paper: 256). heads: attention heads.
        layers: decoder units applied (3). share: one set of parameters for all.
        ffn: feed-forward width (0: none, Light-Former; 2048: the standard decoder).
        max_length: longest text read (characters; the end symbol is one more step).
        embed: ``shared`` (the classifier's embedding) or ``own``.
        dropout: in attention and residual branches.
        ctc_weight: weight of the auxiliary CTC loss on the image tokens (0: none).
    """

    autoregressive = True
    stop_early = True  # greedy decoding stops once every line has ended (not while tracing)

    def __init__(self, *, in_channels: int, num_classes: int, d_model: int = 256, heads: int = 8,
                 layers: int = 3, share: bool = True, ffn: int = 0, max_length: int = 32,
                 embed: str = "shared", dropout: float = 0.1, ctc_weight: float = 0.0) -> None:
        super().__init__()
        for name, value, least in (("d_model", d_model, 1), ("heads", heads, 1),
                                   ("layers", layers, 1), ("max_length", max_length, 1),
                                   ("ffn", ffn, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}={value!r}: must be an integer >= {least}")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"dropout={dropout!r}: must lie in [0, 1)")
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        if embed not in ("shared", "own"):
            raise ValueError(f"embed={embed!r}: shared or own")
        if layers < 1 or max_length < 1:
            raise ValueError("layers and max_length must be at least 1")
        if not 0 <= float(ctc_weight):
            raise ValueError(f"ctc_weight={ctc_weight}: at least 0")
        self.ctc_weight = float(ctc_weight)
        self.num_classes, self.d_model, self.layers = num_classes, d_model, layers
        self.max_length, self.embed_kind, self.share = max_length, embed, share
        # reads the classifier's embedding_table() (Recognizer checks a classifier's
        # embedding map has a reader)
        self.shares_embedding = embed == "shared"
        self.out_channels = d_model  # what the classifier reads
        self.memory_proj = (nn.Linear(in_channels, d_model) if in_channels != d_model
                            else nn.Identity())
        self.units = nn.ModuleList([DecoderUnit(d_model, heads, ffn, dropout)
                                    for _ in range(1 if share else layers)])
        self.start = nn.Parameter(torch.randn(d_model) * 0.02)
        self.embed_norm = nn.LayerNorm(d_model)
        self.table = nn.Embedding(num_classes, d_model) if embed == "own" else None
        self.register_buffer("position", sinusoid(max_length + 1, d_model), persistent=False)

    # ------------------------------------------------------------------ decoder
    def _table(self, classifier) -> torch.Tensor:
        """The output embedding ``[N, d]``: the classifier's (``embedding_table()``) or own."""
        if self.table is not None:
            return self.table.weight
        table = getattr(classifier, "embedding_table", None)
        if table is None:
            raise ValueError(f"classifier {classifier.__class__.__name__} has no "
                             "embedding_table() to share; use --head-arg embed=own")
        return table()

    def _inputs(self, prev: torch.Tensor, batch: int, table: torch.Tensor) -> torch.Tensor:
        """The start vector then the embedded previous tokens, positioned."""
        start = self.start.expand(batch, 1, -1)
        x = start if prev.shape[1] == 0 else \
            torch.cat([start, F.embedding(prev, table).to(start.dtype)], 1)
        return self.embed_norm(x) + self.position[: x.shape[1]]

    def decode_steps(self, x: torch.Tensor, memory: torch.Tensor, need_weights: bool = False,
                     kv: list | None = None):
        """The decoder over the inputs ``x`` so far; ``kv``: each unit's keys and values
        of the memory (:meth:`memory_keys`), computed once per image, not per step."""
        n = x.shape[1]
        mask = torch.triu(torch.full((n, n), float("-inf"), device=x.device), 1)
        weights = None
        for i in range(self.layers):
            u = 0 if self.share else i
            x, weights = self.units[u](x, memory, mask, need_weights,
                                       kv[u] if kv is not None else None)
        return x, weights

    def memory_keys(self, memory: torch.Tensor) -> list:
        """Cross-attention keys and values of the image tokens, one pair per distinct
        unit (one when the units share their parameters)."""
        return [unit.cross_attn.keys(memory) for unit in self.units]

    def forward(self, frames: torch.Tensor, classifier, targets: torch.Tensor | None = None,
                extras: dict | None = None) -> torch.Tensor:
        """``frames`` ``[B, S, C]`` image tokens -> logits ``[B, L, N]``. ``targets``
        ``[B, L]`` (:meth:`targets`): teacher forcing. ``extras`` (a dict) receives
        ``glimpses`` (decoder outputs) and ``attention`` (last unit's cross-attention);
        with targets and ``ctc_weight`` also ``ctc_logits`` ``[B, S', N]``, the image
        tokens classified (for :meth:`ctc_loss`); it may hold ``feature_size``, the
        backbone map's ``(h, w)``: when ``S == h*w`` the tokens are averaged per
        column first (``S' = w``)."""
        memory = self.memory_proj(frames)
        b = memory.shape[0]
        want = extras is not None
        table = self._table(classifier)
        if targets is not None:
            if want and self.ctc_weight:
                # before the decoder's call: a classifier that keeps per-call state for
                # its own loss (EMU's beta) must keep the decoder's
                extras["ctc_logits"] = classifier(self._columns(memory, extras))
            prev = targets[:, :-1].clamp_min(0)  # ignored positions read as "end"
            h, weights = self.decode_steps(self._inputs(prev, b, table), memory, want,
                                           self.memory_keys(memory))
            logits = classifier(h)
        else:  # greedy, one position per step; self-attention keys cached per layer
            ended = torch.zeros(b, dtype=torch.bool, device=memory.device)
            kv = self.memory_keys(memory)
            pasts: list = [None] * self.layers
            steps, outs, maps = [], [], []
            tracing = torch.jit.is_tracing()
            x = self.start.expand(b, 1, -1)
            for t in range(self.max_length + 1):
                x = self.embed_norm(x) + self.position[t:t + 1]
                for i in range(self.layers):
                    u = 0 if self.share else i
                    x, pasts[i], weights = self.units[u].step(x, kv[u], pasts[i], want)
                step = classifier(x)
                steps.append(step)
                outs.append(x)
                maps.append(weights)
                nxt = step[:, -1].argmax(-1)
                ended = ended | (nxt == 0)
                if self.stop_early and not tracing and bool(ended.all()):
                    break
                x = F.embedding(nxt.unsqueeze(1), table).to(self.start.dtype)
            logits = torch.cat(steps, 1)
            h = torch.cat(outs, 1)
            weights = torch.cat(maps, 1) if want else None
        if want:
            extras["glimpses"], extras["attention"] = h, weights
        return logits

    # ------------------------------------------------------------------ training
    def targets(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """CTC-style flat targets -> ``[B, max(len) + 1]``: the characters, the end
        symbol (0), then ``IGNORE``."""
        return eos_targets(flat, lengths)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
             ) -> torch.Tensor:
        """Cross-entropy per position; ``none``: ``[B, L]`` (0 where ignored)."""
        return sequence_loss(logits, targets, reduction)

    @staticmethod
    def _columns(memory: torch.Tensor, extras: dict) -> torch.Tensor:
        """``[B, h*w, d]`` tokens (column by column) -> ``[B, w, d]`` column means;
        other sequences unchanged."""
        h, w = extras.get("feature_size", (1, memory.shape[1]))
        if h > 1 and memory.shape[1] == h * w:
            return memory.reshape(memory.shape[0], w, h, memory.shape[-1]).mean(2)
        return memory

    def ctc_loss(self, ctc_logits: torch.Tensor, flat: torch.Tensor, lengths: torch.Tensor
                 ) -> torch.Tensor:
        """The auxiliary CTC loss (mean per target length, blank = class 0) of
        ``ctc_logits`` ``[B, S, N]`` against CTC-style flat targets: the CTC head's."""
        return aux_ctc_loss(ctc_logits, flat, lengths)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, beam_width: int | None = None
               ) -> list[tuple[list[int], float]]:
        """Greedy: characters up to the first end symbol; confidence the mean
        probability of the characters kept (of the end symbol when none; 0 for a
        reading that never ends)."""
        best_p, best = F.softmax(logits.float(), -1).cpu().max(-1)
        return [kept_reading(ids, p) for p, ids in zip(best_p, best.tolist())]


def lightformer(*, in_channels: int, num_classes: int, **kwargs) -> LightFormerHead:
    return LightFormerHead(in_channels=in_channels, num_classes=num_classes, **kwargs)
