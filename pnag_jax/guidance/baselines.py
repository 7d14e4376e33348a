"""Baselines for transfer from K measured archs (DESIGN §5), on an enumerable space.

  random_expected_best   random search's expected best of n archs, exactly;
  table_oracle_order     the allowed task whose ranking agrees best with the K
                         references (Spearman), its cells best first: a baseline that
                         sees whole tables, which a new space never has;
  scratch_predictor      the surrogate's architecture trained on the K references
                         alone, with no meta-training: what the meta-learning buys.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from pnag_jax.stages import surrogate as stage


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


def scratch_predictor(cfg: stage.SurrogateConfig, ref_genes: np.ndarray,
                      ref_scores: np.ndarray, *, seed: int, steps: int = 150
                      ) -> stage.Predictor:
  """The surrogate trained from scratch on K references only.

  Episodes take a random non-empty subset of the references as the context and all K
  as queries, the meta-training loss with the references as the only task.
  """
  from pnag_jax.training import surrogate as trainer  # pylint: disable=g-import-not-at-top
  k = len(ref_genes)
  cfg = stage.SurrogateConfig(**{**cfg.__dict__, "seed": seed, "k_min": 1, "k_max": k,
                                 "queries": k, "episodes": 8, "steps": steps,
                                 "warmup_steps": 10, "exclude": (), "ema_decay": 0.0})
  model, params = stage.init(cfg)
  loss = trainer.LossSettings.of(cfg)
  opt = trainer.OptimizerSettings.of(cfg)
  state = trainer.init_state(params, opt)
  genes = np.asarray(ref_genes, np.int32)
  scores = np.asarray(ref_scores, np.float32)
  rng = np.random.default_rng([seed, 13, k])
  for _ in range(steps):
    ctx = np.stack([rng.permutation(k) for _ in range(cfg.episodes)])
    take = np.concatenate([ctx, np.tile(np.arange(k), (cfg.episodes, 1))], 1)
    sizes = rng.integers(1, k + 1, cfg.episodes)
    mask = np.arange(k)[None, :] < sizes[:, None]
    state, _ = trainer.train_step(state, genes[take], scores[take], mask, model=model,
                                  loss=loss, opt=opt)
  return stage.predictor(model, state["ema"], genes, scores)
