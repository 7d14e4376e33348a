"""Parameters and FLOPs of a built network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def count_params(model: nnx.Module) -> int:
  """Trainable parameters (`nnx.Param` leaves; BatchNorm running stats excluded).

  Works on abstract models from `nnx.eval_shape` too, so huge networks can be counted
  without allocating them.
  """
  return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def forward_flops(model: nnx.Module, input_shape: tuple[int, int, int], batch: int = 1) -> float:
  """FLOPs of one inference forward pass per example, from XLA's cost analysis.

  Counts what XLA counts: a multiply-add is 2 FLOPs (papers often quote MACs, half).
  """
  graphdef, state = nnx.split(model)

  def forward(state, x):
    m = nnx.merge(graphdef, state)
    m.eval()
    return m(x)

  x = jax.ShapeDtypeStruct((batch,) + tuple(input_shape), jnp.float32)
  compiled = jax.jit(forward).lower(state, x).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0)) / batch
