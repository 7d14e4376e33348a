"""Tests for which decoded graphs count as member networks (`registry.buildable`)."""

import jax
import numpy as np
import pytest

from pnag_jax.networks import registry
from pnag_jax.spaces import SPACE_NAMES, get_space


def _sampled_and_mutated(space, n=600):
  """Sampled graphs, and each again with one inner node's op drawn at random."""
  genes = np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.key(0), n))
  ops, adj = map(np.asarray, space.encode(genes))
  rng = np.random.default_rng(0)
  mutated = ops.copy()
  mutated[np.arange(n), rng.integers(1, ops.shape[1] - 1, n)] = rng.integers(0, space.num_ops, n)
  return np.concatenate([ops, mutated]), np.concatenate([adj, adj])


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_a_buildable_graph_decodes_to_itself(name):
  # What `eval executable` builds is the decoded arch: it must be the graph generated,
  # not a neighbouring config.
  space = get_space(name)
  ops, adj = _sampled_and_mutated(space)
  ok = np.asarray(registry.buildable(space, ops, adj))
  back_ops, back_adj = map(np.asarray, space.encode(space.decode(ops, adj)))
  exact = np.all(back_ops == ops, -1) & np.all(back_adj == adj, (-2, -1))
  assert ok.any() and (~ok).any()
  assert exact[ok].all()
  if registry.format_suffices(space):
    # Nothing that decodes to itself is refused (NB201's disconnected cells included).
    np.testing.assert_array_equal(ok, exact)


def test_an_autoformer_layer_sequence_with_a_hole_is_not_a_network():
  space = get_space("autoformer")
  config = {"embed_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [4] * 12}
  ops, adj = map(np.array, space.encode(space.from_native(config)))
  ops[11], ops[13] = space.skip_op, ops[1]  # the 11th layer skipped, a 13th one added
  assert bool(space.format_valid(ops, adj)) and not bool(space.strict_valid(ops, adj))
  # It would decode to 12 layers whose 11th (mlp 3.5, 3 heads) the graph does not have.
  assert space.to_native(np.asarray(space.decode(ops, adj)))["num_heads"][10] == 3
  assert not registry.format_suffices(space)
  assert not bool(registry.buildable(space, ops, adj))
