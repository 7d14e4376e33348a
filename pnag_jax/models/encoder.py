"""Graph encoder: jraph message passing over each architecture's DAG (DESIGN §3).

Each layer is one `jraph.GraphNetwork`. The edge function emits two messages per
edge, one for the receiver (forward along the DAG) and one for the sender (backward),
as D-VAE and arch2vec do. The node update reads the received aggregate as the
forward half and the sent aggregate as the backward half, so one GraphNetwork call
passes information both ways.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import jraph
from flax import nnx


class MessagePassingLayer(nnx.Module):
  """One bidirectional GraphNetwork step with a pre-norm residual node update."""

  def __init__(self, dim: int, *, rngs: nnx.Rngs):
    self.edge_mlp = nnx.Linear(2 * dim, 2 * dim, rngs=rngs)
    self.node_mlp = nnx.Linear(3 * dim, dim, rngs=rngs)
    self.norm = nnx.LayerNorm(dim, rngs=rngs)

  def __call__(self, graph: jraph.GraphsTuple, h: jax.Array) -> jax.Array:
    edge_mask = graph.edges[:, None]

    def update_edge_fn(edges, sent, received, globals_):
      del edges, globals_
      # Padding slots are self-loops on the padding node: zeroed, no message of theirs
      # reaches a real node (the padding node's own state is never read).
      return jax.nn.gelu(self.edge_mlp(jnp.concatenate([sent, received], -1))) * edge_mask

    def update_node_fn(nodes, sent_agg, received_agg, globals_):
      del globals_
      dim = nodes.shape[-1]
      forward, backward = received_agg[:, :dim], sent_agg[:, dim:]
      return self.node_mlp(jnp.concatenate([nodes, forward, backward], -1))

    net = jraph.GraphNetwork(update_edge_fn=update_edge_fn, update_node_fn=update_node_fn)
    out = net(graph._replace(nodes=self.norm(h)))
    return h + jax.nn.gelu(out.nodes)


class GraphEncoder(nnx.Module):
  """Architecture DAG -> VAE posterior over the pairwise feature map.

  Returns `mu, logvar`, each float32[B, N, N, C], with
  `e[i, j] = A h_i + B h_j + a_ij w`: the last term carries the edge itself, so an
  edge that the node states cannot explain is still visible to the quantizer.
  """

  def __init__(self, num_ops: int, num_nodes: int, dim: int, num_layers: int, *,
               rngs: nnx.Rngs):
    self.num_nodes, self.dim = num_nodes, dim
    self.op_embed = nnx.Embed(num_ops, dim, rngs=rngs)
    # Node position matters in fixed-DAG spaces (NB201's 6 edge slots are not
    # interchangeable), and the decoder reads positions anyway.
    self.pos_embed = nnx.Param(jax.random.normal(rngs.params(), (num_nodes, dim)) * 0.02)
    self.layers = nnx.List([MessagePassingLayer(dim, rngs=rngs) for _ in range(num_layers)])
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.pair_src = nnx.Linear(dim, 2 * dim, rngs=rngs)
    self.pair_dst = nnx.Linear(dim, 2 * dim, use_bias=False, rngs=rngs)
    self.edge_vec = nnx.Param(jax.random.normal(rngs.params(), (2 * dim,)) * 0.02)

  def __call__(self, graph: jraph.GraphsTuple, adj: jax.Array) -> tuple[jax.Array, jax.Array]:
    b = adj.shape[0]
    n, c = self.num_nodes, self.dim
    chex.assert_shape(adj, (b, n, n))
    chex.assert_shape(graph.nodes, (b * n + 1,))
    pos = jnp.concatenate([jnp.tile(self.pos_embed[...], (b, 1)), jnp.zeros((1, c))], 0)
    h = self.op_embed(graph.nodes) + pos
    for layer in self.layers:
      h = layer(graph, h)
    h = self.norm(h[:-1]).reshape(b, n, c)
    pair = (self.pair_src(h)[:, :, None, :] + self.pair_dst(h)[:, None, :, :]
            + adj[..., None].astype(h.dtype) * self.edge_vec[...])
    mu, logvar = jnp.split(pair, 2, axis=-1)
    chex.assert_shape([mu, logvar], (b, n, n, c))
    return mu, logvar
