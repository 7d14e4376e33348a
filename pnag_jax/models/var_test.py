"""The next-scale transformer: cached decoding, causality, guidance, AdaLN gradients."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax.models import msq
from pnag_jax.models import var

SCALES = (3, 4, 5)       # P = 9 + 16 + 25 = 50 tokens
CODE_DIM, VOCAB = 8, 16


def _model(cond_dim=0, seed=0):
  net = var.ScaleTransformer(code_dim=CODE_DIM, vocab=VOCAB, scales=SCALES, width=32,
                             depth=2, heads=2, mlp_ratio=2, cond_dim=cond_dim,
                             rngs=nnx.Rngs(seed))
  # At init the gates are ~1e-3 and the head ~0.02 of a normal init: every path
  # would agree to 1e-5 trivially. Perturb every weight to O(1) so the checks bite.
  graphdef, state = nnx.split(net)
  leaves, tree = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
  leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


def _tokens(batch, seed=1):
  return jax.random.randint(jax.random.key(seed), (batch, sum(s * s for s in SCALES)), 0, VOCAB)


def _codebook():
  return jax.random.normal(jax.random.key(7), (VOCAB, CODE_DIM))


def _cached_logits(net, tokens, codebook, cond):
  """Teacher-forced logits scale by scale through the KV cache."""
  layout = msq.TokenLayout(SCALES)
  inputs = var.teacher_inputs(tokens, codebook, SCALES)
  n0 = SCALES[0] ** 2
  cache = net.init_cache(tokens.shape[0])
  out = []
  for t, sl in enumerate(layout.slices):
    x = net.embed_scale(t, None if t == 0 else inputs[:, sl.start - n0:sl.stop - n0], cond)
    logits, cache = net.decode_scale(t, x, cond, cache)
    out.append(logits)
  return jnp.concatenate(out, axis=1)


def test_block_causal_mask_counts():
  mask = var.block_causal_mask(SCALES)
  assert mask.shape == (50, 50)
  # Scale-1 tokens see 9 keys, scale-2 tokens 25, scale-3 tokens all 50.
  np.testing.assert_array_equal(mask.sum(1), [9] * 9 + [25] * 16 + [50] * 25)


def test_block_causal_attention_equals_masked_attention():
  q, k, v = (jax.random.normal(key, (3, 50, 2, 8)) for key in jax.random.split(jax.random.key(0), 3))
  mask = jnp.asarray(var.block_causal_mask(SCALES))
  ref = jax.nn.dot_product_attention(q, k, v, mask=mask[None, None])
  np.testing.assert_allclose(var.block_causal_attention(q, k, v, SCALES), ref, atol=1e-5)


def test_cached_decoding_equals_full_pass():
  # Conditional rows and null rows (what an unconditional model always reads) at once.
  net, codebook, tokens = _model(cond_dim=5), _codebook(), _tokens(4)
  c = jax.random.normal(jax.random.key(3), (4, 5))
  cond = net.condition(c, jnp.array([False, True, False, True]))
  full = jax.jit(lambda t: net(var.teacher_inputs(t, codebook, SCALES), cond))(tokens)
  cached = jax.jit(lambda t: _cached_logits(net, t, codebook, cond))(tokens)
  assert float(jnp.abs(full).max()) > 1.0  # logits of substance, not ~0
  np.testing.assert_allclose(cached, full, atol=1e-5, rtol=0)


def test_later_scales_never_change_earlier_logits():
  net, codebook = _model(), _codebook()
  cond = net.condition(None, jnp.ones((2,), bool))
  a = _tokens(2, seed=1)
  b = a.at[:, 9 + 16:].set((a[:, 9 + 16:] + 1) % VOCAB)  # the last scale only
  c = a.at[:, 9:].set((a[:, 9:] + 3) % VOCAB)            # every scale but the first
  forward = jax.jit(lambda t: net(var.teacher_inputs(t, codebook, SCALES), cond))
  la, lb, lc = (forward(t) for t in (a, b, c))
  # Scale t's logits read scales < t: changing scale 3 touches no logits (the last
  # scale's input is built from scales 1-2); changing scales 2-3 touches scale 3 only.
  np.testing.assert_array_equal(la, lb)
  np.testing.assert_array_equal(la[:, :25], lc[:, :25])
  assert not np.allclose(la[:, 25:], lc[:, 25:])


def test_guidance_ramp_and_first_scale_equals_conditional():
  assert var.guidance_weight(2.0, 0, 3) == 0.0
  assert var.guidance_weight(2.0, 2, 3) == 2.0
  net, codebook = _model(cond_dim=5), _codebook()
  c = net.condition(jax.random.normal(jax.random.key(4), (3, 5)), jnp.zeros((3,), bool))
  key = jax.random.key(5)
  sample = jax.jit(lambda s: var.generate(net, codebook, key, c, cfg_scale=s),
                   static_argnums=0)
  guided, plain = sample(3.0), sample(0.0)
  # Scale 0 has weight 0: the same tokens as the conditional model, from the same key.
  np.testing.assert_array_equal(guided[:, :9], plain[:, :9])
  # Later scales are guided: over 3 archs x 41 tokens, some differ.
  assert (guided[:, 9:] != plain[:, 9:]).any()


def test_guided_greedy_tokens_are_the_argmax_of_the_mixed_logits():
  net, codebook = _model(cond_dim=5), _codebook()
  c = net.condition(jax.random.normal(jax.random.key(4), (3, 5)), jnp.zeros((3,), bool))
  null = net.condition(None, jnp.ones((3,), bool))
  tokens = jax.jit(lambda k: var.generate(net, codebook, k, c, cfg_scale=3.0,
                                          temperature=0.0))(jax.random.key(0))
  forward = jax.jit(lambda t, cond: net(var.teacher_inputs(t, codebook, SCALES), cond))
  cond_logits, null_logits = forward(tokens, c), forward(tokens, null)
  # Scale by scale, (1 + w_t) * conditional - w_t * null, by hand: a flipped sign or a
  # swapped half would pick other tokens.
  start, flipped_differs = 0, False
  for t, n in enumerate(SCALES):
    w = var.guidance_weight(3.0, t, len(SCALES))
    part = slice(start, start + n * n)
    mixed = (1 + w) * cond_logits[:, part] - w * null_logits[:, part]
    np.testing.assert_array_equal(tokens[:, part], jnp.argmax(mixed, -1))
    flipped = (1 + w) * null_logits[:, part] - w * cond_logits[:, part]
    flipped_differs |= bool((jnp.argmax(flipped, -1) != tokens[:, part]).any())
    start += n * n
  assert flipped_differs


def test_generate_is_decoding_argmax_at_temperature_zero():
  net, codebook = _model(), _codebook()
  cond = net.condition(None, jnp.ones((2,), bool))
  tokens = jax.jit(lambda k: var.generate(net, codebook, k, cond, temperature=0.0))(
      jax.random.key(0))
  # Greedy tokens are the argmax of the teacher-forced logits of those same tokens.
  logits = jax.jit(lambda t: net(var.teacher_inputs(t, codebook, SCALES), cond))(tokens)
  np.testing.assert_array_equal(tokens, jnp.argmax(logits, -1))


def test_filter_logits_top_k_and_top_p():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  keep = lambda **kw: np.isfinite(var.filter_logits(logits, temperature=1.0, **kw))[0]
  np.testing.assert_array_equal(keep(top_k=2, top_p=1.0), [1, 1, 0, 0])
  np.testing.assert_array_equal(keep(top_k=0, top_p=0.5), [1, 0, 0, 0])
  np.testing.assert_array_equal(keep(top_k=0, top_p=0.8), [1, 1, 0, 0])
  np.testing.assert_array_equal(keep(top_k=0, top_p=0.81), [1, 1, 1, 0])


def test_adaln_modulation_gets_gradients():
  net = _model(cond_dim=5)
  graphdef, state = nnx.split(net)
  tokens, codebook = _tokens(2), _codebook()
  c = jax.random.normal(jax.random.key(6), (2, 5))

  def loss(state):
    m = nnx.merge(graphdef, state)
    return m(var.teacher_inputs(tokens, codebook, SCALES),
             m.condition(c, jnp.zeros((2,), bool))).std()

  grads = nnx.to_pure_dict(jax.jit(jax.grad(loss))(state))
  for i in range(2):
    assert float(jnp.abs(grads["blocks"][i]["ada"]["kernel"]).min()) > 0
  assert float(jnp.abs(grads["head_ada"]["kernel"]).max()) > 0
  assert float(jnp.abs(grads["cond_embed"]["kernel"]).max()) > 0


def test_condition_embeddings_read_the_target():
  # The mlp embedding sees the target (the last entry) through Fourier features: two
  # conditions that differ only in the target embed apart, and the null rows ignore both.
  net = var.ScaleTransformer(code_dim=CODE_DIM, vocab=VOCAB, scales=SCALES, width=32, depth=1,
                             heads=2, mlp_ratio=2, cond_dim=5, cond_embed="mlp",
                             cond_frequencies=4, rngs=nnx.Rngs(0))
  c = jnp.tile(jax.random.normal(jax.random.key(1), (1, 5)), (4, 1)).at[:, -1].set(
      jnp.array([0.1, 0.9, 0.1, 0.9]))
  emb = net.condition(c, jnp.array([False, False, True, True]))
  assert float(jnp.abs(emb[0] - emb[1]).max()) > 1e-3
  np.testing.assert_array_equal(emb[2], emb[3])
  with np.testing.assert_raises(ValueError):
    var.ScaleTransformer(code_dim=CODE_DIM, vocab=VOCAB, scales=SCALES, width=32, depth=1,
                         heads=2, mlp_ratio=2, cond_dim=5, cond_embed="film", rngs=nnx.Rngs(0))


def test_condition_embed_expands_every_target():
  # A budget vector ends in one target per count: each gets its own Fourier features.
  emb = var.ConditionEmbed(4, 16, 3, targets=2, rngs=nnx.Rngs(0))
  assert emb.fc1.kernel.shape == (4 + 2 * 3 * 2, 16)
  c = jnp.array([[1.0, 1.0, 0.2, 0.7]])
  # Moving either target moves the embedding.
  for i in (2, 3):
    moved = c.at[0, i].add(0.5)
    assert float(jnp.abs(emb(moved) - emb(c)).max()) > 1e-3
  with np.testing.assert_raises(ValueError):
    var.ConditionEmbed(4, 16, 3, targets=5, rngs=nnx.Rngs(0))
