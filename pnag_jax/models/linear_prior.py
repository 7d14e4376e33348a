"""A meta-learned Bayesian linear model of a task over the arch's one-hot choices.

Costs are close to additive over an arch's choices: on NB201 a least-squares fit on the
30 one-hot edge ops ranks every one of the 19 latency columns at Spearman >= 0.92 over
the 6,466 classes. K = 10 references cannot pin down 31 weights alone, but the seen
tasks can say which weight vectors are plausible: the prior over weights is the mean
and covariance of the training tasks' full-table fits (empirical Bayes, as in
multi-task Bayesian linear regression), and each new task's weights are the posterior
mean given its references. The noise level is chosen per task by the references'
marginal likelihood over a fixed grid (type-II maximum likelihood), so a task that the
linear model explains closely is fitted closely.

Scores are standardised within each task, as everywhere in the surrogate: the prior is
over weights in standard deviations, and callers un-standardise with the references'
mean and std.
"""

from __future__ import annotations

from collections.abc import Iterable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.spaces.base import SearchSpace

#: Observation noise variances (in squared standard deviations) tried per task.
NOISE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
#: Added to the prior covariance's diagonal: a direction no training task used keeps a
#: little freedom, and the K x K solves stay well conditioned.
PRIOR_JITTER = 1e-4
#: A task is fitted on at least this many archs (below it, its fit is mostly noise).
MIN_ROWS = 50


def num_features(space: SearchSpace) -> int:
  return 1 + int(sum(space.gene_cardinalities))


def features(space: SearchSpace, genes: jax.Array) -> jax.Array:
  """Genes int[n, G] -> float32[n, 1 + sum(cardinalities)]: a bias, then one-hots."""
  genes = jnp.asarray(genes)
  parts = [jnp.ones((genes.shape[0], 1), jnp.float32)]
  parts += [jax.nn.one_hot(genes[:, g], c, dtype=jnp.float32)
            for g, c in enumerate(space.gene_cardinalities)]
  return jnp.concatenate(parts, -1)


def _usable(scores) -> bool:
  scores = np.asarray(scores)
  return scores.shape[0] >= MIN_ROWS and bool(scores.std() > 0)


def usable_tasks(tasks: Iterable[tuple[np.ndarray, np.ndarray]]) -> int:
  """How many of `tasks` a prior would be fitted on."""
  return sum(_usable(scores) for _, scores in tasks)


def fit_prior(space: SearchSpace, tasks: Iterable[tuple[np.ndarray, np.ndarray]]
              ) -> dict[str, np.ndarray]:
  """{"mean": float32[F], "cov": float32[F, F], "tasks": int} from (genes, scores) pairs.

  Each task's scores are standardised over its own rows and fitted by least squares
  (minimum norm where the one-hots are collinear, as they are with the bias); tasks
  with fewer than `MIN_ROWS` rows or no spread are skipped.
  """
  weights = []
  for genes, scores in tasks:
    scores = np.asarray(scores, np.float64)
    if not _usable(scores):
      continue
    x = np.asarray(features(space, np.asarray(genes, np.int32)), np.float64)
    z = (scores - scores.mean()) / scores.std()
    weights.append(np.linalg.lstsq(x, z, rcond=None)[0])
  f = num_features(space)
  if len(weights) < 2:
    raise ValueError(f"a linear prior needs at least 2 tasks of >= {MIN_ROWS} archs, "
                     f"got {len(weights)}")
  w = np.stack(weights)
  cov = np.cov(w.T) + PRIOR_JITTER * np.eye(f)
  return {"mean": w.mean(0).astype(np.float32), "cov": cov.astype(np.float32),
          "tasks": np.asarray(len(weights), np.int64)}


def _log_evidence(c: jax.Array, r: jax.Array) -> jax.Array:
  """log N(r; 0, c) up to a constant shared by every noise level."""
  chol = jnp.linalg.cholesky(c)
  a = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
  return -0.5 * a @ a - jnp.log(jnp.diagonal(chol)).sum()


def posterior(prior: dict, feats: jax.Array, z: jax.Array, mask: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """(posterior mean weights float32[F], chosen noise variance) for one task.

  `feats [K, F]`, standardised scores `z [K]`, `mask bool[K]`. Padded rows become
  rows of zeros with unit variance and zero residual: they change neither the
  evidence nor the fit, so the result is the same for any padding.
  """
  k, f = feats.shape
  chex.assert_shape(z, (k,))
  chex.assert_shape(mask, (k,))
  mean, cov = prior["mean"], prior["cov"]
  chex.assert_shape(mean, (f,))
  m = mask.astype(feats.dtype)
  a = feats * m[:, None]
  r = (z - a @ mean) * m
  gram = a @ cov @ a.T

  def covariance(noise):
    return gram + jnp.diag(m * noise + (1.0 - m))

  grid = jnp.asarray(NOISE_GRID, feats.dtype)
  evidence = jax.vmap(lambda s: _log_evidence(covariance(s), r))(grid)
  noise = grid[jnp.argmax(evidence)]
  w = mean + cov @ a.T @ jnp.linalg.solve(covariance(noise), r)
  return w, noise
