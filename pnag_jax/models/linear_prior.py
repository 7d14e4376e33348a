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

Two hypotheses, where the space has slots that are alike (`SearchSpace.alike_genes`:
NB201's six edges all map C channels to C at one resolution):

  untied   a weight per (gene, choice): the prior above;
  tied     one weight per choice within a group of alike genes, as a cost is when an op
           costs the same in any slot. Its prior is fitted the same way on the choice
           counts and written as a (low-rank) Gaussian over the same one-hot weights.

Each gives a posterior and an evidence on the references, and the prediction is their
evidence-weighted mean (Bayesian model averaging). The tied one has 6 weights in NB201
against 31: 10 references pin it down, so latencies of an unseen device, which depend
only on the op counts (a least-squares fit on them ranks every latency column as well
as the one-hots do), are ranked better; where slots differ (accuracy), the evidence
favours the untied one.

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
#: (mean, cov) keys of each hypothesis a prior may hold, untied first.
HYPOTHESES = (("mean", "cov"), ("tied_mean", "tied_cov"))


def gaussians(prior: dict) -> dict:
  """The prior's (mean, cov) arrays of every hypothesis it holds, by key."""
  return {k: prior[k] for pair in HYPOTHESES for k in pair if k in prior}


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


def tie_map(space: SearchSpace) -> np.ndarray:
  """float32[F, F_tied]: tied weights -> the one-hot weights they stand for.

  The bias stays; within each group of `space.alike_genes`, every gene's one-hot of
  choice c takes the group's weight for c; other genes keep their own one-hots.
  """
  cards = space.gene_cardinalities
  offsets = 1 + np.concatenate([[0], np.cumsum(cards)[:-1]]).astype(int)
  columns = [[0]]                          # lists of one-hot features per tied weight
  grouped = set()
  for group in space.alike_genes:
    if len({cards[g] for g in group}) != 1:
      raise ValueError(f"{space.name}: alike genes {group} must share one cardinality")
    grouped.update(group)
    columns += [[offsets[g] + c for g in group] for c in range(cards[group[0]])]
  columns += [[offsets[g] + c] for g in range(len(cards)) if g not in grouped
              for c in range(cards[g])]
  m = np.zeros((num_features(space), len(columns)), np.float32)
  for j, rows in enumerate(columns):
    m[rows, j] = 1.0
  return m


def fit_prior(space: SearchSpace, tasks: Iterable[tuple[np.ndarray, np.ndarray]]
              ) -> dict[str, np.ndarray]:
  """{"mean": float32[F], "cov": float32[F, F], "tasks": int} from (genes, scores) pairs,
  plus "tied_mean" and "tied_cov" (the tied hypothesis, over the same F one-hot
  weights) where the space has alike genes.

  Each task's scores are standardised over its own rows and fitted by least squares
  (minimum norm where the one-hots are collinear, as they are with the bias); tasks
  with fewer than `MIN_ROWS` rows or no spread are skipped.
  """
  fits = []
  for genes, scores in tasks:
    scores = np.asarray(scores, np.float64)
    if not _usable(scores):
      continue
    x = np.asarray(features(space, np.asarray(genes, np.int32)), np.float64)
    fits.append((x, (scores - scores.mean()) / scores.std()))
  f = num_features(space)
  if len(fits) < 2:
    raise ValueError(f"a linear prior needs at least 2 tasks of >= {MIN_ROWS} archs, "
                     f"got {len(fits)}")

  def gaussian(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fits on the features `x @ m`, as a Gaussian over the one-hot weights."""
    u = np.stack([np.linalg.lstsq(x @ m, z, rcond=None)[0] for x, z in fits])
    return ((m @ u.mean(0)).astype(np.float32),
            (m @ np.cov(u.T) @ m.T + PRIOR_JITTER * np.eye(f)).astype(np.float32))

  out = {"tasks": np.asarray(len(fits), np.int64)}
  out.update(zip(HYPOTHESES[0], gaussian(np.eye(f))))
  if space.alike_genes:
    out.update(zip(HYPOTHESES[1], gaussian(tie_map(space).astype(np.float64))))
  return out


def _log_evidence(c: jax.Array, r: jax.Array) -> jax.Array:
  """log N(r; 0, c) up to a constant shared by every noise level and hypothesis (it
  depends only on how many references there are)."""
  chol = jnp.linalg.cholesky(c)
  a = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
  return -0.5 * a @ a - jnp.log(jnp.diagonal(chol)).sum()


def gaussian_posterior(mean: jax.Array, cov: jax.Array, a: jax.Array, z: jax.Array,
                  m: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(posterior mean weights, chosen noise variance, its log evidence) under one Gaussian
  prior; `a` holds the masked references' features, `m` the mask as 0/1."""
  r = (z - a @ mean) * m
  gram = a @ cov @ a.T

  def covariance(noise):
    return gram + jnp.diag(m * noise + (1.0 - m))

  grid = jnp.asarray(NOISE_GRID, a.dtype)
  evidence = jax.vmap(lambda s: _log_evidence(covariance(s), r))(grid)
  best = jnp.argmax(evidence)
  noise = grid[best]
  return mean + cov @ a.T @ jnp.linalg.solve(covariance(noise), r), noise, evidence[best]


def posterior(prior: dict, feats: jax.Array, z: jax.Array, mask: jax.Array
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(weights float32[F], noise variance, tied share) for one task.

  `feats [K, F]`, standardised scores `z [K]`, `mask bool[K]`. The weights are the
  evidence-weighted mean of each hypothesis' posterior mean (even prior odds); the
  noise is the more probable hypothesis' choice, and the tied share the tied
  hypothesis' posterior probability (0 for a prior without one). Padded rows become rows of zeros with unit variance and zero
  residual: they change neither the evidence nor the fit, so the result is the same
  for any padding.
  """
  k, f = feats.shape
  chex.assert_shape(z, (k,))
  chex.assert_shape(mask, (k,))
  chex.assert_shape(prior["mean"], (f,))
  m = mask.astype(feats.dtype)
  a = feats * m[:, None]
  fits = [gaussian_posterior(prior[mu], prior[c], a, z, m) for mu, c in HYPOTHESES if mu in prior]
  w = jnp.stack([fit[0] for fit in fits])
  noise = jnp.stack([fit[1] for fit in fits])
  # Evidences are log densities of the same references, so they compare directly.
  p = jax.nn.softmax(jnp.stack([fit[2] for fit in fits]))
  tied = p[1] if len(fits) > 1 else jnp.zeros((), feats.dtype)
  return p @ w, noise[jnp.argmax(p)], tied
