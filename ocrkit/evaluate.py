"""Evaluate a checkpoint on a dataset (or a router and its specialists: routed
evaluation); optional gallery of the worst predictions.

Mixed data (samples recording at least two domains, as ``labels.jsonl`` ``"domain"``
or LMDB ``domain-%09d`` keys do) also gets ``"per_domain"``: the same metrics over
each domain's samples (``"(none)"`` for samples that record none).
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import time
from collections import Counter
from dataclasses import dataclass, field

import editdistance
import numpy as np
import torch
from PIL import Image

from ocrkit.data.batch import Collate
from ocrkit.metrics import Calibration, Metrics, normalize
from ocrkit.predict import Predictor, predict_texts

GALLERY_MARK = "<meta name='generator' content='ocrkit evaluate'>"
NO_DOMAIN = "(none)"  # the per-domain key of samples that record no domain


@dataclass(order=True)
class _Worst:
    score: tuple
    key: str = field(compare=False)
    gt: str = field(compare=False)
    pred: str = field(compare=False)
    conf: float = field(compare=False)
    png: bytes = field(compare=False)


class Scorer:
    """The metrics of one evaluation, accumulated batch by batch: image level under
    ``protocol`` (the exact scores beside them for another protocol), row level, and
    the ``errors`` worst samples with their images."""

    def __init__(self, protocol: str = "exact", errors: int = 0) -> None:
        self.protocol, self.errors = protocol, errors
        self.metrics, self.row_metrics = Metrics(), Metrics()
        self.calibration = Calibration()
        self.exact = Metrics() if protocol != "exact" else None
        self.emptied = 0
        self.multirow = False
        self.worst: list[_Worst] = []

    @property
    def samples(self) -> int:
        return self.metrics.samples

    def add(self, preds, confs, pred_rows, raw_labels, keys=(), png=None) -> None:
        """Score a batch; ``png(i)`` gives sample ``i``'s image for the gallery."""
        protocol = self.protocol
        labels = [normalize(label, protocol) for label in raw_labels]
        scored = [normalize(pred, protocol) for pred in preds]
        self.metrics.update(scored, labels)
        self.calibration.update(confs, scored, labels)
        if self.exact is not None:
            self.exact.update(preds, raw_labels)
            self.emptied += sum(1 for raw, label in zip(raw_labels, labels)
                                if raw.replace("\n", "") and not label.replace("\n", ""))
        for rows, label in zip(pred_rows, labels):
            rows = [normalize(row, protocol) for row in rows]
            gt_rows = label.split("\n")
            self.multirow = self.multirow or len(rows) > 1 or len(gt_rows) > 1
            n = max(len(rows), len(gt_rows))
            self.row_metrics.update(rows + [""] * (n - len(rows)),
                                    gt_rows + [""] * (n - len(gt_rows)))
        if not self.errors:
            return
        worst = self.worst
        for i, (pred, gt) in enumerate(zip(preds, raw_labels)):
            a, b = scored[i].replace("\n", ""), labels[i].replace("\n", "")
            ed = editdistance.eval(a, b)
            if ed == 0:
                continue
            item = (ed / max(len(b), 1), ed)
            if len(worst) < self.errors or item > worst[0].score:
                entry = _Worst(item, keys[i], gt, pred, confs[i], png(i))
                (heapq.heappush if len(worst) < self.errors else heapq.heapreplace)(worst, entry)

    def result(self) -> dict:
        """The metrics (``exact`` and ``labels_emptied`` for another protocol) and
        ``confidence``: how well confidence tells right texts from wrong ones
        (:class:`ocrkit.metrics.Calibration`, under the protocol)."""
        out = {**self.metrics.result(), "confidence": self.calibration.result()}
        if self.exact is not None:
            out["exact"] = self.exact.result()
            out["labels_emptied"] = self.emptied
        return out

    def rows(self) -> dict | None:
        """Row-level metrics when any image held several rows, else None."""
        return self.row_metrics.result() if self.multirow else None

    def summary(self) -> dict:
        """:meth:`result` with ``row_level`` where there are rows."""
        out = self.result()
        if self.multirow:
            out["row_level"] = self.row_metrics.result()
        return out

    def ranked_worst(self) -> list:
        return sorted(self.worst, reverse=True)


