"""`pnag tasks`: the tasks a space offers, so `--exclude` patterns can be checked first.

Listing counts each table task's archs, which reads its table; tables are small
(NB201's four files load in about a second) and a listing is asked for by a person.
"""

from __future__ import annotations

import argparse
import os
import sys

from pnag_jax.data import DATA_DIR_HELP, ENV_VAR, has_tables
from pnag_jax.spaces import SPACE_NAMES
from pnag_jax.tasks import ofa
from pnag_jax.tasks.base import select_tasks
from pnag_jax.errors import PnagError
from pnag_jax.tasks.builtin import builtin_tasks, require_tables

_COLUMNS = ("name", "family", "direction", "archs", "source")


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.epilog = ("example:\n  pnag tasks --space nb201 --data-dir ../shared/data\n"
              "  pnag tasks --space nb201 --exclude 'cifar10(?!0)'")
  p.add_argument("--space", default="nb201", help=f"one of {', '.join(SPACE_NAMES)}")
  p.add_argument("--data-dir", help=DATA_DIR_HELP)
  p.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                 help="leave out the tasks whose name this Python regex matches "
                      "(re.search; repeatable), as meta-training would")


def _note_missing_data(space: str) -> None:
  """Says on stderr why a space with data files lists its counts alone."""
  if not (has_tables(space) or space in ofa.SPACES):
    return
  # A variable that is set is a default, not an error; but a typo in it must show.
  env = os.environ.get(ENV_VAR)
  where = (f"${ENV_VAR}={env!r} holds no {space} data" if env else
           f"no data directory (--data-dir or ${ENV_VAR})")
  print(f"pnag: note: {where}, so only the counts are listed", file=sys.stderr)


def main(args: argparse.Namespace) -> None:
  tasks = builtin_tasks(args.space, args.data_dir)
  try:
    kept, excluded = select_tasks(tasks, args.exclude)
  except PnagError:
    # Without the tables only formula tasks exist: that is the cause to name, not the
    # pattern (a regex error would only come next).
    require_tables(tasks, "pnag tasks --exclude")
    raise
  if all(t.is_function and t.name in ("params", "flops") for t in tasks.values()):
    _note_missing_data(args.space)
  rows = [_COLUMNS]
  for task in kept.values():
    archs = "function" if task.is_function else f"{len(task.data())}"
    rows.append((task.name, task.family, "minimize" if task.minimize else "maximize",
                 archs, task.source))
  widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS) - 1)]
  for row in rows:
    print("  ".join(f"{v:<{w}}" for v, w in zip(row, widths)) + "  " + row[-1])
  if excluded:
    print(f"# excluded {len(excluded)}: {', '.join(excluded)}")
