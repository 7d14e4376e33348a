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


class RunningStat(nnx.BatchStat):
  """A BatchStat whose whole-value writes skip flax's sharding comparison.

  `nnx.BatchNorm` updates its statistics with `stat[...] = x`, and flax then compares
  `x.sharding` with the old value's. Inside a trace `x` is a tracer, whose `.sharding`
  raises an AttributeError with a message that walks the whole traced graph: once per
  BatchNorm per trace, so tracing cost grows with depth squared (18 s of a 46 s MBV3
  check on 2 CPU cores). A same-shape, same-dtype write is a plain replacement, which
  is what flax does after that comparison anyway.
  """

  def __setitem__(self, key, value) -> None:
    if key is Ellipsis and getattr(value, "shape", None) == self.shape and (
        getattr(value, "dtype", None) == self.dtype):
      self.set_value(value)
    else:
      super().__setitem__(key, value)


def batch_norm(ch: int, *, momentum: float, epsilon: float, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """`nnx.BatchNorm` over `ch` channels, its running statistics `RunningStat`s."""
  bn = nnx.BatchNorm(ch, momentum=momentum, epsilon=epsilon, rngs=rngs)
  bn.mean, bn.var = RunningStat(bn.mean[...]), RunningStat(bn.var[...])
  return bn
