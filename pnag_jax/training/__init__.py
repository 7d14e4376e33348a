"""Training loops, one module per stage; `train/` holds the thin entry points."""
