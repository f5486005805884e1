"""A 1-D attention decoder (Bahdanau additive attention), as ASTER and DTRB's "Attn" use.

Shi et al., "ASTER" (TPAMI 2018, §2.2) and Baek et al., "What is wrong with scene
text recognition model comparisons?" (ICCV 2019, the deep-text-recognition-benchmark
"Attn" prediction stage). At step ``t`` the decoder state ``s_{t-1}`` scores every
frame ``h_i`` of the sequence ``[B, T, C]``::

    e_{t,i} = w^T tanh(W_s s_{t-1} + W_h h_i + b)      alpha_t = softmax_i(e_t)
    g_t = sum_i alpha_{t,i} h_i                         (the glimpse, or context vector)
    s_t = cell(s_{t-1}, [g_t ; embed(y_{t-1})])         logits_t = classifier([s_t ; g_t])

``cell`` is an LSTM (DTRB) or a GRU (ASTER) cell; the initial state is zero. ``W_h h``
is computed once per image, not per step.

**Readout.** ASTER and DTRB classify the state alone (``readout="state"``:
``logits_t = classifier(s_t)``). The default, ``state+glimpse``, also gives the
classifier the glimpse (as SAR and Luong et al.'s attention do): a direct path from
the attended frames to the class, which the state alone only gets through the cell.
At CPU scale it decides whether the decoder learns at all in a short run: 600 steps on
600 rendered words of a 10-letter alphabet (batch 16, a 0.25 M-parameter VGG+BiLSTM
encoder) read 94 % of held-out words with it and 40 % without (CTC on the same
encoder: 97 %). It adds ``C`` inputs to the classifier and nothing else.

Tokens, as Light-Former's head has them (``ocrkit.models.heads.lightformer``): class 0
(the CTC blank in ocrkit's charsets) is the end symbol, so charsets stay as they are;
the start symbol ([GO]) is one more row of the decoder's own embedding table (index
``num_classes``; DTRB feeds one-hot vectors, which grow with the charset). Training
feeds the previous ground-truth character (teacher forcing, the label shifted by one);
``targets`` are the characters, the end symbol, then ``IGNORE``: ignored positions
count in no loss. ``max_length`` characters at most (DTRB: 25), one more step for the
end symbol.

Decoding:

* **greedy** (``forward`` without targets): the argmax of each step is the next input;
  it stops once every line of the batch has ended, and runs all ``max_length + 1``
  steps while tracing, so an exported graph is a fixed-length loop. The text is the
  classes before the first end symbol.
* **beam search** (:meth:`AttentionHead.beam_search`): ``width`` hypotheses per image
  ranked by their log-probability ``sum_t log p(y_t | y_<t, image)`` up to and
  including the end symbol (no length normalisation: the score is the model's
  probability of the whole text). A hypothesis that has ended stays in the beam at its
  score. Plain beam search can end below greedy decoding (the greedy prefix may drop
  out of the beam, and the survivors then pay more per step); the greedy hypothesis is
  therefore kept as a candidate, so the result never scores below greedy's.

Confidence (greedy and beam): the mean probability of the characters kept (the step
probabilities of the chosen classes), PaddleOCR's and ocrkit's CTC convention, so
thresholds carry over between heads; an empty text reports the end symbol's
probability at the first step; a reading that never ends (longer than
``max_length``) reports 0 (``sequence_targets.kept_reading``). (The minimum would
single out one doubtful letter more sharply; the mean keeps one confidence threshold
meaningful across heads.)

``outputs=True`` (``extras``) carries per step: ``glimpses`` ``[B, L, C]`` (the context
vectors ``g_t``) and ``attention`` ``[B, L, T]`` (``alpha_t``) next to the logits
``[B, L, N]`` - what unified HTR + STR distillation reads, with both decoders
teacher-forced on the same ground-truth prefix (``targets``).

**Joint CTC-attention** (``ctc_weight=w``, default 0; Kim, Hori & Watanabe 2017,
not in ASTER or DTRB): a linear layer of its own classifies each frame and a CTC
loss on it (class 0, the end symbol, as the blank) is added with weight ``w`` to the
decoder's cross-entropy. It gives the encoder a per-character signal from the first
step, which the decoder's attention otherwise has to find on its own, and changes
nothing at inference (the layer is not read there; ``C x N`` weights more in the
checkpoint).

Frames that only see the padding of a batch (lines padded to the widest) are attended
to like any other (DTRB and Light-Former do the same): the padding is the line's own
background, and a per-image graph needs no widths.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ocrkit.models.heads.sequence_targets import (IGNORE, aux_ctc_loss, eos_targets,
                                                  kept_reading, sequence_loss)

CELLS = ("lstm", "gru")
READOUTS = ("state+glimpse", "state")


class BahdanauAttention(nn.Module):
    """Additive attention of a decoder state over a sequence of frames."""

    def __init__(self, in_channels: int, hidden: int, attn_dim: int) -> None:
        super().__init__()
        self.frame_proj = nn.Linear(in_channels, attn_dim, bias=False)  # W_h
        self.state_proj = nn.Linear(hidden, attn_dim)  # W_s and b
        self.score = nn.Linear(attn_dim, 1, bias=False)  # w

    def keys(self, frames: torch.Tensor) -> torch.Tensor:
        """``W_h h_i`` ``[B, T, A]``: once per image."""
        return self.frame_proj(frames)

    def forward(self, keys: torch.Tensor, frames: torch.Tensor, state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(glimpse ``[B, C]``, weights ``[B, T]``) for the state ``[B, hidden]``."""
        e = torch.tanh(keys + self.state_proj(state).unsqueeze(1)) @ self.score.weight[0]
        alpha = e.softmax(-1)
        return torch.bmm(alpha.unsqueeze(1), frames).squeeze(1), alpha


