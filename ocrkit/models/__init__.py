"""Recognizer components (plain ``nn.Module``s) and the assembler, recognizer.py.

Components never read configs or CLI flags: each has typed keyword arguments and
a factory registered as an entry point (see ocrkit/registry.py).
"""
