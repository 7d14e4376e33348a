"""Baselines for transfer from K measured archs (DESIGN §5), on an enumerable space.

  random_expected_best   random search's expected best of n archs, exactly;
  table_oracle_order     the allowed task whose ranking agrees best with the K
                         references (Spearman), its cells best first: a baseline that
                         sees whole tables, which a new space never has.

The from-scratch surrogate (no meta-training: what the meta-learning buys) is
`adapt.scratch_predictor`, the adaptation loop run from random init.
"""

from __future__ import annotations

import numpy as np
import scipy.stats



def random_expected_best(values: np.ndarray, n: int, *, maximize: bool = True) -> float:
  """E[best of n archs drawn uniformly with replacement from `values`]."""
  v = np.sort(np.asarray(values, np.float64))
  if not maximize:
    v = -v[::-1]
  m = v.size
  cdf = (np.arange(1, m + 1) / m) ** n
  p = np.diff(np.concatenate([[0.0], cdf]))
  best = float(np.sum(p * v))
  return best if maximize else -best


def random_median_to_optimum(values: np.ndarray, *, maximize: bool = True,
                             cap: int = 100) -> int:
  """Median number of uniform draws until one hits the optimum (ties count), capped."""
  v = np.asarray(values, np.float64)
  p = np.mean(v == (v.max() if maximize else v.min()))
  median = int(np.ceil(np.log(0.5) / np.log1p(-p)))
  return min(median, cap)


def table_oracle_order(tables: dict[str, np.ndarray], ref_rows: np.ndarray,
                       ref_scores: np.ndarray, *, maximize: bool = True
                       ) -> tuple[str, np.ndarray]:
  """(chosen task, every row best first by it).

  Args:
    tables: allowed task name -> float[size] over the space's rows, oriented so that
      higher is better for that task (latency negated); NaN where the task has no
      value (such tasks are skipped if a reference has none).
    ref_rows, ref_scores: the K references.
  """
  target = np.asarray(ref_scores, np.float64) * (1 if maximize else -1)
  best_name, best_rho = None, -np.inf
  for name in sorted(tables):
    col = tables[name]
    at_refs = col[ref_rows]
    if np.isnan(at_refs).any() or np.isnan(col).mean() > 0.5:
      continue
    if len(ref_rows) < 2 or np.ptp(at_refs) == 0 or np.ptp(target) == 0:
      rho = 0.0
    else:
      rho = scipy.stats.spearmanr(at_refs, target).statistic
    if rho > best_rho:
      best_name, best_rho = name, rho
  col = np.nan_to_num(tables[best_name], nan=-np.inf)
  return best_name, np.argsort(-col, kind="stable")
