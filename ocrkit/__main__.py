"""`python -m ocrkit ...` (also what `torchrun -m ocrkit ...` runs)."""

from ocrkit.cli import main

if __name__ == "__main__":
    main()
