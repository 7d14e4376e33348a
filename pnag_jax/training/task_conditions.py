"""Training pairs of stage 2's task condition: (arch, task vector, the arch's quantile).

For every meta-training task (the surrogate's own: the tasks it excluded are never
read here either) this builds, once per run:

* a bank of `task_bank` task vectors, each the frozen surrogate's embedding of a
  random reference set of k_min..k_max of the task's archs (`stage2.task_condition`,
  the function inference uses), so the prior learns from the same kind of vector a
  user's references give, with its reference-set noise;
* every training and held-out arch's quantile q in the task's score over the space's
  strictly valid archs, oriented so that q = 1 is the best (mid-ranks for ties).

A training pair is then (arch i, task t, vector m): `bank[t, m]` followed by
`quantile[t, i]`, drawn on the device inside the step.

Tasks need a score for every strictly valid arch of an enumerable space (NB201's
table columns and formulas); the zero-cost subset's validation accuracies (about
3% of the cells) are left out and listed as such.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2
from pnag_jax.stages.stage2 import Stage2Config
from pnag_jax.stages.stage1 import Stage1Run


class TaskConditions(NamedTuple):
  names: tuple[str, ...]        # the conditioning tasks, T
  bank: np.ndarray              # float32[T, M, task_dim]
  train_quantile: np.ndarray    # float32[T, N_train]
  heldout_quantile: np.ndarray  # float32[T, N_heldout]
  left_out: tuple[str, ...]     # allowed tasks without a score for every valid arch


def valid_rows(space) -> np.ndarray:
  """bool[size]: strict validity of every arch of an enumerable space (read-only)."""
  return _valid_rows(space.name)


@functools.cache
def _valid_rows(name: str) -> np.ndarray:
  # Once per space: the checks before training and the tables built in it all read it.
  space = get_space(name)
  ops, adj = jax.jit(space.encode)(space.enumerate())
  valid = np.asarray(jax.jit(space.strict_valid)(ops, adj))
  valid.setflags(write=False)
  return valid


def oriented_quantiles(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """float64[size]: each arch's mid-rank quantile among the valid archs' scores.

  `scores` are oriented (higher is better); 0 is the worst valid arch, 1 the best.
  """
  ref = np.sort(scores[valid])
  n = ref.shape[0]
  lo = np.searchsorted(ref, scores, side="left")
  hi = np.searchsorted(ref, scores, side="right")
  return np.clip((lo + hi - 1) / 2.0 / max(n - 1, 1), 0.0, 1.0)


def check_space(cfg: Stage2Config, space) -> None:
  """The task condition can be built on `space` with `cfg`'s reference counts."""
  if not space.enumerable:
    raise PnagError(f"the task condition needs every arch's score and quantile; space "
                    f"{space.name!r} is not enumerable (NB201 is)")
  n = int(valid_rows(space).sum())
  if cfg.k_max > n:
    raise PnagError(f"k_max ({cfg.k_max}) exceeds the {n:,} strictly valid archs of "
                    f"{space.name} that references are drawn from")


def build(cfg: Stage2Config, run1: Stage1Run, srun, train_genes: np.ndarray,
          heldout_genes: np.ndarray, data_dir=None, tasks: dict | None = None
          ) -> TaskConditions:
  """The bank and quantile tables of a task-conditioned stage-2 run.

  `tasks` (name -> Task) defaults to the space's built-in tasks; the surrogate's
  exclusions are dropped by name before any task is read.
  """
  space = run1.space
  if srun.space.name != space.name:
    raise PnagError(f"the surrogate is of space {srun.space.name!r}, stage 1 of "
                    f"{space.name!r}")
  check_space(cfg, space)
  if tasks is None:
    tasks = tasks_lib.builtin_tasks(space.name, data_dir)
    # Without them only the formula tasks are left: a run conditioned on params and
    # flops alone, or an exclusion that "matches no task", where the surrogate was
    # meta-trained on the tables.
    tasks_lib.require_tables(tasks, "the task condition")
  kept, _ = tasks_lib.select_tasks(tasks, srun.cfg.exclude)
  valid = valid_rows(space)
  genes = space.enumerate()
  train_rows = np.asarray(space.index(train_genes))
  heldout_rows = np.asarray(space.index(heldout_genes))
  names, left_out, banks, q_train, q_held = [], [], [], [], []
  for name, task in kept.items():
    raw = task.by_row()
    if np.isnan(raw[valid]).any():
      left_out.append(name)
      continue
    oriented = -raw if task.minimize else raw
    q = oriented_quantiles(oriented, valid)
    pool = np.flatnonzero(valid)
    vectors = []
    for m in range(cfg.task_bank):
      rng = np.random.default_rng([cfg.seed, 13, len(names), m])
      refs = rng.choice(pool, int(rng.integers(cfg.k_min, cfg.k_max + 1)), replace=False)
      vectors.append(stage2.task_condition(srun, genes[refs], raw[refs],
                                           minimize=task.minimize, target=0.0)[:-1])
    names.append(name)
    banks.append(np.stack(vectors))
    q_train.append(q[train_rows])
    q_held.append(q[heldout_rows])
  if not names:
    raise PnagError("no task has a score for every strictly valid arch; the task "
                    "condition has nothing to learn from")
  return TaskConditions(tuple(names), np.stack(banks).astype(np.float32),
                        np.stack(q_train).astype(np.float32),
                        np.stack(q_held).astype(np.float32), tuple(left_out))
