"""Multi-row necks (Yu & Zhang §3.2-3.3): one model reads a whole multi-row image.

Both take the backbone's last feature map ``[B, c, h, w]`` of an image holding
``rows`` (H) text rows. ``h`` and ``w`` (the feature geometry) are fixed by the
input size; :class:`ocrkit.models.recognizer.Recognizer` measures them once with
a dry run of the backbone and stores them in the model spec, so a checkpoint
rebuilds the same neck.

``multirow-stretch`` (Eq. 2-3)
    The feature rows are concatenated in reading order (row 1 left to right,
    then row 2 ...) into one sequence of frames ``[B, rows*w, c]``; training
    uses one CTC loss against the rows joined in reading order.

    ``pool="rows"`` (default) first averages the feature map's height down to
    the H text rows (adaptive average pooling: CAP, Eq. 1, inside each text
    row's band), so the sequence has ``H * w`` frames. In the paper's setting
    (224-px, 7-row images, a /32 backbone: h = H = 7) this is exactly Eq. 2.
    When ``h`` is a multiple of H, the literal reshape (``pool="none"``, ``h*w``
    frames) shows every text row to CTC m = h/H times, once per feature row of
    its band, and CTC must learn to emit each character on one of them only; on
    3-row 96-px images (h = 6) it sat on the CTC plateau for 400 steps where
    the pooled sequence learns.

    Splitting back into rows (the paper is silent): with ``pool="rows"`` text
    row ``j`` owns frames ``[j*w, (j+1)*w)``; with ``pool="none"`` it owns the
    feature rows ``r`` with ``floor((r + 0.5) * H / h) == j`` (ocrkit's
    synthetic rows are evenly spaced). Each row's frames are decoded as a
    sequence of their own, which also keeps a character repeated across a row
    boundary (one CTC path would merge it). With ``pool="none"`` and ``h < H``
    some rows own no frame and come back empty; image-level text is unaffected.

``row-attention`` (Eq. 4-10)
    View ``[B, h, w*c]``; ``Conv1d(w*c, w*c, kernel=h-H+1)`` over the height
    gives a sigmoid mask of exactly H rows (Eq. 7-8), which multiplies the
    features (Eq. 9); the result, ``[B, H, w, c]``, sends each row through the
    sequence stage and its own CTC loss, averaged over rows and batch (Eq. 10).
    What the mask multiplies is ambiguous in the paper, so it is an option:

    ``features="conv"`` (default): Eq. 6 read as ``ReLU(x')``, a second
    convolution (Eq. 5) whose output the mask gates; otherwise Eq. 5 would be
    unused. ``features="input"``: Eq. 6 as printed, ``x' = ReLU(x)`` - the
    backbone's own feature rows, gated by the mask, as in ECANet (which
    multiplies its input by a sigmoid of a Conv1d); well defined in the
    paper's geometry (h = H, kernel 1); when h > H the input is first averaged
    down to H rows within each text row's band (as ``multirow-stretch``'s
    ``pool="rows"``), while the mask's convolution still sees the h-H+1 rows
    around each row. One convolution instead of two: half the parameters.

    ``variant="full"`` is the paper's convolution: ``2 * (w*c)^2 * k``
    parameters (w=14, c=128, k=1 already gives 6.4 M), tied to one input width.
    ``variant="column"`` shares one ``Conv1d(c, c, k)`` across all columns (a
    ``(k, 1)`` 2-D convolution without padding): ``2 * c^2 * k`` parameters,
    ``w`` times fewer, and it works for any input width. It is lighter because a
    text row is the same whatever column it is read at; what it gives up is the
    full variant's freedom to mix features across columns before the BiLSTM.
    ``variant="auto"`` (the default) is the full variant where it fits the
    parameter limit (``max_params``) and the column variant where it does not
    (the paper's VGG16 at 224 px would need 3.3 G); the choice is recorded in the
    spec (``resolved_args``) and said in ``note``.

    ``gate_init="zero"`` starts the mask's convolution at zero weights and bias
    (the paper is silent on its initialisation; ``"default"`` is PyTorch's): the
    mask starts at 0.5 everywhere, so with ``features="input"`` the network
    starts as MultiRow Stretching's (rows band-pooled, halved) and learns the gate
    from there - as zero-initialised gates and residual branches do (ReZero,
    ControlNet's zero convolutions). A random full gate, fan-in ``w*c*k``, starts
    by mixing every column's features into every mask value.
"""

from __future__ import annotations

import torch
from torch import nn

from ocrkit.errors import UsageError


