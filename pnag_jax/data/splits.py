"""Seeded train / held-out splits of a space's architectures (DESIGN §3, §6).

Enumerable spaces (NB201's 15,625 cells) are split in two halves by a seeded
permutation: the held-out half measures reconstruction, and novelty counts generated
archs outside the training half. The others (MBV3, DARTS, AutoFormer) are sampled
uniformly: `train_size` distinct archs to train on and `heldout_size` others.
"""

from __future__ import annotations

import jax
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.spaces import nb201 as nb201_space
from pnag_jax.spaces.base import SearchSpace

#: Salt of the sampling key, so the split's draws share no stream with anything else.
_SAMPLE_SALT = 0x5EED


def nb201_split(seed: int = 0, train_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """(train codes, held-out codes) over all 15,625 cells, sorted; disjoint, covering."""
  return _halves(nb201_space.NUM_CELLS, seed, train_fraction)


def _halves(n: int, seed: int, train_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  perm = np.random.default_rng(seed).permutation(n)
  k = int(round(train_fraction * n))
  return np.sort(perm[:k]).astype(np.int32), np.sort(perm[k:]).astype(np.int32)


def train_heldout(space: SearchSpace, seed: int, train_size: int,
                  heldout_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(train genes, held-out genes), host int32 arrays, disjoint.

  Enumerable spaces: the seeded 50/50 split of `space.enumerate()` (the sizes are
  ignored). Others: distinct uniform samples, in sampling order.

  Raises:
    PnagError: the sampler could not find enough distinct archs.
  """
  if space.enumerable:
    every = space.enumerate()
    train, heldout = _halves(every.shape[0], seed, 0.5)
    return every[train], every[heldout]
  want = train_size + heldout_size
  key = jax.random.fold_in(jax.random.key(seed), _SAMPLE_SALT)
  genes = np.asarray(jax.jit(space.sample, static_argnums=1)(key, int(want * 1.05) + 64))
  keys = np.asarray(jax.jit(space.exact_key)(genes))
  _, first = np.unique(keys, axis=0, return_index=True)
  genes = genes[np.sort(first)]  # distinct, in sampling order
  if genes.shape[0] < want:
    raise PnagError(f"{space.name}: only {genes.shape[0]} distinct samples for {want} wanted")
  return genes[:train_size], genes[train_size:want]
