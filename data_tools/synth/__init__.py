"""SanTi-style text-image synthesizer (single-row, multi-row, box-line tables).

Pipeline: corpus.py (book-order text) -> fonts.py (discovery, coverage by
rendering) -> layout.py (geometry, text plan) -> render.py + degrade.py (one
sample) -> generate.py (parallel rendering, dataset files).
"""

from data_tools.synth.generate import SynthConfig, SynthResult, synthesize

__all__ = ["SynthConfig", "SynthResult", "synthesize"]