def _by_domain(scorers: dict, protocol: str, domains, preds, confs, rows, labels) -> None:
    """Score each sample in its own domain's :class:`Scorer` too."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(domains):
        groups.setdefault(NO_DOMAIN if d is None else d, []).append(i)
    for d, idx in groups.items():
        scorers.setdefault(d, Scorer(protocol)).add(
            [preds[i] for i in idx], [confs[i] for i in idx], [rows[i] for i in idx],
            [labels[i] for i in idx])


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

    Batches that carry ``"domains"`` (:class:`ocrkit.data.batch.Collate`'s do) of at
    least two kinds add ``result["per_domain"]``: the metrics of each domain's samples.
    """
    scorer = Scorer(protocol, errors)
    per_domain: dict[str, Scorer] = {}
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
        if limit is not None and batch["images"].shape[0] > limit - scorer.samples:
            keep = limit - scorer.samples  # exactly ``limit`` samples, not whole batches
            batch = {**batch, "images": batch["images"][:keep], "labels": batch["labels"][:keep],
                     "keys": batch["keys"][:keep],
                     **({"domains": batch["domains"][:keep]} if "domains" in batch else {})}
        if batch["images"].shape[0] == 0:
            continue
        started = time.perf_counter()
        with torch.no_grad():
            preds, confs, pred_rows = predict_texts(model, batch["images"].to(device), charset,
                                                    beam_width)
        model_seconds += time.perf_counter() - started
        images = batch["images"]
        scorer.add(preds, confs, pred_rows, batch["labels"], batch["keys"],
                   png=lambda i: _png(images[i], input_spec))
        if "domains" in batch:
            _by_domain(per_domain, protocol, batch["domains"], preds, confs, pred_rows,
                       batch["labels"])
        if on_batch:
            on_batch(batch["images"].shape[0])
        if limit is not None and scorer.samples >= limit:
            break
    result = scorer.result()
    # Recognition time alone (forward and decoding; no image reading), per image.
    result["ms_per_image"] = round(1000 * model_seconds / max(scorer.samples, 1), 3)
    _problems(result, broken, broken_items, mismatched_count, mismatched)
    if scorer.multirow:
        result["row_level"] = scorer.rows()
    per_domain = {d: s for d, s in per_domain.items() if s.samples}
    if len(per_domain) > 1:
        result["per_domain"] = {d: per_domain[d].summary() for d in sorted(per_domain)}
    return result, scorer.ranked_worst()


