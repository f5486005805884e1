"""Data generation and dataset I/O for ocrkit: the SanTi-style synthesizer
(:mod:`data_tools.synth`), the LMDB writer and label-format readers."""
