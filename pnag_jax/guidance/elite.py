"""Guidance by iterating on the prior: generate, score, refit the code prior on the elite.

The stage-1 code prior (one categorical per MSQ token) is the search distribution of a
cross-entropy method. Each round:

  pool    `pool` draws from the sampler under the current code prior, passed as the
          condition of the one compiled sampler (`GivenCodesPrior`: no recompile);
  keep    strictly valid, never scored before (one per isomorphism class), every
          constraint met: all free, no objective call;
  score   the first `batch` kept, in draw order; these are the objective calls;
  refit   the code prior towards the token frequencies of the best `elite` archs
          scored so far (their stage-1 encodings):
            probs <- (1 - rate) * probs + rate * freq(elite),
          then `floor` of the stage-1 prior mixed back in, so no code dies for good.

The objective is a black box called on batches (OFA's predictor, a surrogate, a
measurement); constraints are cheap functions (latency tables, parameter counts), so
infeasible archs are never scored. Stops when the call budget is spent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.generation.fitted import encode_tokens, fitted_priors
from pnag_jax.generation.priors import GivenCodesPrior, alias_tables
from pnag_jax.generation.sampler import Sampler, SamplerConfig
from pnag_jax.guidance import rank
from pnag_jax.stages.stage1 import Stage1Run


@dataclasses.dataclass(frozen=True)
class EliteConfig:
  """The search's settings.

  Attributes:
    batch: objective calls per round.
    pool: draws per round (free: the decoder and the constraints only).
    elite: archs the prior is refit on, the best scored so far.
    rate: weight of the elite's token frequencies in each refit.
    floor: weight of the stage-1 prior mixed back into every refit.
    chunk_size: the sampler's chunk (the pool is a whole number of them).
  """

  batch: int = 500
  pool: int = 8192
  elite: int = 50
  rate: float = 0.7
  floor: float = 0.01
  chunk_size: int = 4096

  def __post_init__(self):
    if min(self.batch, self.pool, self.elite, self.chunk_size) < 1:
      raise PnagError("the elite search's batch, pool, elite and chunk size must be >= 1")
    if not (0 < self.rate <= 1 and 0 <= self.floor < 1):
      raise PnagError(f"the elite search needs 0 < rate <= 1 and 0 <= floor < 1, got "
                      f"{self.rate} and {self.floor}")


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """Every arch scored, best first, and how the search got there."""

  genes: np.ndarray          # int32[n, G], best first
  scores: np.ndarray         # float64[n], the objective (higher is better)
  calls: int                 # objective calls made (= n)
  drawn: int                 # archs drawn from the prior
  trace: list[tuple[int, float]]   # (calls so far, best so far) after each round
  seconds: float


def _keys(space, genes: np.ndarray) -> np.ndarray:
  """One bytes-like row per isomorphism class, for set membership."""
  k = np.ascontiguousarray(rank.iso_keys(space, genes))
  return k.view(np.dtype((np.void, k.dtype.itemsize * k.shape[1]))).ravel()


def _token_freq(tokens: np.ndarray, codebook_size: int) -> np.ndarray:
  p = tokens.shape[1]
  counts = np.zeros((p, codebook_size), np.float64)
  np.add.at(counts, (np.broadcast_to(np.arange(p), tokens.shape), tokens), 1.0)
  return counts / tokens.shape[0]


def search(run: Stage1Run, key: jax.Array, objective: Callable[[np.ndarray], np.ndarray],
           feasible: Callable[[np.ndarray], np.ndarray], budget: int,
           cfg: EliteConfig = EliteConfig(), sampler: Sampler | None = None) -> SearchResult:
  """Maximises `objective` over archs with `feasible`, in at most `budget` calls.

  Args:
    run: the stage-1 run whose code prior and decoder generate.
    key: the search's PRNG key; round r draws from `fold_in(key, r)`.
    objective: genes int32[n, G] -> float[n], higher is better (one call per arch).
    feasible: genes -> bool[n], free (never counted).
    budget: objective calls in all.
    cfg: the search's settings.
    sampler: a `GivenCodesPrior` sampler over `run` to reuse (its compile); built if None.

  Raises:
    PnagError: a budget < 1, or no feasible arch in the first rounds' pools.
  """
  if budget < 1:
    raise PnagError(f"--budget must be >= 1 objective call, got {budget}")
  t0 = time.perf_counter()
  space, model = run.space, run.model
  if sampler is None:
    sampler = Sampler.from_run(run, SamplerConfig(chunk_size=cfg.chunk_size),
                               prior=GivenCodesPrior())
  base = np.exp(fitted_priors(run).code_logprobs.astype(np.float64))
  probs = base.copy()
  pool = -(-cfg.pool // sampler.chunk_size) * sampler.chunk_size
  seen: set = set()
  genes_all, scores_all = [], []
  trace: list[tuple[int, float]] = []
  calls = drawn = 0
  r = empty_rounds = 0
  while calls < budget:
    accept, alias = alias_tables(probs)
    cond = sampler.replicate({"accept": accept, "alias": alias})
    gen = sampler.generate(jax.random.fold_in(key, r), pool, cond)
    r += 1
    drawn += pool
    cand = gen.genes[gen.valid]
    if len(cand):
      keys = _keys(space, cand)
      _, first = np.unique(keys, return_index=True)
      first = np.sort(first)
      cand, keys = cand[first], keys[first]
      new = np.fromiter((k not in seen for k in keys.tolist()), bool, len(keys))
      cand, keys = cand[new], keys[new]
    if len(cand):
      ok = np.asarray(feasible(cand), bool)
      cand, keys = cand[ok], keys[ok]
    take = min(cfg.batch, budget - calls, len(cand))
    if take == 0:
      empty_rounds += 1
      if not genes_all and empty_rounds >= 3:
        raise PnagError(f"no feasible arch in {drawn:,} draws from the prior; the "
                        "constraint may be too tight for this model")
      if empty_rounds >= 50:
        break  # the prior has converged onto archs already scored
      # Nothing new: widen the search by mixing more of the stage-1 prior back in.
      probs = 0.5 * probs + 0.5 * base
      continue
    empty_rounds = 0
    cand, keys = cand[:take], keys[:take]
    scores = np.asarray(objective(cand), np.float64)
    calls += take
    seen.update(keys.tolist())
    genes_all.append(cand)
    scores_all.append(scores)
    all_genes, all_scores = np.concatenate(genes_all), np.concatenate(scores_all)
    trace.append((calls, float(all_scores.max())))
    elite = all_genes[np.argsort(-all_scores, kind="stable")[:cfg.elite]]
    freq = _token_freq(encode_tokens(run, elite), model.codebook_size)
    probs = (1 - cfg.rate) * probs + cfg.rate * freq
    probs = (1 - cfg.floor) * probs + cfg.floor * base
  if not genes_all:
    raise PnagError("the search scored nothing")
  all_genes, all_scores = np.concatenate(genes_all), np.concatenate(scores_all)
  order = np.argsort(-all_scores, kind="stable")
  return SearchResult(all_genes[order], all_scores[order], calls, drawn, trace,
                      time.perf_counter() - t0)
