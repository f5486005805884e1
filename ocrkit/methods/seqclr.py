"""SeqCLR: sequence-to-sequence contrastive pre-training of a recognizer's encoder on
unlabelled text images (Aberdam et al., CVPR 2021, §4).

Per batch of N images: two views of each (:mod:`ocrkit.data.views`, Appendix B's
sequence-preserving augmentations), the base encoder up to a representation
``R`` ``[T, F]`` per view (``visual`` V after the neck, ``contextual`` H after the
sequence stage, or ``both`` [H; V]), an optional projection head (``mlp`` per
frame, ``bilstm`` over the frames), the instance mapping (``all``: the mean of the
frames, ``window``: adaptive average pooling to T' windows, ``frame``: each frame),
and NT-Xent (Eq. 1) over the instances of both views.

Choices where the paper is silent or loose, and why:

* **Padding.** Images keep their aspect ratio (``--resize keep-ratio``, what
  ``ocrkit train`` feeds a recognizer, so the encoder is pre-trained on what it
  will read) and a batch is right-padded to its widest image. A padded frame would
  be a near-constant instance that makes negatives trivially easy, so **every
  frame that sees only padding is excluded from every instance**: the mapping reads
  each image's first ``ceil(T w_i / W)`` frames (:func:`ocrkit.data.batch.frame_mask`)
  and padded frames are zeroed before anything is summed (so not even a NaN there
  can reach an instance); the BiLSTM projection head reads packed sequences of the
  valid frames only. The encoder's own BiLSTM (``contextual``) still reads the
  padding, as it does in supervised training. ``--resize stretch`` (the paper's
  fixed 32 x 100) leaves no padding at all.
* **Window mapping** is ``adaptive_avg_pool1d`` over each image's valid frames
  (window ``j`` of ``L`` frames averages frames ``floor(jL/T')`` to
  ``ceil((j+1)L/T') - 1``), computed as one ``[T', T]`` weight matrix per image. A
  map with a height (``[B, C, h, w]``) is averaged over the height **first**, then
  windowed along the width (a row-major flatten would mix rows into windows).
* **NT-Xent** uses cosine similarity and temperature tau (default 0.1: the paper
  gives none; the authors' SemiMTR code uses 0.1). Each anchor's denominator runs
  over the 2M - 1 other instances of both views (its positive included, itself
  never: the self-similarity is set to -inf), so an anchor has 2M - 2 negatives.
  Eq. 1 sums over anchors; we take the **mean over the 2M anchors** (both views,
  equally weighted), so the learning rate does not depend on the batch size.
  Similarities and the loss are computed in float32 even under AMP.
* **The encoder f** is the recognizer "up to" the representation (§4): with
  ``visual`` it ends at the neck, so the sequence stage is not run and not saved
  (``encoder_parts`` in the checkpoint); ``train --init-encoder`` then loads (and
  ``--freeze-encoder`` freezes) backbone and neck only, and the sequence stage
  trains with the decoder. (Running an unused BiLSTM would also leave parameters
  without gradients, which DistributedDataParallel refuses.)
* **Projection heads** (sizes not in the paper): ``mlp`` is Linear(F, F) - ReLU -
  Linear(F, D) per frame (SimCLR's head applied per frame), ``bilstm`` one
  bidirectional LSTM layer of D/2 units per direction; D = ``--projection-dim``
  (128, SimCLR's). The default head follows Table 4: ``bilstm`` with the ``all``
  and ``window`` mappings, ``mlp`` with ``frame``. Heads are discarded after
  pre-training: the checkpoint holds the encoder alone.
* **best.pt** is chosen by the validation contrastive loss (``neg_loss`` = -loss,
  as the loop keeps the highest metric): it keeps improving while positive-pair
  top-1 accuracy (also reported) saturates near 1 and would freeze best.pt at an
  early step. Validation views are fixed (seeded by index), so the numbers of two
  validations are comparable.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

from ocrkit.data.batch import frame_mask
from ocrkit.errors import OcrkitError, UsageError
from ocrkit.models.encoder import PARTS, Encoder
from ocrkit.train.method import Loss, Method

REPRESENTATIONS = ("visual", "contextual", "both")
PROJECTIONS = ("none", "mlp", "bilstm")
MAPPINGS = ("all", "window", "frame")


# ----------------------------------------------------------------------------- mapping
def height_pooled(features: torch.Tensor) -> torch.Tensor:
    """Frames ``[B, T, F]`` as they are; a map ``[B, F, h, w]`` averaged over its
    height first, giving ``[B, w, F]`` (one frame per column, left to right)."""
    if features.dim() == 4:
        return features.mean(dim=2).transpose(1, 2)
    return features


def valid_frames(widths: torch.Tensor, batch_width: int, frames: int) -> torch.Tensor:
    """``[B]`` frames of each image that see some of it (not only padding)."""
    return frame_mask(widths, batch_width, frames).sum(dim=1)


def window_weights(lengths: torch.Tensor, frames: int, windows: int) -> torch.Tensor:
    """``[B, windows, frames]`` averaging weights of adaptive average pooling over
    each row's first ``lengths[b]`` frames (zero on the frames after them)."""
    j = torch.arange(windows, device=lengths.device)[None, :]
    n = lengths.to(torch.long)[:, None]
    start = (j * n) // windows
    end = ((j + 1) * n + windows - 1) // windows
    t = torch.arange(frames, device=lengths.device)[None, None, :]
    inside = ((t >= start[..., None]) & (t < end[..., None])).float()
    return inside / inside.sum(dim=-1, keepdim=True).clamp_min(1.0)


