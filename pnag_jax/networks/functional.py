"""NNX networks as pure functions: split into pure dicts once, merge inside `jit`/`grad`.

A merged module owns fresh Variables, so a forward pass in training mode may update
its BatchNorm statistics inside a trace without touching the caller's objects.
"""

from __future__ import annotations

import jax
from flax import nnx


def split_pure(model: nnx.Module):
  """(graphdef, {"params", "batch_stats", "rng_counts"} as pure dicts, templates for
  `merge_pure`).

  The random streams' counts are state like the batch statistics: a train step that
  merged the templates' counts every time would draw the same dropout masks at every
  step. Their keys are fixed at build time and stay in the templates.
  """
  graphdef, params, batch_stats, counts, rest = nnx.split(model, nnx.Param, nnx.BatchStat,
                                                          nnx.RngCount, ...)
  pure = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats),
          "rng_counts": nnx.to_pure_dict(counts)}
  return graphdef, pure, (params, batch_stats, counts, rest)


def merge_pure(graphdef, templates, pure: dict) -> nnx.Module:
  """A fresh module holding `pure`'s arrays (traced or concrete); without "rng_counts",
  its random streams start where the templates' do."""
  params_t, stats_t, counts_t, rest = templates
  params = jax.tree.map(lambda x: x, params_t)  # copies: filled in place below
  batch_stats = jax.tree.map(lambda x: x, stats_t)
  counts = jax.tree.map(lambda x: x, counts_t)
  nnx.replace_by_pure_dict(params, pure["params"])
  nnx.replace_by_pure_dict(batch_stats, pure["batch_stats"])
  if "rng_counts" in pure:
    nnx.replace_by_pure_dict(counts, pure["rng_counts"])
  return nnx.merge(graphdef, params, batch_stats, counts, jax.tree.map(lambda x: x, rest))


def batch_stats_of(model: nnx.Module) -> dict:
  return nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def rng_counts_of(model: nnx.Module) -> dict:
  """The random streams' counts after a forward pass: the next step's start."""
  return nnx.to_pure_dict(nnx.state(model, nnx.RngCount))


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