# The paper's full row attention has 2 * (w*c)^2 * k weights: 6.4 M at w=14, c=128,
# k=1, but about 3.3 G with VGG16 at 224 px. Above this it is refused, not allocated.
MAX_FULL_PARAMS = 50_000_000


def text_row_of(feature_row: int, feature_rows: int, rows: int) -> int:
    """Text row that feature row ``feature_row`` (of ``feature_rows``) belongs to."""
    return min(rows - 1, int((feature_row + 0.5) * rows / feature_rows))


def band_means(height: int, rows: int) -> torch.Tensor:
    """``[rows, height]`` averaging weights of adaptive average pooling: row ``j``
    averages feature rows ``floor(j*h/H) .. ceil((j+1)*h/H) - 1``."""
    weights = torch.zeros(rows, height)
    for j in range(rows):
        start, end = (j * height) // rows, -((-(j + 1) * height) // rows)
        weights[j, start:end] = 1.0 / (end - start)
    return weights


def pool_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``[B, c, h, w] -> [B, c, rows, w]``: adaptive average pooling of the height
    within each text row's band, as a matrix product (exports to ONNX); the
    identity when ``h == rows``."""
    if x.shape[2] == rows:
        return x
    return torch.einsum("rh,bchw->bcrw", band_means(int(x.shape[2]), rows).to(x), x)


class MultiRowStretch(nn.Module):
    """``[B, c, h, w] -> [B, h*w, c]``: feature rows concatenated in reading order."""

    geometry = True  # wants feature_height / feature_width from a dry run

    def __init__(self, *, in_channels: int, rows: int = 1, feature_height: int | None = None,
                 feature_width: int | None = None, pool: str = "rows") -> None:
        super().__init__()
        if rows < 1:
            raise UsageError(f"multirow-stretch: rows must be at least 1, not {rows}")
        if pool not in ("rows", "none"):
            raise UsageError(f"multirow-stretch: pool must be 'rows' or 'none', not {pool!r}")
        self.out_channels = in_channels
        self.rows, self.pool = rows, pool
        self.feature_height = feature_height
        self.feature_width = feature_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "rows":
            x = pool_rows(x, self.rows)
        b, c, h, w = x.shape
        return x.permute(0, 2, 3, 1).reshape(b, h * w, c)

    def row_spans(self, frames: int) -> list[tuple[int, int]]:
        """``[start, end)`` frame range of each text row in a stretched sequence."""
        h = self.rows if self.pool == "rows" else (self.feature_height or 1)
        if frames % h:
            raise ValueError(f"{frames} frames are not {h} feature rows of equal width")
        w = frames // h
        spans = []
        for j in range(self.rows):
            mine = [r for r in range(h) if text_row_of(r, h, self.rows) == j]
            spans.append((mine[0] * w, (mine[-1] + 1) * w) if mine else (0, 0))
        return spans


class RowAttention(nn.Module):
    """ECA-style row attention: ``[B, c, h, w] -> [B, H, w, c]`` (exactly H rows)."""

    geometry = True

    def __init__(self, *, in_channels: int, rows: int, feature_height: int,
                 feature_width: int, variant: str = "auto", features: str = "conv",
                 gate_scale: float | str = 1.0, gate_init: str = "default",
                 max_params: int = MAX_FULL_PARAMS) -> None:
        super().__init__()
        self.note = None
        if gate_init not in ("default", "zero"):
            raise UsageError(f"row-attention: gate_init must be 'default' or 'zero', not "
                             f"{gate_init!r}")
        if variant not in ("auto", "full", "column"):
            raise UsageError(f"row-attention: variant must be 'auto', 'full' or 'column', not "
                             f"{variant!r}")
        if features not in ("input", "conv"):
            raise UsageError(f"row-attention: features must be 'input' or 'conv', not "
                             f"{features!r}")
        convs = 2 if features == "conv" else 1
        if variant == "auto":
            variant = "full"
            if feature_height >= rows >= 1:
                d, k = feature_width * in_channels, feature_height - rows + 1
                need = convs * (d * d * k + d)
                if need > max_params:
                    variant = "column"
                    self.note = (f"row-attention: variant=column (the paper's variant=full "
                                 f"would need {need / 1e6:,.0f} M parameters at this input, "
                                 f"over the {max_params / 1e6:,.0f} M limit; --neck-arg "
                                 "variant=full with a smaller input or backbone to get it)")
        self.resolved_args = {"variant": variant}  # recorded in the spec
        if variant == "full" and feature_height >= rows >= 1:
            d, k = feature_width * in_channels, feature_height - rows + 1
            need = convs * (d * d * k + d)
            if need > max_params:
                light = convs * (in_channels * in_channels * k + in_channels)
                raise UsageError(
                    f"row-attention variant=full needs {('a', 'two')[convs - 1]} "
                    f"Conv1d({d}, {d}, {k}) over "
                    f"{feature_width} columns x {in_channels} channels: {need / 1e6:,.0f} M "
                    f"parameters (limit {max_params / 1e6:,.0f} M); use --neck-arg "
                    f"variant=column ({light / 1e6:.2f} M, any width) or a smaller input")
        if rows < 1 or feature_height < rows:
            raise UsageError(
                f"row-attention: the feature map has {feature_height} rows, fewer than the "
                f"{rows} text rows; use a larger --height or a backbone with less vertical stride")
        self.out_channels = in_channels
        self.rows, self.variant = rows, variant
        self.feature_height, self.feature_width = feature_height, feature_width
        k = feature_height - rows + 1
        if variant == "full":
            d = feature_width * in_channels
            self.features = nn.Conv1d(d, d, k) if features == "conv" else None
            self.attention = nn.Conv1d(d, d, k)
        else:
            self.features = (nn.Conv2d(in_channels, in_channels, (k, 1)) if features == "conv"
                             else None)
            self.attention = nn.Conv2d(in_channels, in_channels, (k, 1))
        given = gate_scale
        if gate_scale == "auto":
            gate_scale = self.attention.weight[0].numel() ** -0.5  # 1 / sqrt(fan-in)
        try:
            gate_scale = float(gate_scale)
        except (TypeError, ValueError):
            gate_scale = 0.0
        if not 0 < gate_scale <= 1:
            raise UsageError(f"row-attention: gate_scale must be 'auto' or a number in (0, 1], "
                             f"not {given!r}")
        self.gate_scale = gate_scale
        if gate_init == "zero":
            nn.init.zeros_(self.attention.weight)
            nn.init.zeros_(self.attention.bias)
        elif gate_scale != 1.0:  # the same initial mask; smaller steps of its pre-activation
            with torch.no_grad():
                self.attention.weight.div_(gate_scale)
                self.attention.bias.div_(gate_scale)

    def mask_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ReLU features, sigmoid mask), both ``[B, H, w, c]``."""
        b, c, h, w = x.shape
        if self.features is None:  # Eq. 6 as printed: the input's rows (pooled to H)
            feats = torch.relu(pool_rows(x, self.rows)).permute(0, 2, 3, 1)  # [B, H, w, c]
        if self.variant == "full":
            if (h, w) != (self.feature_height, self.feature_width):
                raise UsageError(
                    f"row-attention (full) was built for a {self.feature_height}x"
                    f"{self.feature_width} feature map, got {h}x{w}: feed images of the "
                    "training input size")
            seq = x.permute(0, 3, 1, 2).reshape(b, w * c, h)  # channels = (w, c), length = h

            def rows(t):  # [B, w*c, H] -> [B, H, w, c]
                return t.reshape(b, w, c, self.rows).permute(0, 3, 1, 2)
            mask = rows(torch.sigmoid(self.attention(seq) * self.gate_scale))
            if self.features is not None:
                feats = rows(torch.relu(self.features(seq)))
        else:
            mask = torch.sigmoid(self.attention(x) * self.gate_scale).permute(0, 2, 3, 1)
            if self.features is not None:
                feats = torch.relu(self.features(x)).permute(0, 2, 3, 1)
        return feats, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, mask = self.mask_and_features(x)
        return feats * mask


def multirow_stretch(*, in_channels: int, rows: int = 1, feature_height: int | None = None,
                     feature_width: int | None = None, pool: str = "rows") -> MultiRowStretch:
    return MultiRowStretch(in_channels=in_channels, rows=rows, feature_height=feature_height,
                           feature_width=feature_width, pool=pool)


def row_attention(*, in_channels: int, rows: int, feature_height: int, feature_width: int,
                  variant: str = "auto", features: str = "conv", gate_scale: float | str = 1.0,
                  gate_init: str = "default", max_params: int = MAX_FULL_PARAMS
                  ) -> RowAttention:
    return RowAttention(in_channels=in_channels, rows=rows, feature_height=feature_height,
                        feature_width=feature_width, variant=variant, features=features,
                        gate_scale=gate_scale, gate_init=gate_init, max_params=max_params)


multirow_stretch.geometry = True
row_attention.geometry = True
