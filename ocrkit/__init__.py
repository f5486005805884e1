"""ocrkit: train, compress and ship text recognizers, Chinese first.

Importing this package is cheap: nothing here imports torch. The CLI lives in
:mod:`ocrkit.cli`, data generation in :mod:`data_tools`.
"""

__version__ = "0.1.0"
