"""One training loop (loop.py) that every method plugs into (methods.py)."""
