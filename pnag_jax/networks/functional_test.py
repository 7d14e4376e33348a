"""Networks as pure functions: state round trips, and random streams that move on."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax.networks.functional import merge_pure, rng_counts_of, split_pure


class _Net(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.linear = nnx.Linear(4, 64, rngs=rngs)
    self.dropout = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return self.dropout(self.linear(x))


def test_carried_rng_counts_draw_new_dropout_masks_each_step():
  graphdef, pure, templates = split_pure(_Net(nnx.Rngs(params=0, dropout=1)))
  assert set(pure) == {"params", "batch_stats", "rng_counts"}

  @jax.jit
  def step(pure):
    model = merge_pure(graphdef, templates, pure)
    model.train()
    kept = model(jnp.ones((2, 4))) != 0
    return kept, {**pure, "rng_counts": rng_counts_of(model)}

  first, pure1 = step(pure)
  second, _ = step(pure1)
  assert 0.3 < float(first.mean()) < 0.7
  assert not np.array_equal(first, second)  # the count moved on: another mask
  # Merging the templates' counts every step (no "rng_counts") repeats the first mask.
  again, _ = step({k: v for k, v in pure.items() if k != "rng_counts"})
  np.testing.assert_array_equal(again, first)
