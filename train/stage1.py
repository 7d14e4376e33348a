"""Stage 1 (VQ-VAE) entry point; the same as `pnag train stage1`.

  python train/stage1.py --space nb201 --workdir runs/nb201 --preset paper
"""

import sys

from pnag_jax import cli

if __name__ == "__main__":
  cli.console(["train", "stage1", *sys.argv[1:]])
