"""Training methods, one module each, on the shared loop (:mod:`ocrkit.train`):
supervised recognizers (CTC, attention heads, EMU's classifier loss), knowledge
distillation and its loss terms, box-line denoisers."""
