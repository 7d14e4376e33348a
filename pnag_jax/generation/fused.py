"""Fused decoding: the decoder's first layer tabulated per (token, codeword).

From code indices to the decoder's hidden pre-activation everything is linear:
codebook look-up, bilinear up-sampling to N x N, the sum over scales and the first
`nnx.Linear`. So the contribution of codeword v at token p (scale t, position (i, j))
is a fixed vector

  table[p, v, :] = sum_{a, b, c} U_t[a, i] U_t[b, j] Z[v, c] W1[(a, b, c), :],

and `pre = b1 + sum_p table[p, idx[p]]`: a gather and a sum instead of a
`(N*N*C) x H` matmul per architecture. The table is built once, in float32 at
HIGHEST precision, in two einsums so no `[P, V, N*N*C]` intermediate appears.
"""

from __future__ import annotations

import functools
from typing import Sequence

import chex
import jax
import jax.numpy as jnp

from pnag_jax.models import msq

_HIGHEST = jax.lax.Precision.HIGHEST
#: Tables above this many bytes are not built; generation falls back to unfused decoding.
DEFAULT_TABLE_BUDGET_BYTES = 1 << 30


def table_bytes(layout: msq.TokenLayout, codebook_size: int, hidden: int) -> int:
  """Bytes of the float32 `[P, V, H]` table."""
  return 4 * layout.num_tokens * codebook_size * hidden


@functools.partial(jax.jit, static_argnums=(2, 3))
def build_table(codebook: jax.Array, w1: jax.Array, scales: Sequence[int], n: int) -> jax.Array:
  """Per-token, per-codeword hidden contributions.

  Args:
    codebook: float32[V, C].
    w1: float32[N*N*C, H], the decoder's first kernel (flattened ê is row-major N, N, C).
    scales: the MSQ scales n_1 < ... < n_T = N.
    n: N.

  Returns:
    float32[P, V, H] with P = sum n_t^2, tokens in MSQ order (scale-major, row-major).
  """
  v, c = codebook.shape
  h = w1.shape[1]
  chex.assert_shape(w1, (n * n * c, h))
  w = w1.reshape(n, n, c, h)
  tables = []
  for s in msq.validate_scales(scales, n):
    u = jnp.asarray(msq.bilinear_matrix(n, s)) if s != n else jnp.eye(n, dtype=jnp.float32)
    g = jnp.einsum("ai,bj,abch->ijch", u, u, w, precision=_HIGHEST)      # [s, s, C, H]
    t = jnp.einsum("vc,ijch->ijvh", codebook, g, precision=_HIGHEST)     # [s, s, V, H]
    tables.append(t.reshape(s * s, v, h))
  return jnp.concatenate(tables, axis=0)


def fused_pre_activation(table: jax.Array, bias: jax.Array, idx: jax.Array) -> jax.Array:
  """`bias + sum_p table[p, idx[p]]` for one architecture's tokens `idx int32[P]`.

  Written as a scan over tokens with an `[H]` accumulator. Under `vmap` it becomes one
  `[B, H]` accumulator and a `(V, H)` slice read per step, which keeps the working set
  in cache; the equivalent single gather `table[p, idx].sum(0)` materialises
  `[B, P, H]` and is memory-bound (DESIGN §4: 9k vs 260k archs/s at H = 256 on CPU).
  """
  p, _, h = table.shape
  chex.assert_shape(idx, (p,))
  chex.assert_shape(bias, (h,))

  def step(acc, xs):
    slab, i = xs
    return acc + slab[i], None

  acc, _ = jax.lax.scan(step, bias.astype(jnp.float32), (table, idx))
  return acc
