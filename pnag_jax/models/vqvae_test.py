"""The assembled VQ-VAE: where gradients flow, and what the loss sees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pnag_jax.configs.stage1 import make_config
from pnag_jax.models import msq, vqvae
from pnag_jax.spaces import get_space


@pytest.fixture(scope="module")
def setup():
  space = get_space("nb201")
  cfg = make_config("quick")
  model = vqvae.VQVAE(space, cfg, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  ops, adj = space.encode(space.sample(jax.random.key(0), 16))
  return space, cfg, graphdef, state, ops, adj


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
  model = nnx.merge(graphdef, state)
  loss, metrics = vqvae.loss_fn(model, cfg, ops, adj, jax.random.key(1))
  assert np.isfinite(float(loss)) and set(metrics) >= {"rec", "vq", "kl", "exact"}
  p_ops, p_adj, out, mu = vqvae.reconstruct(model, ops, adj)
  t = len(model.scales)
  assert model.scales == (3, 4, 5, 6, 7, 8)
  assert p_ops.shape == (t, 16, 8) and p_adj.shape == (t, 16, 8, 8)
  assert out.prefixes.shape == (t, 16, 8, 8, cfg.dim)
  assert not bool(jnp.any(jnp.tril(p_adj)))  # decoded adjacency is strictly upper triangular
  # Arch-level SCC adds a term, and t_max=0 removes every prefix VQ term.
  _, m_arch = vqvae.loss_fn(model, cfg.replace(arch_scc=True), ops, adj, jax.random.key(1))
  assert float(m_arch["arch_scc"]) > 0
  _, m0 = vqvae.loss_fn(model, cfg.replace(scc_t_max=0), ops, adj, jax.random.key(1))
  assert float(m0["vq"]) < float(metrics["vq"])
