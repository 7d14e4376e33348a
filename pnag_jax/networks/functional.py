"""NNX networks as pure functions: split into pure dicts once, merge inside `jit`/`grad`.

A merged module owns fresh Variables, so a forward pass in training mode may update
its BatchNorm statistics inside a trace without touching the caller's objects.
"""

from __future__ import annotations

import jax
from flax import nnx


def split_pure(model: nnx.Module):
  """(graphdef, {"params", "batch_stats"} as pure dicts, templates for `merge_pure`)."""
  graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  pure = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}
  return graphdef, pure, (params, batch_stats, rest)


def merge_pure(graphdef, templates, pure: dict) -> nnx.Module:
  """A fresh module holding `pure`'s arrays (traced or concrete)."""
  params_t, stats_t, rest = templates
  params = jax.tree.map(lambda x: x, params_t)  # copies: filled in place below
  batch_stats = jax.tree.map(lambda x: x, stats_t)
  nnx.replace_by_pure_dict(params, pure["params"])
  nnx.replace_by_pure_dict(batch_stats, pure["batch_stats"])
  return nnx.merge(graphdef, params, batch_stats, jax.tree.map(lambda x: x, rest))


def batch_stats_of(model: nnx.Module) -> dict:
  return nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
