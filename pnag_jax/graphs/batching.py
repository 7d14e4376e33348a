"""Fixed-shape jraph batches built on the device.

`jraph.pad_with_graphs` runs on the host, so it cannot batch architectures that are
generated inside a jitted function. The spaces have a fixed node count N, so a batch
of B architectures has a fixed budget: B*N real nodes plus one padding node, and
B*edge_budget edge slots. Real edges come first, grouped by graph (as jraph's
`n_edge` requires); unused slots are self-loops on the padding node, which sits in a
padding graph of its own, so `jraph.get_*_padding_mask` work unchanged.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import jraph


def dense_to_graphs_tuple(ops: jax.Array, adj: jax.Array, edge_budget: int) -> jraph.GraphsTuple:
  """Batches dense architectures into one `GraphsTuple` with static shapes.

  Args:
    ops: int[B, N] node-op ids; they become `nodes`.
    adj: bool[B, N, N] strictly upper-triangular adjacency.
    edge_budget: edge slots per graph. The B * edge_budget slots are one pool filled
      in row-major order: a graph with more edges than this (only an invalid one can
      have them) takes slots of the graphs after it, which then lose edges.

  Returns:
    A GraphsTuple with B+1 graphs (the last is padding), B*N+1 nodes and
    B*edge_budget edges; `edges` holds 1.0 on real edges and 0.0 on padding slots.
  """
  b, n = ops.shape
  chex.assert_shape(adj, (b, n, n))
  num_slots = b * edge_budget
  pad_node = b * n
  # Row-major order over (graph, sender, receiver) keeps each graph's edges contiguous.
  flat = jnp.nonzero(adj.reshape(-1), size=num_slots, fill_value=b * n * n)[0]
  real = flat < b * n * n
  graph, rest = flat // (n * n), flat % (n * n)
  senders = jnp.where(real, graph * n + rest // n, pad_node).astype(jnp.int32)
  receivers = jnp.where(real, graph * n + rest % n, pad_node).astype(jnp.int32)
  n_edge_real = jnp.minimum(jnp.sum(adj, axis=(1, 2)), num_slots)
  # Once the slots run out, later graphs keep no edges: clip the cumulative count.
  cum = jnp.minimum(jnp.cumsum(n_edge_real), num_slots)
  n_edge = jnp.diff(cum, prepend=0).astype(jnp.int32)
  return jraph.GraphsTuple(
      nodes=jnp.concatenate([ops.reshape(-1), jnp.zeros((1,), ops.dtype)]),
      edges=real.astype(jnp.float32),
      senders=senders,
      receivers=receivers,
      n_node=jnp.concatenate([jnp.full((b,), n, jnp.int32), jnp.ones((1,), jnp.int32)]),
      n_edge=jnp.concatenate([n_edge, (num_slots - cum[-1:]).astype(jnp.int32)]),
      globals=None,
  )


def zero_out_padding(graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
  """jraph's `zero_out_padding`, which calls the removed `jax.tree_map`."""
  node_mask = jraph.get_node_padding_mask(graph)
  edge_mask = jraph.get_edge_padding_mask(graph)
  graph_mask = jraph.get_graph_padding_mask(graph)

  def mask(x, m):
    return jnp.where(m.reshape(m.shape + (1,) * (x.ndim - 1)), x, jnp.zeros_like(x))

  return graph._replace(
      nodes=jax.tree.map(lambda x: mask(x, node_mask), graph.nodes),
      edges=jax.tree.map(lambda x: mask(x, edge_mask), graph.edges),
      globals=jax.tree.map(lambda x: mask(x, graph_mask), graph.globals),
  )
