"""Batches for training and evaluation: resize/pad, normalise, encode labels.

The collate function runs in DataLoader workers, so image decoding and
resizing stay off the training process's critical path. Broken samples are
dropped from the batch and counted (``batch["broken"]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ocrkit.charset import Charset
from ocrkit.data.transforms import ResizePad, input_mismatch, pad_batch
from ocrkit.models.heads.ctc import frames_needed


@dataclass(frozen=True)
class InputSpec:
    """How images become tensors; stored in checkpoints."""

    height: int = 32
    width: int = 256
    policy: str = "keep-ratio"
    channels: int = 1
    mean: float = 0.5
    std: float = 0.5
    rows: int = 1

    @property
    def any_width(self) -> bool:
        """Single rows resized keeping their aspect ratio: the model reads any width."""
        return self.policy == "keep-ratio" and self.rows == 1

    def max_width(self, mode: str) -> int | None:
        """Widest line a batch may hold: ``fixed`` pads or squashes every line to the
        training width; ``batch`` pads to the batch's widest, at most the training
        width (training); ``any`` keeps each line's own width up to 64 heights
        (inference: a 20-character line is read at its width, not squashed)."""
        if mode == "fixed" or not self.any_width:
            return None
        return self.width if mode == "batch" else max(self.width, 64 * self.height)

    @property
    def mode(self) -> str:
        """The Pillow mode images are decoded in: ``L`` (grey) or ``RGB``."""
        return "L" if self.channels == 1 else "RGB"

    def transform(self, width: str = "fixed") -> ResizePad:
        return ResizePad(self.height, self.width, self.policy, self.max_width(width),
                         self.channels)

    def to_tensor(self, arrays: list[np.ndarray]) -> torch.Tensor:
        if len({a.shape for a in arrays}) > 1:
            arrays = pad_batch(arrays)
        x = torch.from_numpy(np.stack(arrays))
        return (x - self.mean) / self.std


class Collate:
    """Samples -> {"images", "widths", "targets", "target_lengths", "labels", "keys", "domains",
    "broken", "broken_items"}.

    ``widths`` ``[B]`` (long) is each image's own width in pixels after resizing,
    before any padding on the right (to the training width, or to the batch's
    widest image): the columns of ``images`` from ``widths[i]`` on are padding.
    ``teacher_widths`` is the same for ``teacher_images``.

    ``targets`` are the label's rows joined in reading order (concatenated over
    the batch). For a multi-row input spec (``rows`` = H > 1) there is also
    ``row_target_lengths`` ``[B * H]``: the same targets cut per row, a sample
    with fewer rows padded with empty ones. A sample with more than H rows
    cannot be learnt by a model with H rows and is dropped like a broken one.
    ``broken_items`` lists ``(key, reason)`` of every sample dropped.

    Without a charset (evaluation) labels are not encoded: characters a model
    cannot output simply count as its errors. With one, characters outside it
    follow ``unknown`` (``skip``, ``replace`` with ``replacement``, ``error``);
    the training command checks every label once beforehand and reports how
    many the policy alters, so nothing here changes a label silently.
    """

    def __init__(self, spec: InputSpec, charset: Charset | None, unknown: str = "skip",
                 replacement: str | None = None, check_shapes: bool = False,
                 teacher_spec: InputSpec | None = None, width: str = "fixed") -> None:
        self.spec = spec
        self.resize = spec.transform(width)
        # A teacher reading another input size (distill --kd-mode ctc-mean-kl) gets
        # its own tensor of the same images: "teacher_images".
        self.teacher_spec = teacher_spec if teacher_spec != spec else None
        self.teacher_resize = teacher_spec.transform(width) if self.teacher_spec else None
        self.charset = charset
        self.unknown = unknown
        self.replacement = replacement
        self.check_shapes = check_shapes  # evaluation: "mismatched" lists odd inputs

    def __call__(self, samples) -> dict:
        arrays, labels, keys, targets, lengths, row_lengths = [], [], [], [], [], []
        domains: list[str | None] = []
        widths, teacher_widths = [], []
        needs, row_needs = [], []
        teacher_arrays = []
        dropped: list[tuple[str, str]] = []
        mismatched: list[tuple[str, str]] = []
        enc = (lambda text: self.charset.encode(text, self.unknown, self.replacement))
        for s in samples:
            if s.image is None:
                dropped.append((s.key, s.error or "unreadable"))
                continue
            if self.charset is not None:
                if self.spec.rows > 1:
                    if len(s.rows) > self.spec.rows:
                        dropped.append((s.key, f"{len(s.rows)} rows; the model reads "
                                                f"{self.spec.rows}"))
                        continue
                    per_row = [enc(r) for r in s.rows]
                    per_row += [[]] * (self.spec.rows - len(per_row))
                    ids = [i for r in per_row for i in r]
                else:
                    ids = enc("".join(s.rows))
                if not ids:  # nothing learnable left (e.g. all characters unknown)
                    dropped.append((s.key, "no known character in the label"))
                    continue
                targets.extend(ids)
                lengths.append(len(ids))
                needs.append(frames_needed(ids))
                if self.spec.rows > 1:
                    row_lengths.extend(len(r) for r in per_row)
                    row_needs.extend(frames_needed(r) for r in per_row)
            if self.check_shapes:
                why = input_mismatch(s.image, self.spec.height, self.spec.width, self.spec.rows,
                                     self.resize.max_width)
                if why:
                    mismatched.append((s.key, why))
            arr, width = self.resize(s.image)
            arrays.append(arr)
            widths.append(width)
            if self.teacher_resize is not None:
                teacher_arr, teacher_width = self.teacher_resize(s.image)
                teacher_arrays.append(teacher_arr)
                teacher_widths.append(teacher_width)
            labels.append(s.label)
            keys.append(s.key)
            domains.append(getattr(s, "domain", None))
        out = {"labels": labels, "keys": keys, "domains": domains, "broken": len(dropped), "broken_items": dropped,
               "mismatched": mismatched}
        out["images"] = (self.spec.to_tensor(arrays) if arrays
                         else torch.empty(0, 1, self.spec.height, self.spec.width))
        out["widths"] = torch.tensor(widths, dtype=torch.long)  # before padding
        if self.teacher_spec is not None:
            t = self.teacher_spec
            out["teacher_images"] = (t.to_tensor(teacher_arrays) if teacher_arrays
                                     else torch.empty(0, 1, t.height, t.width))
            out["teacher_widths"] = torch.tensor(teacher_widths, dtype=torch.long)
        if self.charset is not None:
            out["targets"] = torch.tensor(targets, dtype=torch.long)
            out["target_lengths"] = torch.tensor(lengths, dtype=torch.long)
            out["target_needs"] = torch.tensor(needs, dtype=torch.long)  # CTC frames
            if self.spec.rows > 1:
                out["row_target_lengths"] = torch.tensor(row_lengths, dtype=torch.long)
                out["row_target_needs"] = torch.tensor(row_needs, dtype=torch.long)
        return out


def frame_mask(widths: torch.Tensor, batch_width: int, frames: int) -> torch.Tensor:
    """Which frames of a right-padded batch see the image: ``[B, T]`` bool.

    ``widths`` ``[B]`` are the images' own widths in pixels before padding,
    ``batch_width`` the padded width W, ``frames`` the logits' T. The backbone's
    horizontal stride is W / T pixels per frame, so image ``i`` covers the first
    ``ceil(T * w_i / W)`` frames (a frame that sees any column of the image counts;
    at least one frame per image). The rule holds for single-row CTC models, whose
    frames are the columns of a strided feature map; multi-row inputs have a fixed
    size and need no mask."""
    widths = torch.as_tensor(widths, dtype=torch.long).reshape(-1)
    valid = (widths * frames + batch_width - 1) // batch_width  # ceil(T * w / W)
    valid = valid.clamp(1, frames)
    return torch.arange(frames, device=valid.device)[None, :] < valid[:, None]
