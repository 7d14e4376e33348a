"""Constrained decoding: the space's grammar as masks over the decoder's logits.

The masks are read off the space itself: the (node, op) pairs and the edges that
occur in valid architectures, from a large fixed sample of the space's own uniform
sampler (every op a node may carry has probability >= 1/100 per draw in every
registered space, MBV3's rarest pair being 0.0100, so 8192 draws miss one with
probability below e^-80). With the mask applied, every output is
format-valid; fixed-adjacency spaces also get their one adjacency, and spaces with
structured edges decode them through `SearchSpace.constrained_decode` (DARTS: each op
node reads exactly one input, the pairs of a node distinct inputs).

Off by default: the paper's metrics are on raw output, and raw validity is always
reported beside constrained validity.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from pnag_jax.spaces.base import SearchSpace

_NUM_DRAWS = 8192


@functools.lru_cache(maxsize=None)
def _masks(space: SearchSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  genes = jax.jit(space.sample, static_argnums=1)(jax.random.key(0x6EA), _NUM_DRAWS)
  ops, adj = jax.device_get(jax.jit(space.encode)(genes))
  n, k = space.num_nodes, space.num_ops
  op_mask = np.zeros((n, k), bool)
  op_mask[np.broadcast_to(np.arange(n), ops.shape), ops] = True
  adj_mask = adj.any(0)
  fixed = adj[0] if space.fixed_adjacency else np.zeros((n, n), bool)
  for a in (op_mask, adj_mask, fixed):
    a.setflags(write=False)
  return op_mask, adj_mask, fixed


def grammar_masks(space: SearchSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(op_mask bool[N, K], admissible edges bool[N, N], fixed adjacency bool[N, N])."""
  return _masks(space)
