"""Objective-guided generation: a generated pool, then rounds of generate, rank, score, refit.

  round 1   `pool` draws from the stage-1 sampler (the code prior and the decoder);
  later     `pool` draws from the search distribution, one categorical per gene (the
            space's own integer form), uniform at first and refit on the elite each
            round, as in the cross-entropy method:
              probs <- (1 - rate) * probs + rate * freq(elite), then `floor` uniform;
  keep      strictly valid, never scored before (one per isomorphism class), every
            constraint met: all free, no objective call;
  rank      by a ridge regression on the dense graph (one-hot node ops, and edges where
            the space has more than one adjacency) fitted to every arch scored so far,
            free too; `explore` of each batch is picked at random instead (all of
            round one's);
  score     the `batch` picked: these, and only these, are the objective calls;
  elite     the best `elite` archs scored so far;
  polish    the last `polish` share of the budget draws its pools as neighbours of the
            elite instead (1 .. `polish_genes` genes changed), still ranked by the
            proxy: the cross-entropy rounds find the basin, these steps its floor.

The objective is a black box called on batches (OFA's predictor, a surrogate, a
measurement); constraints are cheap functions (latency tables, parameter counts), so
infeasible archs are never scored.

What was measured before settling on this (MBV3 with its resolution, OFA's predictor
under 25 ms on a Note10, 10,000 calls; the OFA evolution's 50,100 calls reach
0.8197-0.8205 there):

* refitting the stage-1 code prior itself (its per-token categoricals, on the
  elite's encodings) plateaus at 0.808-0.811, and a mixture around the elite's codes
  does no better: the decoder is robust by design, so redrawing up to 10% of an
  arch's 1,183 codes almost always decodes to the same arch, and the code space has
  no small steps to take;
* starting the per-gene categoricals from the stage-1 draws' marginals rather than
  uniform, or adding mutants of the elite to every round's pool, converged to a worse
  local optimum in more seeds (mutants in every round reached the 40 ms optimum that
  the others missed in one seed, but lost at 25 ms in all three); neighbours of the
  elite in the last 30% of the calls only (`polish`) raised the best in 5 of 7 runs
  at 30-40 ms and changed none of 3 at 25 ms.

So the stage-1 model generates the first pool, and the search distribution over genes
takes it from there.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import numpy as np

from pnag_jax import padding
from pnag_jax.errors import PnagError
from pnag_jax.generation.sampler import Sampler, SamplerConfig
from pnag_jax.stages.stage1 import Stage1Run


@dataclasses.dataclass(frozen=True)
class EliteConfig:
  """The search's settings.

  Attributes:
    batch: objective calls per round.
    pool: draws per round (free: generation and the constraints only).
    elite: archs the search distribution is refit on, the best scored so far.
    rate: weight of the elite's gene frequencies in each refit.
    floor: weight of the uniform distribution mixed into every refit.
    explore: share of each batch picked at random rather than by the ridge proxy.
    ridge: the proxy's L2 penalty.
    polish: the last share of the budget, whose pools are the elite's neighbours.
    polish_genes: a neighbour differs from its elite arch in 1 .. this many genes.
    chunk_size: the stage-1 sampler's chunk (round one's pool is whole chunks).
  """

  batch: int = 250
  pool: int = 8192
  elite: int = 50
  rate: float = 0.3
  floor: float = 0.01
  explore: float = 0.1
  ridge: float = 1.0
  polish: float = 0.3
  polish_genes: int = 2
  chunk_size: int = 8192

  def __post_init__(self):
    if min(self.batch, self.pool, self.elite, self.chunk_size, self.polish_genes) < 1:
      raise PnagError("the guided search's batch, pool, elite and chunk size must be >= 1")
    if not (0 < self.rate <= 1 and 0 <= self.floor < 1 and 0 <= self.explore <= 1
            and self.ridge > 0 and 0 <= self.polish < 1):
      raise PnagError("the guided search needs 0 < rate <= 1, 0 <= floor < 1, "
                      "0 <= explore <= 1, ridge > 0 and 0 <= polish < 1")


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """Every arch scored, best first, and how the search got there."""

  genes: np.ndarray          # int32[n, G], best first
  scores: np.ndarray         # float64[n], the objective (higher is better)
  calls: int                 # objective calls made (= n)
  drawn: int                 # archs generated
  trace: list[tuple[int, float, float]]   # (calls, best, seconds) so far, by round
  seconds: float


# Functions of (space, genes) that the search runs on every round's candidates.
def _encode(space, genes):
  return space.encode(genes)


def _iso_key(space, genes):
  return space.iso_key(genes)


def _strict_valid(space, genes):
  return space.strict_valid(*space.encode(genes))


@functools.lru_cache(maxsize=None)
def _jitted(space, fn):
  """`fn` bound to `space`, compiled once per (space, fn)."""
  return jax.jit(functools.partial(fn, space))


def _batched(space, fn, genes: np.ndarray):
  """`fn(space, genes)` on the host, padded to a power of two of at least 1,024 so
  that a few compiled shapes serve every call (candidate counts vary by round)."""
  genes = np.asarray(genes, np.int32)
  padded = padding.pad_rows(genes, minimum=1024)
  return jax.tree.map(lambda a: np.asarray(a)[:len(genes)],
                      jax.device_get(_jitted(space, fn)(padded)))


def strictly_valid(space, genes: np.ndarray) -> np.ndarray:
  """bool[n]: strict validity of genes, through one compiled function per space."""
  return _batched(space, _strict_valid, genes)


def features(space, genes: np.ndarray) -> np.ndarray:
  """float32[n, F]: the dense graph one-hot, the proxy's inputs (any space)."""
  n = len(genes)
  ops, adj = _batched(space, _encode, genes)
  x = np.eye(space.num_ops, dtype=np.float32)[ops].reshape(n, -1)
  if not space.fixed_adjacency:
    x = np.concatenate([x, adj.reshape(n, -1).astype(np.float32)], axis=1)
  return x


