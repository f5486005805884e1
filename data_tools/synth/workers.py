"""Rendering in worker processes: each holds the run's state and one renderer, and
renders ranges of image indices to disk.

The state a worker starts from (a dict, handed to :func:`init_worker` once per
process): ``fonts``, ``layout``, ``look``, ``seed`` and ``reference`` (what the
renderer is built from: see :class:`~data_tools.synth.render.Renderer`), ``plan``
(the rows of each image), ``splits`` (each image's split), ``split_dirs`` (each
split's folder), ``jpeg`` (the JPEG quality range, or None for PNG), ``domain``
(which renderer draws: ``print``, ``scene`` or ``handwriting``; each label record
says it) and ``options`` (the renderer's keyword options: font traits, characters
for neighbouring text).
"""

from __future__ import annotations

import os
import random

from PIL import Image

from data_tools.synth.layout import Plan
from data_tools.synth.render import Renderer

_STATE: dict = {}


def renderer_class(domain: str) -> type:
    """The renderer of a domain (imported only when a run draws it)."""
    if domain == "scene":
        from data_tools.synth.scene import SceneRenderer

        return SceneRenderer
    if domain == "handwriting":
        from data_tools.synth.handwriting import HandwritingRenderer

        return HandwritingRenderer
    return Renderer


def init_pool_worker(state: dict) -> None:
    import signal

    # Pool.terminate() sends SIGTERM: die quietly, not through the CLI's handler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    init_worker(state)


def init_worker(state: dict) -> None:
    _STATE.clear()
    _STATE.update(state)
    make = renderer_class(state.get("domain", "print"))
    _STATE["renderer"] = make(state["fonts"], state["layout"], state["look"], state["seed"],
                              state["reference"], **state.get("options", {}))
    _STATE["made_dirs"] = set()


def release_worker() -> None:
    """Drop this process's state (the main process's, once it rendered in-process)."""
    _STATE.clear()


def _save(image: Image.Image, path: str, quality: int | None) -> None:
    if quality is None:
        image.save(path, format="PNG", compress_level=1, compress_type=3)  # zlib Z_RLE: fastest here
    else:
        image.save(path, format="JPEG", quality=quality)


def render_range(bounds: tuple[int, int]) -> list[tuple[int, dict]]:
    """Render images ``bounds[0]..bounds[1]-1`` to disk; return their label records."""
    st = _STATE
    renderer = st["renderer"]
    domain = st.get("domain", "print")
    plan: Plan = st["plan"]
    out = []
    for i in range(*bounds):
        split = int(st["splits"][i])
        base = st["split_dirs"][split]
        bucket = f"images/{i // 1000:04d}"
        folder = os.path.join(base, bucket)
        if folder not in st["made_dirs"]:
            os.makedirs(folder, exist_ok=True)
            st["made_dirs"].add(folder)
        rows = plan.rows(i)
        sample = renderer.render(i, rows)
        quality = None
        if st["jpeg"] is not None:
            quality = random.Random(f"{st['seed']}:{i}:jpeg").randint(*st["jpeg"])
        name = f"{bucket}/{i:08d}.{'jpg' if quality else 'png'}"
        _save(sample.image, os.path.join(base, name), quality)
        record = {"image": name, "rows": rows, "font": sample.font, "domain": domain}
        if sample.clean is not None:
            record["clean"] = f"{bucket}/{i:08d}_clean.png"
            record["mask"] = f"{bucket}/{i:08d}_mask.png"
            _save(sample.clean, os.path.join(base, record["clean"]), None)
            _save(sample.mask, os.path.join(base, record["mask"]), None)
        out.append((split, record))
    return out
