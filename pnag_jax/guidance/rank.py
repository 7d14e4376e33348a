"""Guidance by ranking: draw a pool from the stage-1 prior, keep what is new, score, sort.

  pool   M draws through the plug-in sampler (or, for a small space, every arch);
  keep   strictly valid, every constraint met, one per isomorphism class (the first
         drawn that meets them), not a reference;
  rank   the surrogate's predicted score, best first by the task's direction (ties in
         pool order, so the result is a function of the seed alone).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.guidance import constraints as constraints_lib
from pnag_jax.spaces.base import SearchSpace


@dataclasses.dataclass(frozen=True)
class Picks:
  """Ranked candidates and what the pool held on the way."""

  genes: np.ndarray        # int32[k, G], best first
  scores: np.ndarray       # float64[k], predicted, in the task's units
  drawn: int               # archs drawn (or enumerated)
  valid: int               # strictly valid among them
  unique: int              # distinct (isomorphism classes where the space has them)
  candidates: int          # left after references and constraints: all were scored


def draw_pool(sampler, key: jax.Array, num: int, cond=()) -> tuple[np.ndarray, int]:
  """(strictly valid genes in draw order, number drawn) from `num` sampler draws
  (given `cond` where the sampler's prior takes a condition)."""
  keep = []
  for chunk in sampler.iter_chunks(key, num, cond):
    genes, valid = np.asarray(chunk.genes), np.asarray(chunk.valid)
    keep.append(genes[valid])
  return np.concatenate(keep), num


def enumerate_pool(space: SearchSpace) -> tuple[np.ndarray, int]:
  """Every strictly valid arch of an enumerable space, and the space's size."""
  if not space.enumerable:
    raise PnagError(f"--pool all needs an enumerable space; {space.name} has "
                    f"{space.size():.3e} archs (give a number instead)")
  genes = space.enumerate()
  valid = np.asarray(space.strict_valid(*space.encode(genes)))
  return genes[valid], genes.shape[0]


def iso_keys(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
  """uint32[n, key_words]: isomorphism-aware identity of each arch."""
  if not len(genes):
    return np.zeros((0, space.key_words), np.uint32)
  return np.asarray(space.iso_key(genes)).reshape(len(genes), space.key_words)


def _first_rows(keys: np.ndarray) -> np.ndarray:
  _, first = np.unique(keys, axis=0, return_index=True)
  return np.sort(first)


def first_of_each_class(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
  """Row indices of the first arch of each isomorphism class, in pool order."""
  return _first_rows(iso_keys(space, genes))


def candidates(space: SearchSpace, pool: np.ndarray, *, ref_genes: np.ndarray,
               constraints=(), known=None) -> tuple[np.ndarray, int]:
  """(candidates in pool order, distinct archs in the pool) of strictly valid `pool`.

  One arch per class, none a reference's class, every constraint met: the first drawn
  member that meets them. Constraints are checked before classes are merged, since a
  class's members can differ on them (NB201's exact params count the convs of edges
  that a cell's output never reads; its latency tables are per cell).
  """
  keys = iso_keys(space, pool)
  first = _first_rows(keys)
  unique = int(first.shape[0])
  if constraints:
    met = np.flatnonzero(constraints_lib.satisfied(list(constraints), known, space, pool))
    first = met[_first_rows(keys[met])]
  ref_keys = set(map(tuple, iso_keys(space, ref_genes).tolist()))
  keep = np.array([k not in ref_keys for k in map(tuple, keys[first].tolist())], bool)
  return pool[first[keep]], unique


def guided(space: SearchSpace, predictor, pool: np.ndarray, drawn: int, *, k: int,
           minimize: bool, ref_genes: np.ndarray, constraints=(), known=None) -> Picks:
  """Ranks a pool of strictly valid `genes` with a bound surrogate `predictor`."""
  cand, unique = candidates(space, pool, ref_genes=ref_genes, constraints=constraints,
                            known=known)
  scores = predictor.scores(cand) if len(cand) else np.zeros((0,))
  order = np.argsort(scores if minimize else -scores, kind="stable")[:k]
  return Picks(cand[order], scores[order], drawn, int(pool.shape[0]), unique,
               int(cand.shape[0]))
