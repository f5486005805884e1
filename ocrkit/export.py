"""ONNX export that a third party can run without ocrkit, and a check against onnxruntime.

Profile ``ocrkit`` (default): ``image`` ``[batch, 1, H, width]`` -> ``logits``
``[batch, frames, classes]`` (single rows: any width; multi-row models: their fixed
input size; row attention gives ``[batch, rows, frames, classes]``). Profile
``rapidocr``: what RapidOCR's ``TextRecognizer`` (and PaddleOCR's predict_rec)
feeds and reads - ``x`` ``[batch, 3, 48, width]``, BGR, ``(pixel / 255 - 0.5) /
0.5``, padded with zeros - and softmax probabilities over ``blank, characters...,
" "`` (the space class they append is never predicted). The profile's graph turns
the three channels into the model's grey level and its 48-px rows into the
model's height.

An autoregressive head (``lightformer``, ``attention``) is exported as its greedy
decoding, a fixed loop of ``max_length + 1`` steps whose argmax feeds the next step:
``logits`` ``[batch, steps, classes]``, the text the classes before the first class 0.
Beam search is not in the graph (it is ``ocrkit infer --beam-width``'s).

Every file carries its contract as plain metadata (``metadata_props``), read with
``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``:

============  ==============================================================
character     the classes after the blank, one per line (RapidOCR reads it)
blank_index   ``0``
output        ``logits`` (ocrkit profile: apply softmax for probabilities) or
              ``probabilities`` (rapidocr profile)
input         layout, channels, height, width rule
grey          how colour becomes the one grey channel
resize        how a line image reaches the input height
scale         pixel value -> input value
padding       what fills the right of narrower lines in a batch
decode        CTC greedy decoding in words
rows          text rows per image and how a multi-row output is split
============  ==============================================================

plus ``ocrkit_charset`` (JSON list), ``ocrkit_input``, ``ocrkit_spec`` and
``ocrkit_version`` for ocrkit itself. A denoiser the recognizer carries is part of
the graph.

Uses torch's TorchScript-based exporter (``dynamo=False``): with torch 2.13 the
dynamo exporter fails to decompose the LSTM graph here.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ocrkit import __version__
from ocrkit.checkpoint import load_checkpoint
from ocrkit.data.batch import InputSpec
from ocrkit.errors import OcrkitError, UsageError
from ocrkit.models.recognizer import build_model

PROFILES = ("ocrkit", "rapidocr")
RAPIDOCR_HEIGHT = 48  # rec_img_shape [3, 48, 320] of RapidOCR / PaddleOCR PP-OCR


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UsageError(f"ONNX export needs the '{module}' package: "
                         "pip install 'ocrkit[export]'") from None


class RapidOCRRecognizer(nn.Module):
    """The RapidOCR/PaddleOCR contract around an ocrkit recognizer: BGR ``[N, 3, 48, W]``
    in [-1, 1] -> probabilities ``[N, T, K + 1]`` (blank, characters, space)."""

    def __init__(self, model: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.model = model
        self.height = spec.height
        # Pillow's grey level (ITU-R 601-2) on B, G, R input channels.
        self.register_buffer("bgr", torch.tensor([0.114, 0.587, 0.299]).view(1, 3, 1, 1))
        # The model's scale from RapidOCR's (p / 255 - 0.5) / 0.5 = 2p/255 - 1.
        self.a, self.b = 0.5 / spec.std, (0.5 - spec.mean) / spec.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = (x * self.bgr).sum(1, keepdim=True)
        if self.height != RAPIDOCR_HEIGHT:
            grey = F.interpolate(grey, scale_factor=self.height / RAPIDOCR_HEIGHT,
                                 mode="bilinear", align_corners=False)
        probs = F.softmax(self.model(grey * self.a + self.b), dim=-1)
        space = torch.zeros_like(probs[..., :1])  # RapidOCR appends " " as the last class
        return torch.cat([probs, space], dim=-1)


def contract(charset, spec: InputSpec, profile: str = "ocrkit", ckpt_spec: dict | None = None,
             steps: int | None = None) -> dict[str, str]:
    """The plain-text metadata that tells a third party how to use the file.
    ``steps``: an autoregressive head's decoding steps (its ``max_length + 1``: the
    exported graph is that fixed-length greedy loop); None for CTC."""
    rows = spec.rows
    neck = ((ckpt_spec or {}).get("neck") or {}).get("name", "")
    if profile == "rapidocr":
        return {
            "character": "\n".join(charset.chars), "blank_index": "0",
            "output": "probabilities [batch, frames, classes]: softmax over blank (0), the "
                      "'character' lines (1..N) and a space class (N+1, never predicted)",
            "input": f"x [batch, 3, {RAPIDOCR_HEIGHT}, width], BGR, any width",
            "grey": "the graph takes 0.299 R + 0.587 G + 0.114 B",
            "resize": f"keep the aspect ratio to height {RAPIDOCR_HEIGHT} (the graph rescales "
                      f"to {spec.height})",
            "scale": "(pixel / 255 - 0.5) / 0.5",
            "padding": "zeros on the right to the batch's widest line (RapidOCR's)",
            "decode": "CTC greedy: argmax per frame, merge repeats, drop blank and space",
            "rows": "1"}
    if spec.policy == "keep-ratio" and rows == 1:
        layout = f"image [batch, {spec.channels}, {spec.height}, width], any width"
        resize = (f"keep the aspect ratio to height {spec.height} (bilinear): width = "
                  f"round(w * {spec.height} / h)")
        padding = ("on the right to the batch's widest line, each line with the median of its "
                   "own border pixels (first and last row and column, after resizing)")
    else:
        layout = f"image [batch, {spec.channels}, {spec.height}, {spec.width}], fixed size"
        resize = (f"stretch to {spec.width}x{spec.height} (bilinear)" if spec.policy == "stretch"
                  else f"fit inside {spec.width}x{spec.height} keeping the aspect ratio")
        padding = ("none" if spec.policy == "stretch" else "right and bottom, with the median "
                   "of the image's border pixels")
    if rows == 1:
        row_rule = "1"
    elif neck == "row-attention":
        row_rule = f"{rows}: logits are [batch, {rows}, frames, classes], one sequence per row"
    else:
        row_rule = (f"{rows}: one sequence of frames in reading order; row j owns frames "
                    f"[j*F/{rows}, (j+1)*F/{rows}) of the F frames, each decoded on its own")
    out = {
        "character": "\n".join(charset.chars), "blank_index": "0",
        "output": "logits [batch, frames, classes] before softmax; class 0 is the CTC blank, "
                  "class k >= 1 is line k of 'character'",
        "input": layout,
        "grey": "Pillow's convert('L'): 0.299 R + 0.587 G + 0.114 B, transparent pixels "
                "composited over white first",
        "resize": resize,
        "scale": f"(pixel / 255 - {spec.mean}) / {spec.std}",
        "padding": padding,
        "decode": "CTC greedy: argmax per frame, merge repeats, drop class 0",
        "rows": row_rule}
    if steps:
        out["output"] = (f"logits [batch, {steps}, classes] before softmax, one step of greedy "
                         "decoding each (the graph feeds each step's argmax to the next); "
                         "class 0 ends the text, class k >= 1 is line k of 'character'")
        out["decode"] = "argmax per step; the text is the classes before the first class 0"
    if spec.channels == 3:
        out["grey"] = "none: RGB input, channels in R, G, B order"
    return out


def export_onnx(checkpoint: str, out: str, *, opset: int = 17, profile: str = "ocrkit") -> dict:
    """Write the ONNX file ``out`` (callers give a temporary name and rename it once
    verified); returns the metadata written."""
    onnx = _need("onnx")
    if profile not in PROFILES:
        raise UsageError(f"--profile {profile}: one of {', '.join(PROFILES)}")
    ckpt = load_checkpoint(checkpoint)
    model, charset = build_model(ckpt)
    spec = InputSpec(**ckpt["input"])
    if profile == "rapidocr":
        if spec.rows > 1 or spec.policy != "keep-ratio" or spec.channels != 1 \
                or model.autoregressive:
            raise UsageError("--profile rapidocr exports single-row, keep-ratio, grey CTC "
                             "recognizers (RapidOCR reads one line at a time, CTC-decoded)")
        model = RapidOCRRecognizer(model, spec).eval()
        dummy = torch.zeros(1, 3, RAPIDOCR_HEIGHT, 320)
        names, axes = (["x"], ["softmax"]), {"x": {0: "batch", 3: "width"},
                                             "softmax": {0: "batch", 1: "frames"}}
    else:
        dummy = torch.zeros(1, spec.channels, spec.height, spec.width)
        names = (["image"], ["logits"])
        if spec.rows > 1:  # multi-row necks are built for one feature-map size: fixed width
            axes = {"image": {0: "batch"}, "logits": {0: "batch"}}
        else:
            axes = {"image": {0: "batch", 3: "width"}, "logits": {0: "batch", 1: "frames"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (dummy,), out, input_names=names[0], output_names=names[1],
                              opset_version=opset, dynamo=False, dynamic_axes=axes)
        except Exception as exc:  # noqa: BLE001 - exporter errors are many and deep
            raise OcrkitError(f"ONNX export failed: {exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    proto = onnx.load(out)
    steps = model.head.max_length + 1 if getattr(model, "autoregressive", False) else None
    meta = {**contract(charset, spec, profile, ckpt["spec"], steps),
            "ocrkit_profile": profile,
            "ocrkit_charset": json.dumps(charset.chars, ensure_ascii=False),
            "ocrkit_input": json.dumps(ckpt["input"]),
            "ocrkit_spec": json.dumps(ckpt["spec"]),
            "ocrkit_version": __version__}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, out)
    return meta


def rapidocr_input(images) -> np.ndarray:
    """RapidOCR's preprocessing of grey PIL lines (its resize_norm_img, with Pillow):
    height 48, aspect ratio kept, width of the widest (at least 320), zero padding."""
    from PIL import Image

    ratio = max([320 / RAPIDOCR_HEIGHT] + [im.width / im.height for im in images])
    width = int(RAPIDOCR_HEIGHT * ratio)
    batch = np.zeros((len(images), 3, RAPIDOCR_HEIGHT, width), dtype=np.float32)
    for i, im in enumerate(images):
        w = min(width, int(np.ceil(RAPIDOCR_HEIGHT * im.width / im.height)))
        arr = np.asarray(im.convert("RGB").resize((w, RAPIDOCR_HEIGHT), Image.Resampling.BILINEAR),
                         dtype=np.float32)[..., ::-1]  # BGR, as cv2 reads it
        batch[i, :, :, :w] = (arr.transpose(2, 0, 1) / 255 - 0.5) / 0.5
    return batch


def verify_onnx(checkpoint: str, onnx_path: str, images, device: str = "cpu") -> dict:
    """Run torch (on ``device``) and onnxruntime (on the CPU) on the same images; compare
    outputs and decoded text."""
    ort = _need("onnxruntime")
    ckpt = load_checkpoint(checkpoint)
    model, charset = build_model(ckpt)
    spec = InputSpec(**ckpt["input"])
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    profile = session.get_modelmeta().custom_metadata_map.get("ocrkit_profile", "ocrkit")
    if profile == "rapidocr":
        model = RapidOCRRecognizer(model, spec).eval()
        x = torch.from_numpy(rapidocr_input(images))
    else:
        resize = spec.transform("any" if spec.any_width else "fixed")
        x = spec.to_tensor([resize(im)[0] for im in images])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    core = model.model if profile == "rapidocr" else model
    if getattr(core.head, "autoregressive", False):
        core.head.stop_early = False  # the exported graph runs every step: compare them all
    with torch.no_grad():
        ref = model.to(device)(x.to(device)).float().cpu()
    model.cpu()

    def texts(out):
        if profile == "rapidocr":  # probabilities with a never-used space column
            out = out[..., :-1].clamp_min(1e-12).log()
        core = model.model if profile == "rapidocr" else model
        return ["\n".join(charset.decode(r) for r in rows) for rows, _ in core.decode(out)]

    texts_ref, texts_onnx = texts(ref), texts(torch.from_numpy(got))
    same = sum(a == b for a, b in zip(texts_ref, texts_onnx))
    return {"images": len(images), "max_abs_diff": float(np.abs(got - ref.numpy()).max()),
            "same_text": same, "texts_match": same == len(images), "profile": profile}
