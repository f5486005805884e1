"""Evaluate a checkpoint on a dataset; optional gallery of the worst predictions."""

from __future__ import annotations

import base64
import heapq
import html
import io
import time
from dataclasses import dataclass, field

import editdistance
import torch
from PIL import Image

from ocrkit.data.batch import Collate
from ocrkit.metrics import Metrics, normalize
from ocrkit.predict import Predictor, predict_texts

GALLERY_MARK = "<meta name='generator' content='ocrkit evaluate'>"


@dataclass(order=True)
class _Worst:
    score: tuple
    key: str = field(compare=False)
    gt: str = field(compare=False)
    pred: str = field(compare=False)
    conf: float = field(compare=False)
    png: bytes = field(compare=False)


def evaluate_loader(model, charset, loader, device, *, beam_width: int | None = None,
                    errors: int = 0, limit: int | None = None, input_spec=None, on_batch=None,
                    protocol: str = "exact") -> tuple[dict, list]:
    """Metrics of ``model`` over a loader of collated batches, and the ``errors``
    worst samples (kept with their images; ``input_spec`` undoes the normalisation).

    Image-level metrics compare whole texts (rows joined, newlines not counted).
    When images hold several rows (a multi-row model or multi-row labels),
    ``result["row_level"]`` has the same metrics over rows: predicted row ``j``
    against label row ``j``, the shorter list padded with empty rows.

    ``protocol`` (:data:`ocrkit.metrics.PROTOCOLS`): how both strings are normalised
    before scoring. The metrics are the protocol's; with another protocol than
    ``exact``, ``result["exact"]`` holds the exact scores beside them (image level)
    and ``result["labels_emptied"]`` counts labels the protocol left empty. The worst
    samples are ranked by the protocol's edit distance.
    """
    metrics = Metrics()
    row_metrics = Metrics()
    exact = Metrics() if protocol != "exact" else None
    emptied = 0
    multirow = False
    worst: list[_Worst] = []
    broken = 0
    broken_items: list[tuple[str, str]] = []
    model_seconds = 0.0
    mismatched: list[tuple[str, str]] = []
    mismatched_count = 0
    for batch in loader:
        mismatched_count += len(batch.get("mismatched", ()))
        if len(mismatched) < 5:
            mismatched += list(batch.get("mismatched", []))[:5 - len(mismatched)]
        broken += batch["broken"]
        if len(broken_items) < 20:
            broken_items += list(batch.get("broken_items", []))[:20 - len(broken_items)]
        if limit is not None and batch["images"].shape[0] > limit - metrics.samples:
            keep = limit - metrics.samples  # exactly ``limit`` samples, not whole batches
            batch = {**batch, "images": batch["images"][:keep], "labels": batch["labels"][:keep],
                     "keys": batch["keys"][:keep]}
        if batch["images"].shape[0] == 0:
            continue
        started = time.perf_counter()
        with torch.no_grad():
            preds, confs, pred_rows = predict_texts(model, batch["images"].to(device), charset,
                                                    beam_width)
        model_seconds += time.perf_counter() - started
        labels = [normalize(label, protocol) for label in batch["labels"]]
        scored = [normalize(pred, protocol) for pred in preds]
        metrics.update(scored, labels)
        if exact is not None:
            exact.update(preds, batch["labels"])
            emptied += sum(1 for raw, label in zip(batch["labels"], labels)
                           if raw.replace("\n", "") and not label.replace("\n", ""))
        for rows, label in zip(pred_rows, labels):
            rows = [normalize(row, protocol) for row in rows]
            gt_rows = label.split("\n")
            multirow = multirow or len(rows) > 1 or len(gt_rows) > 1
            n = max(len(rows), len(gt_rows))
            row_metrics.update(rows + [""] * (n - len(rows)), gt_rows + [""] * (n - len(gt_rows)))
        if errors:
            for i, (pred, gt) in enumerate(zip(preds, batch["labels"])):
                a, b = scored[i].replace("\n", ""), labels[i].replace("\n", "")
                ed = editdistance.eval(a, b)
                if ed == 0:
                    continue
                item = (ed / max(len(b), 1), ed)
                if len(worst) < errors or item > worst[0].score:
                    png = _png(batch["images"][i], input_spec)
                    entry = _Worst(item, batch["keys"][i], gt, pred, confs[i], png)
                    (heapq.heappush if len(worst) < errors else heapq.heapreplace)(worst, entry)
        if on_batch:
            on_batch(batch["images"].shape[0])
        if limit is not None and metrics.samples >= limit:
            break
    result = metrics.result()
    if exact is not None:
        result["exact"] = exact.result()
        result["labels_emptied"] = emptied
    # Recognition time alone (forward and decoding; no image reading), per image.
    result["ms_per_image"] = round(1000 * model_seconds / max(metrics.samples, 1), 3)
    result["broken_samples"] = broken
    if broken:
        result["broken_examples"] = [f"{key} ({why})" for key, why in broken_items[:5]]
    if mismatched_count:
        result["unlike_training_input"] = mismatched_count
        result["unlike_training_examples"] = [f"{key}: {why}" for key, why in mismatched]
    if multirow:
        result["row_level"] = row_metrics.result()
    return result, sorted(worst, reverse=True)


