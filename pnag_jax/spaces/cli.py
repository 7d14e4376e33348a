"""`pnag spaces`: what each search space is, in one line of numbers and its vocabulary."""

from __future__ import annotations

import argparse

from pnag_jax.spaces import SPACE_NAMES, get_space


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.epilog = "example:\n  pnag spaces\n  pnag spaces mbv3"
  p.add_argument("space", nargs="?", help=f"only this space ({', '.join(SPACE_NAMES)})")


def main(args: argparse.Namespace) -> None:
  for name in [args.space] if args.space else SPACE_NAMES:
    space = get_space(name)
    size = space.size()
    size_str = f"{size:,}" if size < 10**9 else f"{size:.4e} ({size})"
    print(f"{space.name}: N={space.num_nodes}, {space.num_ops} node ops, "
          f"{'fixed' if space.fixed_adjacency else 'generated'} adjacency, size {size_str}")
    print(f"  node ops: {', '.join(space.node_ops)}")