class RidgeProxy:
  """Ridge regression on `features`; refit on every arch scored so far."""

  def __init__(self, space, penalty: float):
    self.space, self.penalty = space, penalty
    self.w, self.b = None, 0.0

  def fit(self, genes: np.ndarray, scores: np.ndarray) -> None:
    x = features(self.space, genes).astype(np.float64)
    mx, my = x.mean(0), scores.mean()
    xc = x - mx
    self.w = np.linalg.solve(xc.T @ xc + self.penalty * np.eye(x.shape[1]),
                             xc.T @ (scores - my))
    self.b = my - mx @ self.w

  def __call__(self, genes: np.ndarray) -> np.ndarray:
    return features(self.space, genes).astype(np.float64) @ self.w + self.b


class GeneMarginals:
  """One categorical per gene; `draw` samples them, `refit` moves them."""

  def __init__(self, cardinalities, floor: float):
    self.card = np.asarray(cardinalities)
    self.floor = floor
    self.probs = [np.full(c, 1.0 / c) for c in self.card]

  def _freq(self, genes: np.ndarray, i: int) -> np.ndarray:
    return np.bincount(genes[:, i], minlength=self.card[i]) / len(genes)

  def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.random((n, len(self.card)))
    out = np.empty((n, len(self.card)), np.int32)
    for i, p in enumerate(self.probs):
      out[:, i] = np.minimum(np.searchsorted(np.cumsum(p), u[:, i], side="right"),
                             len(p) - 1)
    return out

  def neighbours(self, rng: np.random.Generator, parents: np.ndarray, n: int,
                 most: int) -> np.ndarray:
    """`n` random parents with 1 .. `most` genes each set to another value."""
    out = parents[rng.integers(0, len(parents), n)].copy()
    k = rng.integers(1, most + 1, n)
    which = np.argsort(rng.random((n, len(self.card))), axis=1)[:, :most]  # distinct genes
    for j in range(most):
      rows = np.flatnonzero(k > j)
      genes = which[rows, j]
      shift = 1 + (rng.random(len(rows)) * (self.card[genes] - 1)).astype(np.int32)
      out[rows, genes] = (out[rows, genes] + shift) % self.card[genes]
    return out

  def refit(self, elite: np.ndarray, rate: float) -> None:
    for i, c in enumerate(self.card):
      p = (1 - rate) * self.probs[i] + rate * self._freq(elite, i)
      self.probs[i] = (1 - self.floor) * p + self.floor / c


def _keys(space, genes: np.ndarray) -> np.ndarray:
  """One hashable row per isomorphism class."""
  k = np.ascontiguousarray(_batched(space, _iso_key, genes).reshape(len(genes), -1))
  return k.view(np.dtype((np.void, k.dtype.itemsize * k.shape[1]))).ravel()


