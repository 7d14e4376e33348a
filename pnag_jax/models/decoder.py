"""The paper's two-layer linear decoder: flattened `ê` -> hidden -> logits.

The first layer is linear in `ê`, and `ê` is linear in the chosen codewords
(look-up, bilinear upsampling, sum over scales). Generation can therefore tabulate
each codeword's contribution to the hidden pre-activation once, and decoding becomes
a gather and a sum (issue 4's fused path). Keep anything non-linear after `hidden`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def split_logits(logits: jax.Array, n: int, k: int) -> tuple[jax.Array, jax.Array]:
  """Flat output logits `[..., N*K + N*N]` -> (op logits [..., N, K], adj logits [..., N, N]).

  Only the strict upper triangle can hold an edge; a large negative logit elsewhere
  makes the thresholded adjacency upper triangular by construction.
  """
  lead = logits.shape[:-1]
  op_logits = logits[..., :n * k].reshape(lead + (n, k))
  upper = np.triu(np.ones((n, n), bool), 1)  # a trace-time constant, not state
  adj_logits = jnp.where(upper, logits[..., n * k:].reshape(lead + (n, n)), -1e9)
  return op_logits, adj_logits


class LinearDecoder(nnx.Module):
  """`ê [B, N, N, C]` -> (op logits [B, N, K], adjacency logits [B, N, N])."""

  def __init__(self, num_nodes: int, dim: int, num_ops: int, hidden: int, *, rngs: nnx.Rngs):
    self.num_nodes, self.dim, self.num_ops = num_nodes, dim, num_ops
    n = num_nodes
    self.hidden = nnx.Linear(n * n * dim, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, n * num_ops + n * n, rngs=rngs)

  def pre_activation(self, e_hat: jax.Array) -> jax.Array:
    b = e_hat.shape[0]
    chex.assert_shape(e_hat, (b, self.num_nodes, self.num_nodes, self.dim))
    return self.hidden(e_hat.reshape(b, -1))

  def from_pre_activation(self, pre: jax.Array) -> tuple[jax.Array, jax.Array]:
    return split_logits(self.out(jax.nn.relu(pre)), self.num_nodes, self.num_ops)

  def __call__(self, e_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.from_pre_activation(self.pre_activation(e_hat))
