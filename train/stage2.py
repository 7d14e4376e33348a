"""Stage 2 (the next-scale transformer prior) entry point; the same as `pnag train stage2`.

  python train/stage2.py --workdir runs/nb201 --preset quick    # after stage 1 there
"""

import sys

from pnag_jax import cli

if __name__ == "__main__":
  cli.console(["train", "stage2", *sys.argv[1:]])