def _problems(result: dict, broken: int, broken_items, mismatched_count: int,
              mismatched) -> None:
    """Unusable samples and inputs unlike the training input, into ``result``."""
    result["broken_samples"] = broken
    if broken:
        result["broken_examples"] = [f"{key} ({why})" for key, why in broken_items[:5]]
    if mismatched_count:
        result["unlike_training_input"] = mismatched_count
        result["unlike_training_examples"] = [f"{key}: {why}" for key, why in mismatched]


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
    :func:`evaluate_loader`; the result names it (``"protocol"``). Mixed data adds
    ``"per_domain"``.
    """
    collate = Collate(predictor.input, None, check_shapes=True, width=predictor.width)
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
        limit = None
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=collate)
    result, worst = evaluate_loader(predictor.model, predictor.charset, loader,
                                    predictor.device, beam_width=predictor.beam_width,
                                    errors=errors, limit=limit, input_spec=predictor.input,
                                    on_batch=on_batch, protocol=protocol)
    return {"protocol": protocol, **result}, worst


# ----------------------------------------------------------------------------- routed
class RoutedCollate:
    """Samples -> the router's input (``"images"``) and, per specialist, every kept
    sample prepared for it (``"arrays"[domain]``, resized in the loader's workers; the
    main process batches the ones routed there) and why it looks unlike that
    specialist's training input (``"mismatch"[domain]``, None where it does not),
    with ``"labels"``, ``"keys"``, ``"domains"``, ``"broken"``, ``"broken_items"``."""

    def __init__(self, router_spec, specialists: dict) -> None:
        self.router_spec = router_spec
        self.router_resize = router_spec.transform("fixed")
        self.specs = {d: (p.input, p.resize) for d, p in specialists.items()}

    def __call__(self, samples) -> dict:
        from ocrkit.data.transforms import input_mismatch

        router, labels, keys, domains, dropped = [], [], [], [], []
        arrays = {d: [] for d in self.specs}
        mismatch = {d: [] for d in self.specs}
        for s in samples:
            if s.image is None:
                dropped.append((s.key, s.error or "unreadable"))
                continue
            router.append(self.router_resize(s.image)[0])
            for d, (spec, resize) in self.specs.items():
                arrays[d].append(resize(s.image)[0])
                mismatch[d].append(input_mismatch(s.image, spec.height, spec.width, spec.rows,
                                                  resize.max_width))
            labels.append(s.label)
            keys.append(s.key)
            domains.append(s.domain)
        spec = self.router_spec
        images = (spec.to_tensor(router) if router
                  else torch.empty(0, spec.channels, spec.height, spec.width))
        return {"images": images, "arrays": arrays, "mismatch": mismatch, "labels": labels,
                "keys": keys, "domains": domains, "broken": len(dropped),
                "broken_items": dropped}


def _read(predictor: Predictor, arrays: list) -> tuple[list, list, list, torch.Tensor, float]:
    """A specialist's readings of prepared arrays, the batch it read, and the seconds."""
    x = predictor.input.to_tensor(arrays)
    started = time.perf_counter()
    with torch.no_grad():
        texts, confs, rows = predict_texts(predictor.model, x.to(predictor.device),
                                           predictor.charset, predictor.beam_width)
    return texts, confs, rows, x, time.perf_counter() - started


