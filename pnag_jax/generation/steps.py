"""Per-step sub-architectures g_t of generated code maps: ê_{<=t} decoded for every t.

Used by the SCC ablation (validity per step) and the executable check (every g_t).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.generation.engine import Generator
from pnag_jax.models import msq
from pnag_jax.networks.registry import buildable


def _decode_steps(gen: Generator, num: int):
  """A jitted `(params, consts, key) -> (ops [T, B, N], adj [T, B, N, N])`: `num`
  generated code maps decoded prefix by prefix, ê_{<=1} .. ê_{<=T}, under the
  generator's grammar when it decodes constrained."""
  m = gen.trained.model
  scales = gen.scales
  n = gen.space.num_nodes

  @jax.jit
  def decode(params, consts, key):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(num, dtype=jnp.uint32))
    idx = jax.vmap(gen.indices, in_axes=(None, 0))(consts, keys)           # [B, P]
    parts = jnp.split(idx, np.cumsum([s * s for s in scales])[:-1], axis=1)
    parts = [p.reshape(num, s, s) for p, s in zip(parts, scales)]
    model = m.merge(params)
    prefixes = msq.decode_indices(parts, model.codebook[...], n)           # [T, B, N, N, C]
    t = prefixes.shape[0]
    ol, al = model.decode(prefixes.reshape((t * num,) + prefixes.shape[2:]))
    ops, adj = jax.vmap(gen.decode_logits, in_axes=(None, 0, 0))(consts, ol, al)
    return ops.reshape(t, num, n), adj.reshape(t, num, n, n)

  return decode


def step_validity(gen: Generator, key: jax.Array, num: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-step (format, strict) validity, float[T] each, of `num` generated code maps."""
  ops, adj = _decode_steps(gen, num)(gen.replicate(gen.trained.params), gen.consts, key)
  fmt = gen.space.format_valid(ops, adj).mean(1)
  strict = gen.space.strict_valid(ops, adj).mean(1)
  return np.asarray(fmt), np.asarray(strict)


def step_genes(gen: Generator, key: jax.Array, num: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-step sub-architectures g_t: (genes int32[T, B, G], buildable bool[T, B])."""
  ops, adj = _decode_steps(gen, num)(gen.replicate(gen.trained.params), gen.consts, key)
  return np.asarray(gen.space.decode(ops, adj)), np.asarray(buildable(gen.space, ops, adj))
