"""ONNX export with a dynamic width, metadata and a check against onnxruntime.

The graph maps ``image`` ``[batch, 1, H, width]`` (normalised as the input spec
says) to ``logits`` ``[batch, frames, classes]``; blank is class 0. Multi-row
models have a fixed input size; row attention gives ``[batch, rows, frames,
classes]``, MultiRow Stretching one sequence whose rows are ``rows`` equal
spans of frames (``ocrkit_spec`` names the neck). A denoiser the recognizer
carries is part of the graph. Metadata
(``metadata_props``) carries ``ocrkit_charset`` (JSON list), ``ocrkit_input``
(JSON input spec), ``ocrkit_spec`` and ``ocrkit_version``, so a deployment needs
nothing but the .onnx file.

Uses torch's TorchScript-based exporter (``dynamo=False``): with torch 2.13 the
dynamo exporter fails to decompose the LSTM graph here.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch

from ocrkit import __version__
from ocrkit.checkpoint import build_model, load_checkpoint
from ocrkit.errors import OcrkitError, UsageError
from ocrkit.train.data import InputSpec


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UsageError(f"ONNX export needs the '{module}' package: "
                         "pip install 'ocrkit[export]'") from None


def export_onnx(checkpoint: str, out: str, *, opset: int = 17) -> dict:
    """Write the ONNX file ``out`` (callers give a temporary name and rename it once
    verified); returns the metadata written."""
    onnx = _need("onnx")
    ckpt = load_checkpoint(checkpoint)
    model, charset = build_model(ckpt)
    spec = InputSpec(**ckpt["input"])
    dummy = torch.zeros(1, spec.channels, spec.height, spec.width)
    if spec.rows > 1:  # multi-row necks are built for one feature-map size: fixed width
        axes = {"image": {0: "batch"}, "logits": {0: "batch"}}
    else:
        axes = {"image": {0: "batch", 3: "width"}, "logits": {0: "batch", 1: "frames"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (dummy,), out, input_names=["image"],
                              output_names=["logits"], opset_version=opset, dynamo=False,
                              dynamic_axes=axes)
        except Exception as exc:  # noqa: BLE001 - exporter errors are many and deep
            raise OcrkitError(f"ONNX export failed: {exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    proto = onnx.load(out)
    meta = {"ocrkit_charset": json.dumps(charset.chars, ensure_ascii=False),
            "ocrkit_input": json.dumps(ckpt["input"]),
            "ocrkit_spec": json.dumps(ckpt["spec"]),
            "ocrkit_version": __version__}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, out)
    return meta


def verify_onnx(checkpoint: str, onnx_path: str, images) -> dict:
    """Run torch and onnxruntime on the same images; compare logits and decoded text."""
    ort = _need("onnxruntime")
    ckpt = load_checkpoint(checkpoint)
    model, charset = build_model(ckpt)
    spec = InputSpec(**ckpt["input"])
    resize = spec.transform()
    x = spec.to_tensor([resize(im)[0] for im in images])
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)
    def texts(logits):
        return ["\n".join(charset.decode(r) for r in rows) for rows, _ in model.decode(logits)]

    texts_ref, texts_onnx = texts(ref), texts(torch.from_numpy(got))
    same = sum(a == b for a, b in zip(texts_ref, texts_onnx))
    return {"images": len(images), "max_abs_diff": float(np.abs(got - ref.numpy()).max()),
            "same_text": same, "texts_match": same == len(images)}
