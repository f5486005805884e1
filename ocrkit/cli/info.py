"""`ocrkit info`: what a checkpoint holds and what each part of the model costs."""

from __future__ import annotations

import json
import os

import click

from ocrkit.cli._common import stderr_console

PARTS = ("denoiser", "backbone", "neck", "sequence", "classifier", "head")
ROUTER_PARTS = ("block1", "block2", "block3", "fc")


def _router_info(ckpt: dict, path: str) -> dict:
    """A router's domains (its output order), input and measured cost."""
    from ocrkit.models.router import build_router, router_cost

    model = build_router(ckpt, path)
    size = ckpt.get("input", {}).get("height", 84)
    return {"router": {**ckpt["router"], **router_cost(model, size)}, "input": ckpt.get("input")}


def checkpoint_info(path: str) -> dict:
    """Parameters and tensor bytes per part, the file's size, and for the classifier
    the §IV-C storage formula (softmax ``r N d``, EMU ``r K d + N K / 8``)."""
    from ocrkit.checkpoint import load_checkpoint
    from ocrkit.models.classifiers.multihot import storage_bytes
    from ocrkit.models.recognizer import build_model

    ckpt = load_checkpoint(path)
    kind = ckpt.get("kind", "recognizer")
    out = {"path": path, "kind": kind, "file_bytes": os.path.getsize(path),
           "resumable": "train_state" in ckpt, "step": ckpt.get("meta", {}).get("step")}
    state = ckpt.get("state_dict", {})
    parts: dict[str, dict] = {}
    known = ROUTER_PARTS if kind == "router" else PARTS
    for name, tensor in state.items():
        part = name.split(".", 1)[0]
        part = part if part in known else "other"
        entry = parts.setdefault(part, {"parameters": 0, "buffers": 0, "bytes": 0})
        entry["bytes"] += tensor.numel() * tensor.element_size()
        entry["buffers" if _is_buffer(name) else "parameters"] += tensor.numel()
    out["parts"] = parts
    out["tensor_bytes"] = sum(p["bytes"] for p in parts.values())
    if kind == "router":
        out.update(_router_info(ckpt, path))
        return out
    if kind != "recognizer" or "spec" not in ckpt:
        return out
    spec = ckpt["spec"]
    out["model"] = {k: (spec.get(k) or {}).get("name") for k in PARTS[1:]}
    out["classes"] = len(ckpt.get("charset", [])) + 1
    out["input"] = ckpt.get("input")
    model, _ = build_model(ckpt)
    clf = model.classifier
    dim, classes = getattr(clf, "in_channels", None), out["classes"]
    if hasattr(clf, "bits"):
        formula = storage_bytes(clf.bits, classes, dim)
        own = parts.get("classifier", {}).get("bytes", 0)
        # the same model with a softmax classifier (weights and biases) instead
        as_softmax = out["tensor_bytes"] - own + formula["softmax"] + 4 * classes
        out["emu"] = {"bits": clf.bits, "d": dim, "N": classes, "packed": clf.packed,
                      "formula_bytes": formula["emu"], "softmax_bytes": formula["softmax"],
                      "psi": round(formula["psi"], 5), "classifier_bytes": own,
                      # a K -> d output-embedding map of its own (embed_map=linear)
                      "embed_map_bytes": clf.embed_map.weight.numel()
                      * clf.embed_map.weight.element_size()
                      if getattr(clf, "embed_map", None) is not None else 0,
                      "model_bytes_with_softmax": as_softmax,
                      "smaller_than_softmax": round(as_softmax / out["tensor_bytes"], 3),
                      **clf.code_report()}
    elif dim is None and hasattr(clf, "fc"):
        out["softmax"] = {"d": clf.fc.in_features, "N": classes,
                          "formula_bytes": storage_bytes(8, classes, clf.fc.in_features)["softmax"],
                          "classifier_bytes": parts.get("classifier", {}).get("bytes")}
    return out


def _is_buffer(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf in ("running_mean", "running_var", "num_batches_tracked", "codebook",
                    "beta_prime", "iteration")


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.3f} MiB"


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit info runs/emu/best.pt
  ocrkit info runs/emu/best.pt -q | python -c 'import json,sys; print(json.load(sys.stdin)["emu"])'
""")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="No table on stderr.")
def info(checkpoint, quiet) -> None:
    """Parts, parameters and bytes of a checkpoint; for EMU models the storage formula,
    the bytes the classifier really takes, and the codebook's minimum Hamming distance;
    for a router (train-router) its domains and measured multiply-adds.

    One JSON object on stdout; a readable table on stderr.
    """
    result = checkpoint_info(checkpoint)
    if not quiet:
        from rich.table import Table

        table = Table(title=f"{checkpoint} ({result['kind']})")
        for col in ("part", "parameters", "buffers", "bytes"):
            table.add_column(col, justify="left" if col == "part" else "right")
        for part, p in result["parts"].items():
            table.add_row(part, f"{p['parameters']:,}", f"{p['buffers']:,}", _mib(p["bytes"]))
        table.add_row("tensors", "", "", _mib(result["tensor_bytes"]))
        table.add_row("file", "", "", _mib(result["file_bytes"]))
        console = stderr_console(False)
        console.print(table)
        if "router" in result:
            r = result["router"]
            console.print(f"router over {', '.join(r['domains'])} (train-router; use it as "
                          f"infer/evaluate --router): {r['parameters']:,} parameters, "
                          f"{r['macs'] / 1e6:.1f} M multiply-adds ({r['flops'] / 1e6:.1f} M "
                          f"FLOPs) at {'x'.join(map(str, r['input']))}", highlight=False)
        if "emu" in result:
            e = result["emu"]
            console.print(f"EMU K={e['bits']} d={e['d']} N={e['N']}: r*K*d + N*K/8 = "
                          f"{_mib(e['formula_bytes'])} (softmax r*N*d {_mib(e['softmax_bytes'])}, "
                          f"psi {e['psi']}); classifier tensors {_mib(e['classifier_bytes'])}"
                          + (f" (with a K->d embedding map of {_mib(e['embed_map_bytes'])})"
                             if e["embed_map_bytes"] else "") + "; "
                          f"the model is {e['smaller_than_softmax']}x smaller than with a "
                          f"softmax classifier; "
                          f"min Hamming distance {e['min_hamming']}, duplicate codes "
                          f"{e['duplicate_pairs']}", highlight=False)
    click.echo(json.dumps(result, ensure_ascii=False))
