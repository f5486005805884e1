"""SanTi-style text-image synthesizer (single-row, multi-row, box-line tables).

Pipeline: config.py (the run's settings) -> corpus.py (book-order text) ->
fonts.py (discovery, coverage by rendering) -> layout.py (geometry, text plan) ->
plan.py (the run's text and splits) -> render.py + degrade.py, drawing from
look.py (one sample) -> workers.py (rendering in parallel) -> folder.py (the
dataset files), all run by generate.py.
"""

from data_tools.synth.config import SynthConfig
from data_tools.synth.generate import SynthResult, synthesize

__all__ = ["SynthConfig", "SynthResult", "synthesize"]
