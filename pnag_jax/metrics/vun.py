"""Validity, uniqueness and novelty over packed keys, on the device.

Keys are `uint32[B, W]` from `SearchSpace.exact_key` / `iso_key`. Everything here is a
sort plus neighbour comparisons, so millions of architectures take seconds and
nothing goes through Python strings. Definitions follow DiffusionNAG and the paper:

  validity   = valid / generated
  uniqueness = unique valid / valid
  novelty    = unique valid not in the reference set / unique valid
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _lexsort_rows(keys: jax.Array, *extra_minor: jax.Array) -> jax.Array:
  """Permutation sorting rows of `keys [B, W]` (word 0 most significant).

  `extra_minor` arrays `[B]` break ties after the key words, first one most
  significant.
  """
  # jnp.lexsort sorts by the *last* key first.
  cols = list(reversed(extra_minor)) + [keys[:, w] for w in reversed(range(keys.shape[1]))]
  return jnp.lexsort(cols)


def first_occurrence(keys: jax.Array, mask: jax.Array) -> jax.Array:
  """bool[B]: row is in `mask` and no earlier masked row has the same key."""
  b = keys.shape[0]
  order = _lexsort_rows(keys, ~mask, jnp.arange(b))  # masked rows first within a key
  k, m = keys[order], mask[order]
  new_key = jnp.concatenate([jnp.ones((1,), bool), jnp.any(k[1:] != k[:-1], axis=1)])
  first_sorted = new_key & m
  return jnp.zeros((b,), bool).at[order].set(first_sorted)


def in_reference(keys: jax.Array, reference: jax.Array) -> jax.Array:
  """bool[B]: row's key occurs in `reference [R, W]` (sorted-membership join)."""
  b, r = keys.shape[0], reference.shape[0]
  allk = jnp.concatenate([reference, keys], axis=0)
  tag = jnp.concatenate([jnp.zeros((r,), jnp.int32), jnp.ones((b,), jnp.int32)])
  order = _lexsort_rows(allk, tag)
  k, t = allk[order], tag[order]
  # After sorting by (key, tag), a query equal to some reference row sits in a run
  # that starts with a reference row; carry "run started by a reference" forward.
  starts = jnp.concatenate([jnp.ones((1,), bool), jnp.any(k[1:] != k[:-1], axis=1)])
  run_id = jnp.cumsum(starts) - 1
  run_has_ref = jax.ops.segment_max((t == 0).astype(jnp.int32), run_id,
                                    num_segments=b + r) > 0
  hit_sorted = run_has_ref[run_id]
  hit = jnp.zeros((b + r,), bool).at[order].set(hit_sorted)
  return hit[r:]


def vun(valid: jax.Array, keys: jax.Array, reference: jax.Array | None = None) -> dict[str, jax.Array]:
  """Validity, uniqueness and (if `reference` is given) novelty, as fractions."""
  n_valid = jnp.sum(valid)
  unique = first_occurrence(keys, valid)
  n_unique = jnp.sum(unique)
  out = {
      "validity": n_valid / valid.shape[0],
      "uniqueness": n_unique / jnp.maximum(n_valid, 1),
  }
  if reference is not None:
    novel = unique & ~in_reference(keys, reference)
    out["novelty"] = jnp.sum(novel) / jnp.maximum(n_unique, 1)
  return out
