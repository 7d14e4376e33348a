"""The `pnag` command line.

Input errors (`PnagError`) print one line and exit 2; no traceback reaches the user
for them. Subcommands register themselves in `_COMMANDS`, so `train`, `generate` and
`eval` slot in beside `spaces` and `demo`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pnag_jax.errors import PnagError


class _OneLineParser(argparse.ArgumentParser):
  """argparse prints usage plus an error; we promise one line."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _cmd_spaces(args: argparse.Namespace) -> None:
  from pnag_jax.spaces import SPACE_NAMES, get_space  # pylint: disable=g-import-not-at-top
  names = SPACE_NAMES if not args.space else [args.space]
  for name in names:
    space = get_space(name)
    size = space.size()
    size_str = f"{size:,}" if size < 10**9 else f"{size:.4e} ({size})"
    print(f"{space.name}: N={space.num_nodes}, {space.num_ops} node ops, "
          f"{'fixed' if space.fixed_adjacency else 'generated'} adjacency, size {size_str}")
    print(f"  node ops: {', '.join(space.node_ops)}")


def _cmd_demo(args: argparse.Namespace) -> None:
  from pnag_jax import demo  # pylint: disable=g-import-not-at-top
  demo.run(num=args.num, seed=args.seed, data_dir=args.data_dir)


def _cmd_train(args: argparse.Namespace) -> None:
  from pnag_jax.configs.stage1 import make_config  # pylint: disable=g-import-not-at-top
  from pnag_jax.training import stage1  # pylint: disable=g-import-not-at-top
  from pnag_jax.spaces import get_space  # pylint: disable=g-import-not-at-top
  get_space(args.space)  # an unknown space fails here, before any work
  if args.data_dir is not None:
    # Stage 1 reads no tables (NB201's split is over cell codes), but a bad directory
    # given explicitly is still the user's mistake, so it fails now, not in a later stage.
    from pnag_jax.data import resolve_data_dir  # pylint: disable=g-import-not-at-top
    resolve_data_dir(args.data_dir)
  cfg = make_config(args.preset, space=args.space, seed=args.seed, overrides=args.set)
  report = stage1.train_and_evaluate(cfg, args.workdir)
  print(f"stage1 {report['space']}: {report['steps']} steps in {report['train_seconds']:.1f} s, "
        f"held-out exact match {report['heldout_exact_match']:.4f}, "
        f"train {report['train_exact_match']:.4f}")
  print(f"  step validity: {' '.join(f'{v:.3f}' for v in report['step_validity'])}")
  print(f"  report: {args.workdir}/stage1/report.json")


def _add_train(sub) -> None:
  p = sub.add_parser("train", help="train a stage (resumes from the latest checkpoint)")
  p.add_argument("stage", choices=["stage1"])
  p.add_argument("--space", default="nb201")
  p.add_argument("--workdir", required=True)
  p.add_argument("--preset", default="quick", help="quick | paper")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override one config value; repeatable")
  p.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR)")
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=_cmd_train)


def _add_spaces(sub) -> None:
  p = sub.add_parser("spaces", help="list the search spaces: N, vocabulary, size")
  p.add_argument("space", nargs="?", help="only this space")
  p.set_defaults(func=_cmd_spaces)


def _add_demo(sub) -> None:
  p = sub.add_parser("demo", help="the main job on NB201, small enough for a laptop")
  p.add_argument("--num", type=int, default=100_000, help="architectures to generate")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR)")
  p.set_defaults(func=_cmd_demo)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_spaces, _add_demo, _add_train)


def build_parser() -> argparse.ArgumentParser:
  parser = _OneLineParser(prog="pnag", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
  for add in _COMMANDS:
    add(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except PnagError as e:
    print(f"pnag: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("pnag: interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