def rows_mismatch(labels: list[str], model_rows: int) -> str | None:
    """What is wrong when labels hold more text rows than the model reads, or None.

    A single-row model given multi-row data outputs one line per image, scored
    against the label's rows joined: the metrics then measure the mismatch, not
    the model. Counted from the labels' rows (newline-separated), which stay
    right where the image test (:func:`ocrkit.data.transforms.input_mismatch`)
    cannot tell (wide pages, rows too close to part)."""
    counts = [label.count("\n") + 1 for label in labels]
    over = [n for n in counts if n > model_rows]
    if not over:
        return None
    lo, hi = min(over), max(over)
    held = f"{lo} rows" if lo == hi else f"{lo} to {hi} rows"
    reads = "one row" if model_rows == 1 else f"at most {model_rows} rows"
    hint = (f"evaluate a model trained with --rows {hi}" if model_rows == 1
            else f"rows after row {model_rows} are not read")
    return (f"{len(over)} of {len(counts)} samples hold {held} of text; this model reads "
            f"{reads}, so the metrics measure that mismatch ({hint})")


def evaluate(predictor: Predictor, dataset, *, batch_size: int = 64, workers: int = 0,
             errors: int = 0, limit: int | None = None, on_batch=None,
             protocol: str = "exact") -> tuple[dict, list]:
    """Metrics of ``predictor`` on ``dataset`` and the ``errors`` worst samples.

    Labels are not encoded: characters outside the model's charset count as errors.
    ``limit`` evaluates exactly the first ``limit`` samples. ``protocol``: see
    :func:`evaluate_loader`; the result names it (``"protocol"``).
    """
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
        limit = None
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers,
                                         collate_fn=Collate(predictor.input, None,
                                                            check_shapes=True,
                                                            width=predictor.width))
    result, worst = evaluate_loader(predictor.model, predictor.charset, loader,
                                    predictor.device, beam_width=predictor.beam_width,
                                    errors=errors, limit=limit, input_spec=predictor.input,
                                    on_batch=on_batch, protocol=protocol)
    return {"protocol": protocol, **result}, worst


def _png(tensor: torch.Tensor, spec) -> bytes:
    """The model's input as it saw it: grey, or RGB for a 3-channel model."""
    arr = (tensor * spec.std + spec.mean).clamp(0, 1).mul(255).byte().cpu()
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_gallery(worst: list, path: str, title: str) -> None:
    """An HTML page: image, ground truth, prediction, edit distance, confidence."""
    rows = []
    for w in worst:
        src = "data:image/png;base64," + base64.b64encode(w.png).decode()
        rows.append(
            f"<tr><td><img src='{src}'></td><td>{html.escape(w.gt).replace(chr(10), '<br>')}</td>"
            f"<td>{html.escape(w.pred).replace(chr(10), '<br>')}</td><td>{w.score[1]}</td>"
            f"<td>{w.conf:.3f}</td><td>{html.escape(w.key)}</td></tr>")
    page = (f"<!doctype html><meta charset='utf-8'>{GALLERY_MARK}<title>{html.escape(title)}</title>"
            "<style>td{border-bottom:1px solid #ccc;padding:4px;font-size:18px}</style>"
            f"<h1>{html.escape(title)}</h1><table><tr><th>image</th><th>ground truth</th>"
            "<th>prediction</th><th>edit distance</th><th>confidence</th><th>sample</th></tr>"
            + "".join(rows) + "</table>")
    from ocrkit.outputs import atomic_file

    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(page)


def is_gallery(path: str) -> bool:
    """True if ``path`` is a gallery an earlier ``ocrkit evaluate`` wrote (replaceable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return GALLERY_MARK in fh.read(300)
    except OSError:
        return False
