"""Device-side jraph batching: jraph's own semantics hold on what we build."""

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from pnag_jax.graphs import dense_to_graphs_tuple, zero_out_padding
from pnag_jax.spaces import SPACE_NAMES, get_space


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_graphs_tuple_matches_adjacency(name):
  space = get_space(name)
  genes = space.sample(jax.random.key(0), 6)
  ops, adj = space.encode(genes)
  g = jax.jit(space.graphs_tuple)(ops, adj)
  b, n = ops.shape
  assert g.nodes.shape == (b * n + 1,)
  assert g.senders.shape == g.receivers.shape == (b * space.edge_budget,)
  np.testing.assert_array_equal(g.n_edge[:-1], np.asarray(adj).sum((1, 2)))
  assert int(g.n_edge.sum()) == b * space.edge_budget
  # Rebuild each graph's adjacency from senders/receivers.
  mask = np.asarray(jraph.get_edge_padding_mask(g))
  rebuilt = np.zeros((b * n + 1, b * n + 1), bool)
  rebuilt[np.asarray(g.senders)[mask], np.asarray(g.receivers)[mask]] = True
  for i in range(b):
    np.testing.assert_array_equal(rebuilt[i * n:(i + 1) * n, i * n:(i + 1) * n], adj[i])
  assert not rebuilt[:b * n, :b * n][np.kron(np.eye(b), np.ones((n, n))) == 0].any()
  np.testing.assert_array_equal(g.nodes[:-1], np.asarray(ops).reshape(-1))
  np.testing.assert_array_equal(jraph.get_graph_padding_mask(g), [True] * b + [False])


def test_overfull_graphs_are_truncated_in_order():
  adj = jnp.triu(jnp.ones((3, 4, 4), bool), 1)  # 6 edges each, budget 4 -> 12 slots
  g = dense_to_graphs_tuple(jnp.zeros((3, 4), jnp.int32), adj, edge_budget=4)
  np.testing.assert_array_equal(g.n_edge, [6, 6, 0, 0])


def test_segment_sum_messages_and_zero_out_padding():
  space = get_space("nb201")
  ops, adj = space.encode(space.sample(jax.random.key(1), 3))
  g = space.graphs_tuple(ops, adj)
  feats = jnp.ones((g.nodes.shape[0], 2))
  in_deg = jax.ops.segment_sum(feats[g.senders] * g.edges[:, None], g.receivers,
                               num_segments=feats.shape[0])
  np.testing.assert_array_equal(in_deg[:-1, 0], np.asarray(adj).sum(1).reshape(-1))
  g2 = zero_out_padding(g._replace(nodes=jnp.full((g.nodes.shape[0], 3), 5.0)))
  assert float(g2.nodes[-1].sum()) == 0.0 and float(g2.nodes[0].sum()) == 15.0
