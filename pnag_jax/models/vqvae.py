"""The PNAG stage-1 VQ-VAE: graph encoder -> MSQ over one codebook -> linear decoder.

`loss_fn` is a pure function of (params, batch, key). Flax NNX is used functionally:
`nnx.split` once, then `nnx.merge` inside jitted code (DESIGN §7).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pnag_jax.configs.stage1 import Stage1Config, scale_schedule
from pnag_jax.graphs import dense_to_graphs_tuple
from pnag_jax.models import msq
from pnag_jax.models.decoder import LinearDecoder
from pnag_jax.models.encoder import GraphEncoder
from pnag_jax.spaces.base import SearchSpace


class VQVAE(nnx.Module):

  def __init__(self, space: SearchSpace, cfg: Stage1Config, *, rngs: nnx.Rngs):
    n = space.num_nodes
    self.num_nodes, self.edge_budget = n, space.edge_budget
    self.scales = msq.validate_scales(scale_schedule(cfg, n), n)
    self.encoder = GraphEncoder(space.num_ops, n, cfg.dim, cfg.encoder_layers, rngs=rngs)
    # Uniform in a small box, as VQ-VAE/VAR do: codewords start near the encoder's
    # initial outputs, so the first argmins spread over many codes.
    self.codebook = nnx.Param(jax.random.uniform(
        rngs.params(), (cfg.codebook_size, cfg.dim), minval=-1 / cfg.codebook_size,
        maxval=1 / cfg.codebook_size))
    self.decoder = LinearDecoder(n, cfg.dim, space.num_ops, cfg.decoder_hidden, rngs=rngs)

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


def loss_fn(model: VQVAE, cfg: Stage1Config, ops: jax.Array, adj: jax.Array,
            key: jax.Array) -> tuple[jax.Array, dict]:
  b, n = ops.shape
  chex.assert_shape(adj, (b, n, n))
  mu, logvar = model.encode(ops, adj)
  e = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
  out = model.quantize(e)
  t = len(model.scales)
  weights = jnp.asarray(msq.scc_weights(t, t if cfg.scc_t_max < 0 else cfg.scc_t_max,
                                        cfg.scc_lambda))
  if cfg.scc_variant == "paper_literal":
    vq_terms = msq.vq_loss_paper_literal(e, out.per_scale, cfg.beta)
  else:
    vq_terms = msq.vq_loss(e, out.prefixes, cfg.beta)
  vq = jnp.sum(weights * vq_terms)

  op_logits, adj_logits = model.decode(msq.straight_through(e, out.e_hat))
  rec = reconstruction_loss(op_logits, adj_logits, ops, adj).mean()
  arch = jnp.zeros(())
  if cfg.arch_scc and t > 1:
    # Decode every earlier prefix in one stacked batch; unconstrained steps get weight 0.
    prefixes = out.prefixes[:-1]
    st = jax.vmap(lambda p: msq.straight_through(e, p))(prefixes).reshape((-1,) + e.shape[1:])
    ol, al = model.decode(st)
    per = reconstruction_loss(ol, al, jnp.tile(ops, (t - 1, 1)),
                              jnp.tile(adj, (t - 1, 1, 1))).reshape(t - 1, b).mean(-1)
    arch = jnp.sum(weights[:-1] * per)
  kl = jnp.mean(jnp.sum(-0.5 * (1 + logvar - mu**2 - jnp.exp(logvar)), axis=(1, 2, 3)))
  loss = rec + vq + arch + cfg.beta_kl * kl
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
