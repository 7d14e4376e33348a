"""Per-step sub-architectures g_t of generated code maps: ê_{<=t} decoded for every t.

The sampler decodes only the full map ê_{<=T}; here the same draws (same keys, so g_T
is the generated architecture itself) are decoded prefix by prefix, under the
sampler's grammar when it decodes constrained. Used by the SCC ablation (validity per
step) and the executable check (every g_t).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.generation.sampler import (Sampler, SamplerSpec, arch_key, decode_logits,
                                         map_rows)
from pnag_jax.models import msq
from pnag_jax.networks.registry import buildable


@functools.partial(jax.jit, static_argnames=("spec", "num"))
def decode_steps(params: dict, consts: dict, key: jax.Array, cond=(), *, spec: SamplerSpec,
                 num: int) -> tuple[jax.Array, jax.Array]:
  """Architectures 0 .. num - 1 of the stream `key` (and condition), decoded at every step.

  Returns:
    (ops int32[T, B, N], adj bool[T, B, N, N]).
  """
  model, n = spec.model, spec.space.num_nodes
  # Drawn as the sampler draws them (`map_rows`: one row is drawn twice), so g_T is the
  # generated architecture for any `num`, one included.
  tokens = map_rows(lambda i: spec.prior.draw(consts, arch_key(key, i), cond, model),
                    jnp.arange(num, dtype=jnp.uint32), num)                  # [B, P]
  vqvae = model.merge(params)
  prefixes = msq.decode_indices(model.layout.split(tokens), vqvae.codebook[...], n)
  t = prefixes.shape[0]                                                     # [T, B, N, N, C]
  ol, al = vqvae.decode(prefixes.reshape((t * num,) + prefixes.shape[2:]))
  ops, adj = jax.vmap(functools.partial(decode_logits, spec=spec), in_axes=(None, 0, 0))(
      consts, ol, al)
  return ops.reshape(t, num, n), adj.reshape(t, num, n, n)


def _decoded(sampler: Sampler, params: dict, key: jax.Array, num: int):
  return decode_steps(sampler.replicate(params), sampler.consts, key, spec=sampler.spec,
                      num=num)


def step_validity(sampler: Sampler, params: dict, key: jax.Array,
                  num: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-step (format, strict) validity, float[T] each, of `num` generated code maps."""
  ops, adj = _decoded(sampler, params, key, num)
  space = sampler.space
  return (np.asarray(space.format_valid(ops, adj).mean(1)),
          np.asarray(space.strict_valid(ops, adj).mean(1)))


def step_genes(sampler: Sampler, params: dict, key: jax.Array,
               num: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-step sub-architectures g_t: (genes int32[T, B, G], buildable bool[T, B])."""
  ops, adj = _decoded(sampler, params, key, num)
  space = sampler.space
  return np.asarray(space.decode(ops, adj)), np.asarray(buildable(space, ops, adj))
