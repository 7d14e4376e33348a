"""Stage 3 (meta-learned surrogate) entry point; the same as `pnag train surrogate`.

  python train/surrogate.py --space nb201 --workdir runs/nb201 --exclude 'cifar10(?!0)'
"""

import sys

from pnag_jax import cli

if __name__ == "__main__":
  cli.console(["train", "surrogate", *sys.argv[1:]])
