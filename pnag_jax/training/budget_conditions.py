"""Training pairs of stage 2's budget condition: (arch, its exact counts).

Every training and held-out arch of stage 1's split is counted once per run
(`tasks.costs`: parameters and multiply-adds of its paper-size network). Each count's
log is scaled to [0, 1] over the training archs' range, which the checkpoint records
and inference checks budgets against. A training pair gives the model a random
non-empty subset of the counts (each with a "given" flag), so one model serves
`--params` alone, `--flops` alone, or both; see `draw`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.stages import stage2
from pnag_jax.stages.stage1 import Stage1Run
from pnag_jax.stages.stage2 import Stage2Config
from pnag_jax.tasks import costs

_COUNTS = {"params": costs.params_of, "flops": costs.flops_of}


class BudgetConditions(NamedTuple):
  keys: tuple[str, ...]            # the counts, in condition order
  train: np.ndarray                # float32[N_train, C], scaled logs
  heldout: np.ndarray              # float32[N_heldout, C], clipped to [0, 1]
  budget_range: dict               # {count: [lo, hi]} over the training archs

  def heldout_conditions(self) -> np.ndarray:
    """float32[N_heldout, 2C]: every count given, at the arch's own value."""
    return np.concatenate([np.ones_like(self.heldout), self.heldout], -1)


def check_space(cfg: Stage2Config, space) -> None:
  """Refuses, before anything is built, budgets whose counts are not formulas here."""
  slow = [k for k in cfg.budget_keys if not costs.counted_quickly(space, k)]
  if slow:
    fast = [k for k in stage2.BUDGETS if costs.counted_quickly(space, k)]
    raise PnagError(
        f"the budget condition counts every training arch, and {space.name}'s "
        f"{' and '.join(slow)} take an abstract network build per arch; "
        + (f"use --set budgets={','.join(fast)}" if fast else
           f"no count of {space.name} is a formula yet"))


def build(cfg: Stage2Config, run1: Stage1Run, train_genes: np.ndarray,
          heldout_genes: np.ndarray) -> BudgetConditions:
  space = run1.space
  keys = cfg.budget_keys
  check_space(cfg, space)
  train_cols, held_cols, budget_range = [], [], {}
  for k in keys:
    tr = _COUNTS[k](space, train_genes)
    ho = _COUNTS[k](space, heldout_genes)
    lo, hi = float(tr.min()), float(tr.max())
    if not 0 < lo < hi:
      raise PnagError(f"{space.name}'s training archs have {k} from {lo:g} to {hi:g}; "
                      "a budget needs a positive range")
    budget_range[k] = [lo, hi]
    train_cols.append(stage2.scale_budget(tr, lo, hi))
    held_cols.append(np.clip(stage2.scale_budget(ho, lo, hi), 0.0, 1.0))
  return BudgetConditions(keys, np.stack(train_cols, -1), np.stack(held_cols, -1),
                          budget_range)


def draw(values: jax.Array, idx: jax.Array, key: jax.Array) -> jax.Array:
  """float32[B, 2C]: C "given" flags, then the counts `values[idx]` of each training
  arch where given (0 elsewhere), over a uniformly drawn non-empty subset of the C
  counts (`stage2.budget_condition`'s layout)."""
  v = values[idx]
  n, c = v.shape
  subset = jax.random.randint(key, (n,), 1, 2 ** c)
  given = ((subset[:, None] >> jnp.arange(c)) & 1).astype(v.dtype)
  return jnp.concatenate([given, v * given], -1)
