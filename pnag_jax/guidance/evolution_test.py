"""OFA's evolutionary search in JAX: a known optimum, feasibility, determinism."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.guidance import evolution
from pnag_jax.tasks.base import DeviceScore

_CARD = (4,) * 8
_WEIGHTS = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.5], np.float32)


def _weighted(arrays, genes):
  return jnp.asarray(genes, jnp.float32) @ arrays


def _total(arrays, genes):
  del arrays
  return jnp.sum(jnp.asarray(genes, jnp.float32), axis=-1)


def _brute_force_optimum(bound):
  grid = np.array(list(itertools.product(range(4), repeat=8)), np.float32)
  ok = grid.sum(-1) <= bound
  return float((grid[ok] @ _WEIGHTS).max())


OBJECTIVE = DeviceScore(_weighted, jnp.asarray(_WEIGHTS))
CONSTRAINT = DeviceScore(_total, ())
SMALL = evolution.EvolutionConfig(population=100, generations=60, last_gene_mutate_prob=None)


def test_finds_a_knapsack_optimum_and_every_child_is_feasible():
  bound = 9.0
  r = evolution.evolve(jax.random.key(0), _CARD, OBJECTIVE, CONSTRAINT, bound, SMALL)
  best, trace = float(r.best_score), np.asarray(r.trace)
  assert best == pytest.approx(_brute_force_optimum(bound))
  assert trace.shape == (SMALL.generations + 1,)
  assert (np.diff(trace) >= 0).all() and trace[-1] > trace[0] and trace[-1] == best
  assert float(_total((), r.best_genes)) <= bound
  # The population is the parents and the last children: all feasible, all scored.
  pop = np.asarray(r.population)
  assert pop.shape == (SMALL.population + SMALL.num_parents, len(_CARD))
  assert (pop.sum(-1) <= bound).all()
  np.testing.assert_allclose(np.asarray(r.scores), pop @ _WEIGHTS, rtol=1e-6)


def test_deterministic_for_a_key():
  a = evolution.evolve(jax.random.key(5), _CARD, OBJECTIVE, CONSTRAINT, 6.0, SMALL)
  b = evolution.evolve(jax.random.key(5), _CARD, OBJECTIVE, CONSTRAINT, 6.0, SMALL)
  c = evolution.evolve(jax.random.key(6), _CARD, OBJECTIVE, CONSTRAINT, 6.0, SMALL)
  np.testing.assert_array_equal(np.asarray(a.population), np.asarray(b.population))
  assert not np.array_equal(np.asarray(a.population), np.asarray(c.population))


def test_counts_and_settings():
  cfg = evolution.EvolutionConfig()
  assert (cfg.population, cfg.num_parents, cfg.num_mutants, cfg.generations) == (100, 25, 50, 500)
  assert cfg.calls() == 50_100 and cfg.calls(0) == 100
  with pytest.raises(PnagError, match="parent ratio"):
    evolution.EvolutionConfig(parent_ratio=0)


def test_an_infeasible_bound_is_refused_before_searching():
  assert evolution.check_feasible(CONSTRAINT, _CARD, 6.0, key=jax.random.key(0)) > 0
  with pytest.raises(PnagError, match="none of 1,024 random archs meets the bound -1"):
    evolution.check_feasible(CONSTRAINT, _CARD, -1.0, key=jax.random.key(0), draws=1024)


def test_linked_genes_share_their_mutation_coin():
  # MBV3: 20 kernel sizes, then 20 expansions, 5 depths and the resolution. OFA redraws
  # a block's kernel size and expansion together.
  coins = evolution.EvolutionConfig(linked=20).coins(46)
  np.testing.assert_array_equal(coins[:20], coins[20:40])
  assert len(set(coins[40:].tolist())) == 6 and not set(coins[40:]) & set(coins[:20])
  np.testing.assert_array_equal(evolution.EvolutionConfig().coins(8), np.arange(8))
  with pytest.raises(PnagError, match="linked=5 pairs need 10 genes"):
    evolution.EvolutionConfig(linked=5).coins(8)
  # With genes linked in pairs a mutation moves two at once, a coarser step on this toy:
  # the search stays feasible and gets within 2% of the optimum, and it is another search.
  linked = evolution.EvolutionConfig(population=100, generations=60,
                                     last_gene_mutate_prob=None, linked=4)
  r = evolution.evolve(jax.random.key(0), _CARD, OBJECTIVE, CONSTRAINT, 9.0, linked)
  assert float(r.best_score) >= 0.98 * _brute_force_optimum(9.0)
  assert bool(jnp.all(_total((), r.population) <= 9.0))
  plain = evolution.evolve(jax.random.key(0), _CARD, OBJECTIVE, CONSTRAINT, 9.0, SMALL)
  assert not np.array_equal(np.asarray(r.population), np.asarray(plain.population))
