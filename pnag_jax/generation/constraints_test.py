"""The grammar masks read off each space's own sampler."""

import jax
import numpy as np
import pytest

from pnag_jax.generation import constraints
from pnag_jax.spaces import get_space
from pnag_jax.spaces import nb201 as nb201_space


def test_nb201_masks_are_its_op_layout_and_its_one_adjacency():
  op_mask, adj_mask, fixed = constraints.grammar_masks(get_space("nb201"))
  assert op_mask.shape == (8, 7) and not op_mask.flags.writeable
  np.testing.assert_array_equal(op_mask[0], [1, 0, 0, 0, 0, 0, 0])   # input
  np.testing.assert_array_equal(op_mask[-1], [0, 1, 0, 0, 0, 0, 0])  # output
  # Every edge node can carry every op, `none` included (disconnected cells are cells).
  assert op_mask[1:-1, 2:].all() and not op_mask[1:-1, :2].any()
  np.testing.assert_array_equal(fixed, nb201_space.ADJACENCY)
  np.testing.assert_array_equal(adj_mask, nb201_space.ADJACENCY)


@pytest.mark.parametrize("name", ["mbv3", "darts", "autoformer"])
def test_constrained_decode_of_random_logits_is_format_valid(name):
  space = get_space(name)
  op_mask, adj_mask, fixed = constraints.grammar_masks(space)
  assert (fixed.any() == space.fixed_adjacency)
  assert not np.tril(adj_mask).any()  # edges only go forward
  n, k = space.num_nodes, space.num_ops
  keys = jax.random.split(jax.random.key(0), 64)
  op_logits = jax.vmap(lambda q: jax.random.normal(q, (n, k)))(keys)
  adj_logits = jax.vmap(lambda q: jax.random.normal(jax.random.fold_in(q, 1), (n, n)))(keys)
  decode = jax.jit(jax.vmap(space.constrained_decode, in_axes=(0, 0, None, None, None)))
  ops, adj = decode(op_logits, adj_logits, op_mask, adj_mask, fixed)
  assert np.asarray(space.format_valid(ops, adj)).all()
  # Every decoded op is one its node may carry.
  assert op_mask[np.arange(n)[None], np.asarray(ops)].all()
