"""The assembled VQ-VAE: where gradients flow, and what the loss sees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pnag_jax.models import msq, vqvae
from pnag_jax.spaces import get_space
from pnag_jax.stages.stage1 import make_config, step_weights


@pytest.fixture(scope="module")
def setup():
  space = get_space("nb201")
  cfg = make_config("quick")
  model = vqvae.VQVAE(num_ops=space.num_ops, num_nodes=space.num_nodes,
                      edge_budget=space.edge_budget, dim=cfg.dim,
                      encoder_layers=cfg.encoder_layers, decoder_hidden=cfg.decoder_hidden,
                      codebook_size=cfg.codebook_size, scales=cfg.scales(space.num_nodes),
                      rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  ops, adj = space.encode(space.sample(jax.random.key(0), 16))
  return space, cfg, graphdef, state, ops, adj


def _loss(model, cfg, ops, adj, key):
  """The loss as the trainer calls it, for `cfg`."""
  return vqvae.loss_fn(model, ops, adj, key, step_weights=jnp.asarray(step_weights(cfg, 6)),
                       beta=cfg.beta, beta_kl=cfg.beta_kl,
                       paper_literal=cfg.scc_variant == "paper_literal",
                       arch_scc=cfg.arch_scc)


def _grads(setup, fn):
  _, cfg, graphdef, state, ops, adj = setup

  def loss(st):
    return fn(nnx.merge(graphdef, st), cfg, ops, adj)

  return nnx.to_pure_dict(jax.jit(jax.grad(loss))(state))


def _norm(tree):
  return float(sum(jnp.sum(x.astype(jnp.float32) ** 2) for x in jax.tree.leaves(tree)) ** 0.5)


def test_codebook_gets_gradient_from_vq_terms_only(setup):
  def vq_only(model, cfg, ops, adj):
    mu, _ = model.encode(ops, adj)
    out = model.quantize(mu)
    w = jnp.asarray(msq.scc_weights(len(model.scales), len(model.scales), 1.0))
    return jnp.sum(w * msq.vq_loss(mu, out.prefixes, cfg.beta))

  g = _grads(setup, vq_only)
  assert _norm(g["codebook"]) > 0
  assert _norm(g["encoder"]) > 0  # commitment term
  assert _norm(g["decoder"]) == 0


def test_encoder_gets_reconstruction_gradient_through_straight_through(setup):
  def rec_only(model, cfg, ops, adj):
    mu, _ = model.encode(ops, adj)
    out = model.quantize(mu)
    ol, al = model.decode(msq.straight_through(mu, out.e_hat))
    return vqvae.reconstruction_loss(ol, al, ops, adj).mean()

  g = _grads(setup, rec_only)
  assert _norm(g["encoder"]) > 0
  assert _norm(g["decoder"]) > 0
  assert _norm(g["codebook"]) == 0  # straight-through: the decoder's gradient skips Z


def test_full_loss_and_reconstruct_shapes(setup):
  space, cfg, graphdef, state, ops, adj = setup

  @jax.jit
  def losses(st, key):
    model = nnx.merge(graphdef, st)
    return {name: _loss(model, c, ops, adj, key)[1] for name, c in (
        ("default", cfg), ("arch", cfg.replace(arch_scc=True)),
        ("t0", cfg.replace(scc_t_max=0)))}

  m = losses(state, jax.random.key(1))
  assert np.isfinite(float(m["default"]["loss"]))
  assert set(m["default"]) >= {"rec", "vq", "kl", "exact"}
  # Arch-level SCC adds a term, and t_max=0 removes every prefix VQ term.
  assert float(m["arch"]["arch_scc"]) > 0
  assert float(m["t0"]["vq"]) < float(m["default"]["vq"])
  p_ops, p_adj, out, _ = jax.jit(lambda st: vqvae.reconstruct(nnx.merge(graphdef, st), ops,
                                                                adj))(state)
  t = 6
  assert nnx.merge(graphdef, state).scales == (3, 4, 5, 6, 7, 8)
  assert p_ops.shape == (t, 16, 8) and p_adj.shape == (t, 16, 8, 8)
  assert out.prefixes.shape == (t, 16, 8, 8, cfg.dim)
  assert not bool(jnp.any(jnp.tril(p_adj)))  # decoded adjacency is strictly upper triangular
