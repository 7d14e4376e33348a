"""Once-for-All's evolutionary search, reimplemented from its description, in JAX.

OFA's `EvolutionFinder` (`ofa/nas/search_algorithm`, with `MobileNetArchEncoder`'s
mutation) picks a subnet under a latency budget with this loop (population 100, parent
ratio 0.25, mutation probability 0.1, resolution mutation probability 0.5, mutation
ratio 0.5, 500 generations):

  init     100 random subnets, each redrawn until it meets the constraint; score all;
  repeat   parents = the best 25 of the population;
           50 children by mutation: a random parent; each block's kernel size and
             expansion redrawn together with probability 0.1, each stage's depth with
             0.1, the resolution with 0.5; redone until feasible;
           50 by crossover: two random parents, each gene from either, redone until
             feasible;
           score the 100 children; population = parents + children.

(The tutorial's copy, `ofa/tutorial/evolution_finder.py`, mutates the resolution with
0.1; `EvolutionConfig.last_gene_mutate_prob` sets it.)

Every gene is drawn uniformly from its choices (OFA samples depths uniformly too, not
by the number of networks of each depth). The loop is one `lax.scan` over
generations; each "redo until feasible" is a `lax.while_loop` that redraws only the
children still infeasible, so the whole search is one compiled call. The objective and
the constraint are `DeviceScore`s, pure functions of the genes with their arrays as
jit arguments (`ofa_acc` and `note10_latency` for MBV3), so the search runs on the
accelerator. Predictor calls are counted as OFA makes them: the 100 of the initial
population, then 100 per generation (children only).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.tasks.base import DeviceScore


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
  """OFA's defaults; `mutate_prob` per gene, `last_gene_mutate_prob` for OFA's
  resolution (the last gene of `mbv3_r`; None: the same as the others).

  `linked` pairs genes i and linked + i for i < linked, which then mutate on one coin:
  OFA redraws a block's kernel size and expansion together, and MBV3's genes hold the
  20 kernel sizes, then the 20 expansions (`linked=20`). 0 links none.
  """

  population: int = 100
  parent_ratio: float = 0.25
  mutation_ratio: float = 0.5
  mutate_prob: float = 0.1
  last_gene_mutate_prob: float | None = 0.5
  generations: int = 500
  linked: int = 0

  def __post_init__(self):
    if self.population < 2 or self.generations < 0:
      raise PnagError(f"evolution needs a population >= 2 and generations >= 0, got "
                      f"{self.population} and {self.generations}")
    if not (0 < self.parent_ratio <= 1 and 0 <= self.mutation_ratio <= 1):
      raise PnagError("evolution's parent ratio must be in (0, 1] and its mutation ratio "
                      "in [0, 1]")
    if self.linked < 0:
      raise PnagError(f"linked must be >= 0, got {self.linked}")

  def coins(self, num_genes: int) -> np.ndarray:
    """int[G]: the mutation coin each gene reads (linked genes share their pair's)."""
    if 2 * self.linked > num_genes:
      raise PnagError(f"linked={self.linked} pairs need {2 * self.linked} genes, the space "
                      f"has {num_genes}")
    coin = np.arange(num_genes)
    coin[self.linked:2 * self.linked] = np.arange(self.linked)
    return coin

  @property
  def num_parents(self) -> int:
    return max(1, int(round(self.parent_ratio * self.population)))

  @property
  def num_mutants(self) -> int:
    return int(round(self.mutation_ratio * self.population))

  def calls(self, generations: int | None = None) -> int:
    """Objective evaluations after `generations` (default: all of them)."""
    g = self.generations if generations is None else generations
    return self.population * (1 + g)


class EvolutionResult(NamedTuple):
  """Device arrays of one search."""

  best_genes: jax.Array     # int32[G]: the best feasible subnet scored
  best_score: jax.Array     # float32[]
  trace: jax.Array          # float32[generations + 1]: best so far after each batch
  population: jax.Array     # int32[P + parents, G] of the last generation
  scores: jax.Array         # float32[P + parents]


def _uniform_genes(key: jax.Array, shape: tuple[int, ...], card: jax.Array) -> jax.Array:
  u = jax.random.uniform(key, shape + card.shape)
  return jnp.minimum((u * card).astype(jnp.int32), card - 1)


def _until_feasible(key, propose, feasible):
  """`propose(key) -> genes [n, G]`, redone for the rows still infeasible."""
  k0, key = jax.random.split(key)
  genes = propose(k0)

  def body(state):
    key, genes, ok = state
    key, k = jax.random.split(key)
    genes = jnp.where(ok[:, None], genes, propose(k))
    return key, genes, feasible(genes)

  _, genes, _ = jax.lax.while_loop(lambda s: ~jnp.all(s[2]), body,
                                   (key, genes, feasible(genes)))
  return genes


@functools.partial(jax.jit, static_argnames=("cfg", "card", "objective_fn", "constraint_fn"))
def _search(key, objective_arrays, constraint_arrays, bound, *, cfg: EvolutionConfig,
            card: tuple[int, ...], objective_fn, constraint_fn) -> EvolutionResult:
  cards = jnp.asarray(card, jnp.int32)
  g = len(card)
  p, n_par, n_mut = cfg.population, cfg.num_parents, cfg.num_mutants
  probs = jnp.full((g,), cfg.mutate_prob, jnp.float32)
  coins = jnp.asarray(cfg.coins(g))
  if cfg.last_gene_mutate_prob is not None:
    probs = probs.at[-1].set(cfg.last_gene_mutate_prob)

  def score(genes):
    return objective_fn(objective_arrays, genes)

  def feasible(genes):
    return constraint_fn(constraint_arrays, genes) <= bound

  k_init, k_gens = jax.random.split(key)
  init = _until_feasible(k_init, lambda k: _uniform_genes(k, (p,), cards), feasible)
  init_scores = score(init)
  # The population holds parents + children (P + n_par rows); before the first
  # generation only P are real, so the rest score -inf and are never parents.
  pop = jnp.concatenate([init, jnp.zeros((n_par, g), jnp.int32)])
  pop_scores = jnp.concatenate([init_scores, jnp.full((n_par,), -jnp.inf)])

  def generation(state, key):
    pop, pop_scores, best = state
    top_scores, top = jax.lax.top_k(pop_scores, n_par)
    parents = pop[top]
    k_pick, k_mut, k_a, k_b, k_cross = jax.random.split(key, 5)
    which = jax.random.randint(k_pick, (n_mut,), 0, n_par)

    def mutate(k):
      k_u, k_new = jax.random.split(k)
      redraw = jax.random.uniform(k_u, (n_mut, g))[:, coins] < probs
      return jnp.where(redraw, _uniform_genes(k_new, (n_mut,), cards), parents[which])

    n_cross = p - n_mut
    a = parents[jax.random.randint(k_a, (n_cross,), 0, n_par)]
    b = parents[jax.random.randint(k_b, (n_cross,), 0, n_par)]

    def cross(k):
      return jnp.where(jax.random.bernoulli(k, 0.5, (n_cross, g)), a, b)

    children = jnp.concatenate([_until_feasible(k_mut, mutate, feasible),
                                _until_feasible(k_cross, cross, feasible)])
    child_scores = score(children)
    best = jnp.maximum(best, jnp.max(child_scores))
    return (jnp.concatenate([parents, children]),
            jnp.concatenate([top_scores, child_scores]), best), best

  best0 = jnp.max(init_scores)
  (pop, pop_scores, _), trace = jax.lax.scan(
      generation, (pop, pop_scores, best0), jax.random.split(k_gens, cfg.generations))
  # Parents carry their scores over, so the population holds the best scored so far.
  i = jnp.argmax(pop_scores)
  return EvolutionResult(pop[i], pop_scores[i], jnp.concatenate([best0[None], trace]),
                         pop, pop_scores)


def evolve(key: jax.Array, cardinalities, objective: DeviceScore, constraint: DeviceScore,
           bound: float, cfg: EvolutionConfig = EvolutionConfig()) -> EvolutionResult:
  """OFA's evolutionary search: maximise `objective` subject to `constraint <= bound`.

  Call `check_feasible` first: with no feasible arch the redraw loops never end.
  """
  card = tuple(int(c) for c in cardinalities)
  return _search(key, objective.arrays, constraint.arrays, jnp.float32(bound), cfg=cfg,
                 card=card, objective_fn=objective.fn, constraint_fn=constraint.fn)


def check_feasible(constraint: DeviceScore, cardinalities, bound: float, *,
                   key: jax.Array, draws: int = 65_536) -> float:
  """The fraction of uniform random archs within `bound`; raises when it is 0, since
  a search that must redraw until feasible would then never end.

  Raises:
    PnagError: no draw meets the bound.
  """
  cards = jnp.asarray(tuple(int(c) for c in cardinalities), jnp.int32)
  genes = _uniform_genes(key, (draws,), cards)
  frac = float(np.mean(np.asarray(constraint(genes)) <= bound))
  if frac == 0:
    raise PnagError(f"none of {draws:,} random archs meets the bound {bound:g}; the "
                    "constraint is infeasible or too tight to search from random archs")
  return frac


def compiled(cardinalities, objective: DeviceScore, constraint: DeviceScore,
             cfg: EvolutionConfig = EvolutionConfig()):
  """(run(key, bound) -> EvolutionResult, compile seconds): the search compiled ahead of
  time, so benchmarks time compilation apart from the runs, which share it."""
  card = tuple(int(c) for c in cardinalities)
  t0 = time.perf_counter()
  exe = _search.lower(jax.random.key(0), objective.arrays, constraint.arrays,
                      jnp.float32(0), cfg=cfg, card=card, objective_fn=objective.fn,
                      constraint_fn=constraint.fn).compile()
  seconds = time.perf_counter() - t0

  def run(key: jax.Array, bound: float) -> EvolutionResult:
    return exe(key, objective.arrays, constraint.arrays, jnp.float32(bound))

  return run, seconds