def evaluate_routed(routed, dataset, *, batch_size: int = 64, workers: int = 0,
                    errors: int = 0, limit: int | None = None, on_batch=None,
                    protocol: str = "exact") -> tuple[dict, list]:
    """Metrics of a router and its specialists (:class:`ocrkit.routing.RoutedPredictor`)
    on ``dataset`` (decoded in RGB): each sample is read by the specialist of the
    domain the router picks.

    The result holds the usual metrics over all samples, and:

    ``router``          its accuracy against the domains the samples record
                        (``accuracy``, ``balanced_accuracy``, ``per_domain``,
                        ``confusion[recorded][routed]``, ``samples`` scored; samples
                        with no domain or one the router does not know are left out
                        and counted in ``unscored``), its ``ms_per_image``;
    ``routed_to``       how many samples went to each specialist;
    ``oracle_routing``  the metrics had every sample been read by its own domain's
                        specialist (a perfect router; scored samples only: the
                        misrouted ones are read again), so the cost of the router's
                        mistakes is the difference;
    ``per_domain``      per recorded domain: the metrics, ``router_accuracy`` and
                        ``routed_to`` (the breakdown of where its samples went).

    ``ms_per_image`` counts the router and the specialists (recognition alone).
    """
    from ocrkit.routing import router_accuracy

    router = routed.router
    domains = router.domains
    index = {d: i for i, d in enumerate(domains)}
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=RoutedCollate(router.input, routed.specialists))
    scorer, oracle = Scorer(protocol, errors), Scorer(protocol)
    per_domain: dict[str, Scorer] = {}
    confusion = np.zeros((len(domains), len(domains)), dtype=np.int64)
    routed_to: Counter = Counter()
    breakdown: dict[str, Counter] = {}
    unscored: Counter = Counter()
    router_seconds = model_seconds = 0.0
    broken, broken_items, mismatched, mismatched_count = 0, [], [], 0
    for batch in loader:
        broken += batch["broken"]
        if len(broken_items) < 20:
            broken_items += batch["broken_items"][:20 - len(broken_items)]
        n = batch["images"].shape[0]
        if n == 0:
            continue
        started = time.perf_counter()
        routes, probs = router.route(batch["images"])
        router_seconds += time.perf_counter() - started
        preds, confs, rows = [""] * n, [0.0] * n, [[]] * n
        seen: list = [None] * n  # (tensor, input spec) each sample was read from
        for d, predictor in routed.specialists.items():
            mine = [i for i, r in enumerate(routes) if r == d]
            if not mine:
                continue
            texts, cs, rs, x, seconds = _read(predictor, [batch["arrays"][d][i] for i in mine])
            model_seconds += seconds
            for j, i in enumerate(mine):
                preds[i], confs[i], rows[i] = texts[j], cs[j], rs[j]
                seen[i] = (x[j], predictor.input)
        for i, r in enumerate(routes):
            routed_to[r] += 1
            why = batch["mismatch"][r][i]
            if why:
                mismatched_count += 1
                if len(mismatched) < 5:
                    mismatched.append((batch["keys"][i], why))
        keys = [f"{k} (routed to {r}, p {p:.2f})" for k, r, p in zip(batch["keys"], routes,
                                                                     probs)]
        scorer.add(preds, confs, rows, batch["labels"], keys,
                   png=lambda i: _png(*seen[i]))
        _by_domain(per_domain, protocol, batch["domains"], preds, confs, rows, batch["labels"])
        _score_router(batch, routes, index, confusion, breakdown, unscored)
        _score_oracle(oracle, routed, batch, routes, index, preds, confs, rows)
        if on_batch:
            on_batch(n)
    samples = max(scorer.samples, 1)
    result = {"protocol": protocol, **scorer.result(),
              "ms_per_image": round(1000 * (router_seconds + model_seconds) / samples, 3),
              "router_ms_per_image": round(1000 * router_seconds / samples, 3)}
    _problems(result, broken, broken_items, mismatched_count, mismatched)
    if scorer.multirow:
        result["row_level"] = scorer.rows()
    report = router_accuracy(confusion, domains)
    result["router"] = {"checkpoint": router.path, "domains": domains, **report,
                        "unscored": sum(unscored.values())}
    if unscored:
        result["router"]["unscored_domains"] = dict(sorted(unscored.items()))
    result["specialists"] = dict(routed.paths)
    result["routed_to"] = {d: routed_to[d] for d in domains}
    if oracle.samples:
        result["oracle_routing"] = oracle.result()
    result["per_domain"] = {}
    for d in sorted(per_domain):
        entry = per_domain[d].summary()
        entry["router_accuracy"] = report["per_domain"].get(d)
        entry["routed_to"] = {r: breakdown.get(d, Counter())[r] for r in domains}
        result["per_domain"][d] = entry
    return result, scorer.ranked_worst()


def _score_router(batch: dict, routes: list[str], index: dict, confusion: np.ndarray,
                  breakdown: dict, unscored: Counter) -> None:
    """The router's choices against the recorded domains, into ``confusion``
    (``[recorded, routed]``), ``breakdown`` (recorded -> where they went) and
    ``unscored`` (samples whose domain is missing or unknown to the router)."""
    for d, r in zip(batch["domains"], routes):
        key = NO_DOMAIN if d is None else d
        breakdown.setdefault(key, Counter())[r] += 1
        if d in index:
            confusion[index[d], index[r]] += 1
        else:
            unscored[key] += 1


def _score_oracle(oracle: Scorer, routed, batch: dict, routes: list[str], index: dict,
                  preds, confs, rows) -> None:
    """Score, for the samples whose domain the router knows, the reading of their own
    domain's specialist (read again where the router sent them elsewhere; not timed:
    a routed run does not pay for it)."""
    own = [i for i, d in enumerate(batch["domains"]) if d in index]
    if not own:
        return
    texts = {i: (preds[i], confs[i], rows[i]) for i in own if routes[i] == batch["domains"][i]}
    for d, predictor in routed.specialists.items():
        again = [i for i in own if batch["domains"][i] == d and routes[i] != d]
        if again:
            t, c, r, _, _ = _read(predictor, [batch["arrays"][d][i] for i in again])
            texts.update({i: (t[j], c[j], r[j]) for j, i in enumerate(again)})
    oracle.add([texts[i][0] for i in own], [texts[i][1] for i in own],
               [texts[i][2] for i in own], [batch["labels"][i] for i in own])


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