def instances(features: torch.Tensor, lengths: torch.Tensor, mapping: str,
              windows: int = 5) -> torch.Tensor:
    """The instance-mapping function m (Fig. 5): ``[M, F]`` instances of ``B`` images
    (in image order, each image's instances left to right), from frames
    ``[B, T, F]`` or a map ``[B, F, h, w]`` (height pooled first) of which only each
    image's first ``lengths[b]`` frames are read."""
    frames = height_pooled(features)
    b, t, _ = frames.shape
    lengths = lengths.to(frames.device)
    mask = torch.arange(t, device=frames.device)[None, :] < lengths[:, None]
    frames = frames.masked_fill(~mask[..., None], 0.0)  # padding can never reach a sum
    if mapping == "all":
        return frames.sum(dim=1) / lengths.clamp_min(1)[:, None].to(frames.dtype)
    if mapping == "window":
        weights = window_weights(lengths, t, windows).to(frames.dtype)
        return torch.bmm(weights, frames).reshape(b * windows, -1)
    if mapping == "frame":
        return frames[mask]
    raise UsageError(f"--mapping {mapping}: one of {', '.join(MAPPINGS)}")


# ----------------------------------------------------------------------------- loss
def nt_xent_logits(za: torch.Tensor, zb: torch.Tensor, temperature: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities / tau of all 2M instances of both views ``[2M, 2M]`` (float32;
    an instance's similarity to itself is -inf: it is never contrasted with itself)
    and each row's positive: instance ``r`` of one view pairs with ``r`` of the other."""
    m = za.shape[0]
    if zb.shape[0] != m:
        raise OcrkitError(f"the two views gave {m} and {zb.shape[0]} instances")
    with torch.autocast(za.device.type, enabled=False):
        z = F.normalize(torch.cat([za, zb]).float(), dim=1)
        logits = z @ z.t() / temperature
    self_pairs = torch.eye(2 * m, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))
    targets = torch.cat([torch.arange(m, 2 * m), torch.arange(0, m)]).to(logits.device)
    return logits, targets


def nt_xent(za: torch.Tensor, zb: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Eq. 1 averaged over its 2M terms: ``l_NCE(z_r^a, z_r^b)`` and
    ``l_NCE(z_r^b, z_r^a)`` for every r."""
    logits, targets = nt_xent_logits(za, zb, temperature)
    return F.cross_entropy(logits, targets)


# ----------------------------------------------------------------------------- network
class FrameMLP(nn.Module):
    """Projection head applied to each frame alone: Linear - ReLU - Linear."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_channels, in_channels), nn.ReLU(inplace=True),
                                 nn.Linear(in_channels, out_channels))

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


class BiLSTMProjection(nn.Module):
    """Projection head over each image's valid frames (packed: padding is never read)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_channels, out_channels // 2, bidirectional=True,
                           batch_first=True)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            frames, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                total_length=frames.shape[1])[0]


class SeqCLRNet(nn.Module):
    """The encoder f, the representation R it gives and the projection head g.

    ``forward(images, widths)``: images ``[B, C, H, W]``, their widths before padding
    ``[B]`` -> (projected frames ``[B, T, F']``, valid frames per image ``[B]``)."""

    def __init__(self, encoder: Encoder, representation: str = "contextual",
                 projection: str = "bilstm", projection_dim: int = 128) -> None:
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise UsageError(f"--representation {representation}: one of "
                             f"{', '.join(REPRESENTATIONS)}")
        if representation != "visual" and encoder.sequence is None:
            raise UsageError(f"--representation {representation} reads the sequence stage's "
                             "output (H); with --sequence none there is none: use "
                             "--representation visual")
        self.encoder, self.representation = encoder, representation
        # what f is (§4: the recognizer "up to this stage"): R = V stops at the neck, so
        # the sequence stage is neither run, trained nor deployed
        self.parts = ("backbone", "neck") if representation == "visual" else PARTS
        if representation == "visual" and encoder.sequence is not None:
            encoder.sequence.requires_grad_(False)  # not part of f: nothing to optimise
        channels = {"visual": encoder.visual_channels, "contextual": encoder.context_channels,
                    "both": encoder.visual_channels + encoder.context_channels}[representation]
        if projection == "mlp":
            self.projection = FrameMLP(channels, projection_dim)
        elif projection == "bilstm":
            if projection_dim < 2 or projection_dim % 2:
                raise UsageError(f"--projection-dim {projection_dim}: the bilstm head needs an "
                                 "even size (D/2 units per direction)")
            self.projection = BiLSTMProjection(channels, projection_dim)
        elif projection == "none":
            self.projection = None
        else:
            raise UsageError(f"--projection {projection}: one of {', '.join(PROJECTIONS)}")

    def forward(self, images: torch.Tensor, widths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        visual, context = self.encoder(images, context=self.representation != "visual")
        rep = {"visual": visual, "contextual": context}.get(self.representation)
        if rep is None:  # both: [H; V], the contextual frames concatenated to the visual
            rep = torch.cat([context, visual], dim=-1)
        lengths = valid_frames(widths, images.shape[-1], rep.shape[1])
        if self.projection is not None:
            rep = self.projection(rep, lengths)
        return rep, lengths


# ----------------------------------------------------------------------------- method
class SeqCLR(Method):
    """NT-Xent over instances of two views (see the module doc); validation reports the
    contrastive loss and positive-pair top-1 accuracy; checkpoints deploy the encoder."""

    metric = "neg_loss"

    def __init__(self, mapping: str = "window", windows: int = 5, temperature: float = 0.1
                 ) -> None:
        if mapping not in MAPPINGS:
            raise UsageError(f"--mapping {mapping}: one of {', '.join(MAPPINGS)}")
        self.mapping, self.windows, self.temperature = mapping, windows, temperature

    def views(self, net, images: torch.Tensor, widths: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(instances of the first views, of the second views): ``images`` holds the N
        first views then the N second views, ``widths`` ``[N]`` their widths."""
        if images.shape[0] != 2 * widths.numel():
            raise OcrkitError(f"a SeqCLR batch holds two views per image: {images.shape[0]} "
                              f"images for {widths.numel()} widths")
        frames, lengths = net(images, widths.repeat(2))
        z = instances(frames, lengths, self.mapping, self.windows)
        return z.chunk(2) if z.shape[0] else (z, z)

    def loss(self, net, batch: dict, device: torch.device) -> Loss:
        images = batch["images"].to(device, non_blocking=True)
        widths = batch["widths"].to(device)
        za, zb = self.views(net, images, widths)
        loss = nt_xent(za, zb, self.temperature)
        return Loss(loss, {"nt_xent": loss.detach()}, widths.numel())

    def deployable(self, core) -> tuple[nn.Module, dict]:
        """The encoder's trained parts alone (keys ``backbone.*`` ...; no projection
        head, no sequence stage that R = V never ran)."""
        trained = nn.ModuleDict({name: getattr(core.encoder, name) for name in core.parts
                                 if getattr(core.encoder, name) is not None})
        return trained, {"encoder_parts": list(core.parts)}

    @torch.no_grad()
    def validate(self, core, loader, device: torch.device, limit: int | None = None) -> dict:
        total = correct = anchors = samples = 0.0
        for batch in loader:
            images, widths = batch["images"], batch["widths"]
            n = widths.numel()
            if n == 0:
                continue
            if limit is not None and samples + n > limit:  # exactly `limit` images
                k = int(limit - samples)
                images, widths, n = torch.cat([images[:k], images[n:n + k]]), widths[:k], k
            za, zb = self.views(core, images.to(device), widths.to(device))
            logits, targets = nt_xent_logits(za, zb, self.temperature)
            total += float(F.cross_entropy(logits, targets, reduction="sum"))
            correct += float((logits.argmax(dim=1) == targets).sum())
            anchors += targets.numel()
            samples += n
            if limit is not None and samples >= limit:
                break
        loss = total / max(anchors, 1)
        return {"samples": int(samples), "instances": int(anchors // 2), "loss": loss,
                "top1": correct / max(anchors, 1), "neg_loss": -loss}


def default_projection(mapping: str) -> str:
    """Table 4's best head per mapping: BiLSTM for all/window, per-frame MLP for frame."""
    return "mlp" if mapping == "frame" else "bilstm"


# ----------------------------------------------------------------------------- run
def run_pretraining(opts: dict) -> dict | None:
    """`ocrkit pretrain`: unlabelled data, the encoder its options describe, SeqCLR,
    the shared loop. best.pt/last.pt are encoder checkpoints."""
    from ocrkit.data.batch import InputSpec
    from ocrkit.data.seq_augment import SeqAugment
    from ocrkit.data.unlabelled import open_unlabelled
    from ocrkit.data.views import TwoViews, ViewCollate
    from ocrkit.models.encoder import check_encoder
    from ocrkit.models.recognizer import make_spec
    from ocrkit.outputs import main_process
    from ocrkit.train.run import RunSetup

    data, val = list(opts["data"]), list(opts.get("val") or ())
    setup = RunSetup(opts, "pretrain", data + val)
    say = setup.say
    mapping, windows = opts["mapping"], opts["windows"]
    projection = opts.get("projection") or default_projection(mapping)
    if opts["height"] < 8 or opts["width"] < 8:
        raise UsageError("--height and --width must be at least 8")
    with setup.claim():
        input_spec = InputSpec(height=opts["height"], width=opts["width"],
                               policy=opts["resize"], channels=opts["channels"])
        train_data = open_unlabelled(data, input_spec.mode)
        val_data = open_unlabelled(val, input_spec.mode) if val else None
        for name, part in (("training", train_data), ("validation", val_data)):
            for line in (part.issues.warnings() if part is not None else []):
                say(f"warning: {name} data: {line}")
        spec = make_spec(opts["backbone"], opts["neck"], opts["sequence"],
                         backbone_args=opts["backbone_args"], neck_args=opts["neck_args"],
                         sequence_args=opts["sequence_args"], in_channels=opts["channels"])
        torch.manual_seed(opts["seed"])  # same seed, same initial weights
        encoder = Encoder(spec, input_size=(input_spec.height, input_spec.width))
        frames = check_encoder(encoder, input_spec.height, input_spec.width, input_spec.channels)
        net = SeqCLRNet(encoder, opts["representation"], projection, opts["projection_dim"])
        if mapping == "window" and frames < windows:
            say(f"warning: --windows {windows} on {frames} frames per {input_spec.width}-px "
                "image: windows repeat frames (fewer windows, or a wider --width)")
        seqclr = {"representation": opts["representation"], "projection": projection,
                  "projection_dim": opts["projection_dim"], "mapping": mapping,
                  "windows": windows, "temperature": opts["temperature"],
                  "augment_ops": list(opts["augment_ops"])}
        if opts.get("colour_distortion"):  # absent when off, as in runs made before it
            seqclr["colour_distortion"] = opts["colour_distortion"]
        extra = {"kind": "encoder", "spec": {**encoder.spec, "seqclr": seqclr},
                 "input": {**input_spec.__dict__},
                 "train_data": [os.path.abspath(p) for p in data]}
        augment = SeqAugment(ops=tuple(opts["augment_ops"]),
                             colour=opts.get("colour_distortion", 0.0))
        params = sum(p.numel() for name in net.parts if getattr(encoder, name) is not None
                     for p in getattr(encoder, name).parameters())
        say(f"encoder {spec['backbone']['name']}+{spec['neck']['name']}"
            f"+{(spec['sequence'] or {}).get('name', 'none')}: {params / 1e6:.2f} M parameters "
            f"({frames} frames at {input_spec.height}x{input_spec.width}); SeqCLR "
            f"{opts['representation']} / {projection} / {mapping}"
            f"{f' ({windows})' if mapping == 'window' else ''}, tau {opts['temperature']}; "
            f"{len(train_data)} unlabelled training images")
        summary = setup.trainer(
            net, SeqCLR(mapping, windows, opts["temperature"]),
            TwoViews(train_data, input_spec, augment, opts["seed"]),
            TwoViews(val_data, input_spec, augment, opts["seed"]) if val_data else None,
            ViewCollate(input_spec), extra).fit()
    if not main_process():
        return None
    return {"out": opts["out"], "kind": "encoder", "parameters": params, **seqclr, **summary}
