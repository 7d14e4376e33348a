"""The PNAG stage-1 VQ-VAE: graph encoder -> MSQ over one codebook -> linear decoder.

`loss_fn` is a pure function of (model, batch, key). Flax NNX is used functionally:
`nnx.split` once, then `nnx.merge` inside jitted code (DESIGN §7). The module takes
explicit sizes; `pnag_jax.stages.stage1` maps a config onto them.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pnag_jax.graphs import dense_to_graphs_tuple
from pnag_jax.models import msq
from pnag_jax.models.decoder import LinearDecoder
from pnag_jax.models.encoder import GraphEncoder


class VQVAE(nnx.Module):
  """Encoder, shared codebook and decoder of one space's architectures.

  Args:
    num_ops: the space's node-op vocabulary size K.
    num_nodes: N.
    edge_budget: edges reserved per graph in the encoder's GraphsTuple.
    dim: C, channels of the feature map e [N, N, C].
    encoder_layers: message-passing layers.
    decoder_hidden: H, the decoder's hidden width.
    codebook_size: V, one codebook shared by every scale.
    scales: the MSQ scales, ending at N.
    rngs: initialisation keys.
  """

  def __init__(self, *, num_ops: int, num_nodes: int, edge_budget: int, dim: int,
               encoder_layers: int, decoder_hidden: int, codebook_size: int,
               scales: tuple[int, ...], rngs: nnx.Rngs):
    n = num_nodes
    self.num_nodes, self.edge_budget = n, edge_budget
    self.scales = msq.validate_scales(scales, n)
    self.encoder = GraphEncoder(num_ops, n, dim, encoder_layers, rngs=rngs)
    # Uniform in a small box, as VQ-VAE/VAR do: codewords start near the encoder's
    # initial outputs, so the first argmins spread over many codes.
    self.codebook = nnx.Param(jax.random.uniform(
        rngs.params(), (codebook_size, dim), minval=-1 / codebook_size,
        maxval=1 / codebook_size))
    self.decoder = LinearDecoder(n, dim, num_ops, decoder_hidden, rngs=rngs)

  def encode(self, ops: jax.Array, adj: jax.Array) -> tuple[jax.Array, jax.Array]:
    graph = dense_to_graphs_tuple(ops, adj, self.edge_budget)
    return self.encoder(graph, adj)

  def quantize(self, e: jax.Array) -> msq.MSQOutput:
    return msq.quantize(e, self.codebook[...], self.scales)

  def decode(self, e_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.decoder(e_hat)


def hard_decode(op_logits: jax.Array, adj_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Argmax ops and thresholded adjacency (logit > 0, i.e. p > 0.5)."""
  return jnp.argmax(op_logits, -1).astype(jnp.int32), adj_logits > 0


def reconstruction_loss(op_logits, adj_logits, ops, adj) -> jax.Array:
  """CE over node ops + BCE over the strict upper triangle, per example [B]."""
  n = ops.shape[-1]
  ce = optax.softmax_cross_entropy_with_integer_labels(op_logits, ops).mean(-1)
  iu = jnp.triu_indices(n, 1)
  bce = optax.sigmoid_binary_cross_entropy(adj_logits[:, iu[0], iu[1]],
                                           adj[:, iu[0], iu[1]].astype(jnp.float32)).mean(-1)
  return ce + bce


def exact_match(op_logits, adj_logits, ops, adj) -> jax.Array:
  """bool[B]: every op and every upper-triangular edge decoded correctly."""
  pred_ops, pred_adj = hard_decode(op_logits, adj_logits)
  return jnp.all(pred_ops == ops, -1) & jnp.all(pred_adj == adj, (-2, -1))


def loss_fn(model: VQVAE, ops: jax.Array, adj: jax.Array, key: jax.Array, *,
            step_weights: jax.Array, beta: float = 0.25, beta_kl: float = 1e-4,
            paper_literal: bool = False, arch_scc: bool = False) -> tuple[jax.Array, dict]:
  """The stage-1 loss of a batch (DESIGN §3) and its metrics.

  Args:
    model: the VQ-VAE.
    ops, adj: the batch, int32[B, N] and bool[B, N, N].
    key: the VAE's sampling key.
    step_weights: float32[T], `msq.scc_weights`: the final step's VQ weight (1) and
      SCC's per-step weights. An array, not a config value, so that runs differing
      only in SCC share one compiled step.
    beta: VQ commitment weight.
    beta_kl: KL weight.
    paper_literal: SCC compares e with each per-scale map (the ablation variant).
    arch_scc: also decode every earlier prefix and add its reconstruction loss.
  """
  b, n = ops.shape
  chex.assert_shape(adj, (b, n, n))
  t = len(model.scales)
  chex.assert_shape(step_weights, (t,))
  mu, logvar = model.encode(ops, adj)
  e = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
  out = model.quantize(e)
  weights = step_weights
  if paper_literal:
    vq_terms = msq.vq_loss_paper_literal(e, out.per_scale, beta)
  else:
    vq_terms = msq.vq_loss(e, out.prefixes, beta)
  vq = jnp.sum(weights * vq_terms)

  op_logits, adj_logits = model.decode(msq.straight_through(e, out.e_hat))
  rec = reconstruction_loss(op_logits, adj_logits, ops, adj).mean()
  arch = jnp.zeros(())
  if arch_scc and t > 1:
    # Decode every earlier prefix in one stacked batch; unconstrained steps get weight 0.
    prefixes = out.prefixes[:-1]
    st = jax.vmap(lambda p: msq.straight_through(e, p))(prefixes).reshape((-1,) + e.shape[1:])
    ol, al = model.decode(st)
    per = reconstruction_loss(ol, al, jnp.tile(ops, (t - 1, 1)),
                              jnp.tile(adj, (t - 1, 1, 1))).reshape(t - 1, b).mean(-1)
    arch = jnp.sum(weights[:-1] * per)
  kl = jnp.mean(jnp.sum(-0.5 * (1 + logvar - mu**2 - jnp.exp(logvar)), axis=(1, 2, 3)))
  loss = rec + vq + arch + beta_kl * kl
  metrics = {
      "loss": loss, "rec": rec, "vq": vq, "arch_scc": arch, "kl": kl,
      "exact": jnp.mean(exact_match(op_logits, adj_logits, ops, adj)),
  }
  return loss, metrics


def reconstruct(model: VQVAE, ops: jax.Array, adj: jax.Array):
  """Deterministic encode (mu) -> MSQ argmin -> decode every prefix.

  Returns (per-step decoded ops [T, B, N], adj [T, B, N, N], MSQOutput, mu).
  """
  mu, _ = model.encode(ops, adj)
  out = model.quantize(mu)
  t, b = out.prefixes.shape[:2]
  ol, al = model.decode(out.prefixes.reshape((t * b,) + mu.shape[1:]))
  p_ops, p_adj = hard_decode(ol, al)
  return p_ops.reshape(t, b, -1), p_adj.reshape((t, b) + adj.shape[1:]), out, mu
