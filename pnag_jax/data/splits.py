"""Seeded train / held-out splits (DESIGN §3, NB201 protocol)."""

from __future__ import annotations

import numpy as np

from pnag_jax.spaces import nb201 as nb201_space


def nb201_split(seed: int = 0, train_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """(train codes, held-out codes) over all 15,625 cells, sorted; disjoint, covering.

  The held-out half is also the novelty reference's complement: novelty counts
  generated cells outside the train half.
  """
  perm = np.random.default_rng(seed).permutation(nb201_space.NUM_CELLS)
  k = int(round(train_fraction * nb201_space.NUM_CELLS))
  return np.sort(perm[:k]).astype(np.int32), np.sort(perm[k:]).astype(np.int32)