class AttentionHead(nn.Module):
    """Args:
        in_channels: channels ``C`` of the frames.
        num_classes: classes including class 0, the end symbol.
        hidden: decoder state size. 128, not DTRB's 256: a step costs about 0.12 ms
            against 0.24 ms on one CPU thread (256-d frames), so even a line that never
            ends (26 steps) stays within a 10 ms word budget. Measured per word (RGB
            32x128, batch 1, one thread, a 1.9 M-parameter VGG + 2-layer BiLSTM-128
            encoder): CTC 4.9 ms; this head 6.0 ms for 7 steps (a 6-letter word), 8.2
            ms for all 26; with hidden 256 6.9 and 11.5 ms.
        cell: ``lstm`` (DTRB) or ``gru`` (ASTER).
        attn_dim: size of the additive attention's hidden layer (default: ``hidden``).
        embed_dim: size of the previous character's embedding.
        max_length: longest text read (characters; the end symbol is one more step).
        readout: what the classifier reads, ``state+glimpse`` ``[s_t ; g_t]`` or
            ``state`` ``s_t`` (ASTER, DTRB).
    """

    autoregressive = True
    stop_early = True  # greedy decoding stops once every line has ended (not while tracing)
    shares_embedding = False

    def __init__(self, *, in_channels: int, num_classes: int, hidden: int = 128,
                 cell: str = "lstm", attn_dim: int | None = None, embed_dim: int = 64,
                 max_length: int = 25, readout: str = "state+glimpse",
                 ctc_weight: float = 0.0) -> None:
        super().__init__()
        if isinstance(ctc_weight, bool) or not float(ctc_weight) >= 0:
            raise ValueError(f"ctc_weight={ctc_weight!r}: a number >= 0")
        self.ctc_weight = float(ctc_weight)
        # joint CTC-attention: the frames' own classifier (absent at 0: checkpoints of
        # heads trained without it keep their keys)
        self.ctc_proj = nn.Linear(in_channels, num_classes) if self.ctc_weight else None
        for name, value in (("hidden", hidden), ("embed_dim", embed_dim),
                            ("max_length", max_length),
                            ("attn_dim", hidden if attn_dim is None else attn_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        if cell not in CELLS:
            raise ValueError(f"cell={cell!r}: one of {', '.join(CELLS)}")
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r}: one of {', '.join(READOUTS)}")
        self.num_classes, self.hidden, self.cell_kind = num_classes, hidden, cell
        self.max_length = max_length
        self.go = num_classes  # the start symbol's row of the embedding table
        self.readout = readout
        self.out_channels = hidden + (in_channels if readout == "state+glimpse" else 0)
        self.embed = nn.Embedding(num_classes + 1, embed_dim)
        self.attention = BahdanauAttention(in_channels, hidden, attn_dim or hidden)
        rnn = nn.LSTMCell if cell == "lstm" else nn.GRUCell
        self.cell = rnn(in_channels + embed_dim, hidden)

    # ------------------------------------------------------------------ one step
    def initial_state(self, frames: torch.Tensor):
        """The zero state for a batch of frames: ``(h, c)`` (LSTM) or ``h`` (GRU)."""
        h = frames.new_zeros(frames.shape[0], self.hidden)
        return (h, h) if self.cell_kind == "lstm" else h

    def step(self, prev: torch.Tensor, state, keys: torch.Tensor, frames: torch.Tensor):
        """One decoding step from the previous classes ``prev`` ``[B]``: ``(output
        [B, out_channels] (what the classifier reads), new state, glimpse [B, C],
        attention [B, T])``."""
        h = state[0] if self.cell_kind == "lstm" else state
        glimpse, alpha = self.attention(keys, frames, h)
        x = torch.cat([glimpse, self.embed(prev).to(glimpse.dtype)], -1)
        state = self.cell(x, state)
        out = state[0] if self.cell_kind == "lstm" else state
        if self.readout == "state+glimpse":
            out = torch.cat([out, glimpse], -1)
        return out, state, glimpse, alpha

    @staticmethod
    def _select(state, index: torch.Tensor):
        """The state of the rows ``index`` (beam search's reordering)."""
        if isinstance(state, tuple):
            return tuple(s.index_select(0, index) for s in state)
        return state.index_select(0, index)

    def _start(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B]`` start symbols (follows a traced batch size)."""
        return torch.full_like(frames[:, 0, 0], self.go, dtype=torch.long)

    # ------------------------------------------------------------------ forward
    def forward(self, frames: torch.Tensor, classifier, targets: torch.Tensor | None = None,
                extras: dict | None = None) -> torch.Tensor:
        """``frames`` ``[B, T, C]`` -> logits ``[B, L, N]``. ``targets`` ``[B, L]``
        (:meth:`targets`): teacher forcing, ``L`` steps. Without: greedy, at most
        ``max_length + 1`` steps. ``extras`` (a dict) receives ``glimpses`` ``[B, L, C]``
        and ``attention`` ``[B, L, T]``; with targets and ``ctc_weight`` also
        ``ctc_logits`` ``[B, T, N]`` (the frames classified, for :meth:`ctc_loss`)."""
        if targets is not None and extras is not None and self.ctc_proj is not None:
            extras["ctc_logits"] = self.ctc_proj(frames)
        keys = self.attention.keys(frames)
        state = self.initial_state(frames)
        prev = self._start(frames)
        outs, glimpses, maps = [], [], []
        if targets is not None:
            # the label shifted by one; ignored positions read as "end" (no loss sees them,
            # and a recurrent decoder never lets a later input change an earlier step)
            feed = targets.clamp_min(0)
            for t in range(targets.shape[1]):
                out, state, glimpse, alpha = self.step(prev, state, keys, frames)
                outs.append(out)
                glimpses.append(glimpse)
                maps.append(alpha)
                prev = feed[:, t]
            # one classifier call over every position (a classifier with per-call state
            # for its own loss, like EMU's beta, sees them all)
            logits = classifier(torch.stack(outs, 1))
        else:
            ended = torch.zeros_like(prev, dtype=torch.bool)
            tracing = torch.jit.is_tracing()
            steps = []
            for _ in range(self.max_length + 1):
                out, state, glimpse, alpha = self.step(prev, state, keys, frames)
                step = classifier(out.unsqueeze(1))  # [B, 1, N]
                steps.append(step)
                glimpses.append(glimpse)
                maps.append(alpha)
                prev = step[:, 0].argmax(-1)
                ended = ended | (prev == 0)
                if self.stop_early and not tracing and bool(ended.all()):
                    break
            logits = torch.cat(steps, 1)
        if extras is not None:
            extras["glimpses"] = torch.stack(glimpses, 1)
            extras["attention"] = torch.stack(maps, 1)
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

    def ctc_loss(self, ctc_logits: torch.Tensor, flat: torch.Tensor, lengths: torch.Tensor
                 ) -> torch.Tensor:
        """The auxiliary CTC loss of joint CTC-attention training (``ctc_weight``)."""
        return aux_ctc_loss(ctc_logits, flat, lengths)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode(self, logits: torch.Tensor, beam_width: int | None = None
               ) -> list[tuple[list[int], float]]:
        """Greedy: the classes before the first end symbol and their mean probability
        (the end symbol's at the first step when none is kept). Beam search needs the
        frames: :meth:`beam_search`."""
        best_p, best = F.softmax(logits.float(), -1).cpu().max(-1)
        return [kept_reading(ids, p) for p, ids in zip(best_p, best.tolist())]

    @torch.no_grad()
    def beam_search(self, frames: torch.Tensor, classifier, width: int
                    ) -> list[tuple[list[int], float]]:
        """Per image: (classes before the end symbol, confidence) of the most probable
        of ``width`` hypotheses and the greedy one (greedy alone for ``width`` 1)."""
        if width <= 1:
            return self.decode(self.forward(frames, classifier))
        return [hyps[0][:2] for hyps in self.search(frames, classifier, width)]

    @torch.no_grad()
    def search(self, frames: torch.Tensor, classifier, width: int, keep_greedy: bool = True
               ) -> list[list[tuple[list[int], float, float]]]:
        """Beam search of ``width`` hypotheses. Per image, the n-best list, most probable
        first: ``(ids, confidence, log probability)`` of each hypothesis alive at the end
        (at most ``width``). ``keep_greedy``: the greedy hypothesis joins the list when
        it is not in it and scores above its last."""
        b = frames.shape[0]
        keys = self.attention.keys(frames)
        beam_frames = frames.repeat_interleave(width, 0)
        beam_keys = keys.repeat_interleave(width, 0)
        state = self.initial_state(beam_frames)
        prev = self._start(beam_frames)
        device = frames.device
        scores = torch.full((b, width), -math.inf, device=device)
        scores[:, 0] = 0.0  # one live hypothesis at first: the others are copies of it
        ended = torch.zeros(b, width, dtype=torch.bool, device=device)
        tokens = torch.zeros(b, width, 0, dtype=torch.long, device=device)
        token_lp = torch.zeros(b, width, 0, device=device)
        end_only = None
        rows = torch.arange(b, device=device).unsqueeze(1) * width
        for _ in range(self.max_length + 1):
            out, state, _, _ = self.step(prev, state, beam_keys, beam_frames)
            logp = F.log_softmax(classifier(out.unsqueeze(1))[:, 0].float(), -1)
            n = logp.shape[-1]
            logp = logp.reshape(b, width, n)
            if end_only is None:  # an ended hypothesis continues with "end", at no cost
                end_only = torch.full((n,), -math.inf, device=device)
                end_only[0] = 0.0
            logp = torch.where(ended.unsqueeze(-1), end_only, logp)
            top, index = (scores.unsqueeze(-1) + logp).reshape(b, width * n).topk(width, -1)
            parent, token = index // n, index % n
            scores = top
            chosen = logp.gather(1, parent.unsqueeze(-1).expand(-1, -1, n)).gather(
                2, token.unsqueeze(-1))
            tokens = torch.cat([tokens.gather(1, parent.unsqueeze(-1).expand_as(tokens)),
                                token.unsqueeze(-1)], -1)
            token_lp = torch.cat([token_lp.gather(1, parent.unsqueeze(-1).expand_as(token_lp)),
                                  chosen], -1)
            ended = ended.gather(1, parent) | (token == 0)
            state = self._select(state, (rows + parent).reshape(-1))
            prev = token.reshape(-1)
            if bool((ended | scores.isinf()).all()):
                break
        results = []
        for i in range(b):  # topk keeps the beams sorted, most probable first
            hyps = []
            for k in range(width):
                if math.isinf(float(scores[i, k])):
                    continue  # fewer live hypotheses than the width
                ids, conf = kept_reading(tokens[i, k].tolist(), token_lp[i, k].exp())
                hyps.append((ids, conf, float(scores[i, k])))
            results.append(hyps)
        if keep_greedy:
            logits = self.forward(frames, classifier)
            greedy_lp = sequence_log_prob(logits)
            for i, (ids, conf) in enumerate(self.decode(logits)):
                hyps = results[i]
                if all(ids != h[0] for h in hyps) and (
                        len(hyps) < width or float(greedy_lp[i]) > hyps[-1][2]):
                    hyps.append((ids, conf, float(greedy_lp[i])))
                    hyps.sort(key=lambda h: -h[2])
                    del hyps[width:]
        return results

    @torch.no_grad()
    def log_prob(self, frames: torch.Tensor, classifier, sequences: list[list[int]]
                 ) -> torch.Tensor:
        """``[B]`` log-probability of each text (classes without the end symbol) under
        teacher forcing: its characters, then the end symbol when it has at most
        ``max_length`` characters (longer texts are cut at the decoder's step limit)."""
        steps = self.max_length + 1
        width = min(steps, max(len(s) for s in sequences) + 1)
        targets = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
        for i, seq in enumerate(sequences):
            seq = list(seq)[:steps]
            targets[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            if len(seq) < steps:
                targets[i, len(seq)] = 0
        targets = targets.to(frames.device)
        logits = self.forward(frames, classifier, targets=targets)
        return -self.loss(logits, targets, reduction="none").sum(1)


def sequence_log_prob(logits: torch.Tensor) -> torch.Tensor:
    """``[B]`` log-probability of greedy decoding's choices in ``logits`` ``[B, L, N]``:
    the step log-probabilities of the argmax classes up to and including the first end
    symbol (all steps when there is none)."""
    logp = F.log_softmax(logits.float(), -1)
    best, ids = logp.max(-1)
    ended_before = torch.cumsum((ids == 0).long(), 1) - (ids == 0).long()  # ends earlier
    return torch.where(ended_before > 0, 0.0, best).sum(1)


def attention(*, in_channels: int, num_classes: int, **kwargs) -> AttentionHead:
    return AttentionHead(in_channels=in_channels, num_classes=num_classes, **kwargs)