def make_sampler(run: Stage1Run, cfg: EliteConfig = EliteConfig()) -> Sampler:
  """Round one's sampler (the code prior); build once to reuse its compile."""
  return Sampler.from_run(run, SamplerConfig(chunk_size=cfg.chunk_size).for_num(cfg.pool))


def search(run: Stage1Run, key: jax.Array, objective: Callable[[np.ndarray], np.ndarray],
           feasible: Callable[[np.ndarray], np.ndarray], budget: int,
           cfg: EliteConfig = EliteConfig(), sampler: Sampler | None = None) -> SearchResult:
  """Maximises `objective` over archs with `feasible`, in at most `budget` calls.

  Args:
    run: the stage-1 run that generates round one's pool.
    key: the search's PRNG key (the sampler's stream, and the host RNG's seed).
    objective: genes int32[n, G] -> float[n], higher is better (one call per arch).
    feasible: genes -> bool[n], free (never counted).
    budget: objective calls in all.
    cfg: the search's settings.
    sampler: `make_sampler(run, cfg)`, to reuse its compile; built if None.

  Raises:
    PnagError: a budget < 1, or no feasible arch in the first rounds' pools.
  """
  if budget < 1:
    raise PnagError(f"--budget must be >= 1 objective call, got {budget}")
  t0 = time.perf_counter()
  space = run.space
  sampler = sampler or make_sampler(run, cfg)
  proxy = RidgeProxy(space, cfg.ridge)
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  dist, elite_genes = None, None
  seen: set = set()
  genes_all, scores_all = [], []
  trace: list[tuple[int, float, float]] = []
  calls = drawn = rounds = empty = 0
  while calls < budget:
    if dist is None:
      gen = sampler.generate(jax.random.fold_in(key, rounds), cfg.pool)
      cand = gen.genes[gen.valid]
    else:
      if calls >= (1 - cfg.polish) * budget:
        draws = dist.neighbours(rng, elite_genes, cfg.pool, cfg.polish_genes)
      else:
        draws = dist.draw(rng, cfg.pool)
      cand = np.asarray(space.canonicalize(draws))
      cand = cand[strictly_valid(space, cand)]
    rounds += 1
    drawn += cfg.pool
    if len(cand):
      # Before classes are merged: a class's members can differ on a constraint (NB201's
      # params count dead convs), and round one's draws are not canonical.
      cand = cand[np.asarray(feasible(cand), bool)]
    if len(cand):
      keys = _keys(space, cand)
      _, first = np.unique(keys, return_index=True)
      first = np.sort(first)
      new = np.fromiter((k not in seen for k in keys[first].tolist()), bool, len(first))
      cand, keys = cand[first[new]], keys[first[new]]
    dist = dist or GeneMarginals(space.gene_cardinalities, cfg.floor)
    take = min(cfg.batch, budget - calls, len(cand))
    if take == 0:
      empty += 1
      if not genes_all and empty >= 20:
        raise PnagError(f"no feasible arch in {drawn:,} draws; the constraint may be "
                        "too tight for this space")
      if empty >= 50:
        break  # the distribution has converged onto archs already scored
      continue
    empty = 0
    if genes_all and take < len(cand):
      n_proxy = take - int(round(cfg.explore * take))
      order = np.argsort(-proxy(cand), kind="stable")
      pick = np.concatenate([order[:n_proxy],
                             rng.choice(order[n_proxy:], take - n_proxy, replace=False)])
    else:
      pick = rng.choice(len(cand), take, replace=False)
    cand, keys = cand[pick], keys[pick]
    scores = np.asarray(objective(cand), np.float64)
    calls += take
    seen.update(keys.tolist())
    genes_all.append(cand)
    scores_all.append(scores)
    all_genes, all_scores = np.concatenate(genes_all), np.concatenate(scores_all)
    trace.append((calls, float(all_scores.max()), time.perf_counter() - t0))
    proxy.fit(all_genes, all_scores)
    elite_genes = all_genes[np.argsort(-all_scores, kind="stable")[:cfg.elite]]
    dist.refit(elite_genes, cfg.rate)
  all_genes, all_scores = np.concatenate(genes_all), np.concatenate(scores_all)
  order = np.argsort(-all_scores, kind="stable")
  return SearchResult(all_genes[order], all_scores[order], calls, drawn, trace,
                      time.perf_counter() - t0)
