"""Tests for the AutoFormer ViT subnet builder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pnag_jax.networks import autoformer
from pnag_jax.spaces import autoformer as autoformer_space
from pnag_jax.spaces import get_space
from pnag_jax.spaces.autoformer import param_count

AUTOFORMER_T, AUTOFORMER_B = autoformer_space.AUTOFORMER_T, autoformer_space.AUTOFORMER_B


def _rngs(seed: int = 0) -> nnx.Rngs:
  # rbg keys compile much faster than threefry on CPU.
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _param_count(model: nnx.Module) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _abstract(make):
  # Shapes only: a Base model is 53.7M parameters.
  return nnx.eval_shape(make)


# ---- parameter counts --------------------------------------------------------------


@pytest.mark.parametrize(("config", "relative_position", "expected"), [
    # AutoFormer's get_sampled_params_numel for the released subnets (the figures that
    # pnag_jax/spaces/autoformer.py documents; the paper reports 5.7M and 53.7M).
    (AUTOFORMER_T, True, 5_867_944),
    (AUTOFORMER_T, False, 5_768_104),
    (AUTOFORMER_B, True, 53_691_688),
    # 14 layers x 7,680 relative-position parameters fewer.
    (AUTOFORMER_B, False, 53_584_168),
])
def test_published_subnet_param_counts(config, relative_position, expected):
  assert param_count(config, relative_position=relative_position) == expected
  model = _abstract(lambda: autoformer.AutoFormerSubnet(
      config, num_classes=1000, input_shape=(224, 224, 3),
      relative_position=relative_position, rngs=nnx.Rngs(0)))
  assert _param_count(model) == expected


def test_published_base_subnet_builds_from_genes():
  space = get_space("autoformer_base")
  genes = space.from_native(AUTOFORMER_B)
  model = _abstract(lambda: autoformer.build(
      genes, input_shape=(224, 224, 3), num_classes=1000, rngs=nnx.Rngs(0)))
  assert _param_count(model) == 53_691_688


@pytest.mark.parametrize("name", ["autoformer", "autoformer_base"])
def test_sampled_param_counts_match_the_space(name):
  space = get_space(name)
  genes = np.asarray(space.sample(jax.random.key(3), 1))
  for g in genes:
    for rel in (True, False):
      model = _abstract(lambda g=g, rel=rel: autoformer.build(
          g, input_shape=(224, 224, 3), num_classes=1000, relative_position=rel,
          rngs=nnx.Rngs(0)))
      assert _param_count(model) == space.param_count(space.to_native(g),
                                                      relative_position=rel)


def test_param_count_follows_the_image_and_patch_size():
  # Only the position embedding and the patch conv depend on them.
  config = get_space("autoformer").to_native(np.zeros(30, np.int32))
  model = _abstract(lambda: autoformer.AutoFormerSubnet(
      config, num_classes=10, input_shape=(32, 32, 3), patch_size=4, rngs=nnx.Rngs(0)))
  assert _param_count(model) == param_count(config, num_classes=10, img_size=32,
                                            patch_size=4)


# ---- agreement with AutoFormer's attention ----------------------------------------


def _reference_rel_index(length: int, max_rel: int) -> tuple[np.ndarray, np.ndarray]:
  """AutoFormer's RelativePosition2D_super index computation, step for step."""
  n = length - 1
  side = int(n**0.5)
  r = np.arange(n)
  dv = r[None, :] // side - r[:, None] // side
  dh = r[None, :] % side - r[:, None] % side
  fv = np.clip(dv, -max_rel, max_rel) + max_rel + 1
  fh = np.clip(dh, -max_rel, max_rel) + max_rel + 1
  return np.pad(fv, ((1, 0), (1, 0))), np.pad(fh, ((1, 0), (1, 0)))


def _reference_attention(x, p, num_heads, max_rel):
  """AutoFormer's AttentionSuper.forward (relative positions on), transcribed to numpy.

  Keeps its permute / reshape sequence so that a layout mismatch would show; weights
  are Flax's (in, out) kernels, so `x @ W` stands for PyTorch's `x @ W.T`.
  """
  b, n, _ = x.shape
  qkv = (x @ p["qkv_w"] + p["qkv_b"]).reshape(b, n, 3, num_heads, -1)
  q, k, v = qkv.transpose(2, 0, 3, 1, 4)
  scale = q.shape[-1]**-0.5
  iv, ih = _reference_rel_index(n, max_rel)
  r_k = p["k_v"][iv] + p["k_h"][ih]
  r_v = p["v_v"][iv] + p["v_h"][ih]
  attn = (q @ k.swapaxes(-2, -1)) * scale
  attn = attn + (q.transpose(2, 0, 1, 3).reshape(n, num_heads * b, -1)
                 @ r_k.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(b, num_heads, n, n) * scale
  attn = np.exp(attn - attn.max(-1, keepdims=True))
  attn /= attn.sum(-1, keepdims=True)
  out = (attn @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
  attn_1 = attn.transpose(2, 0, 1, 3).reshape(n, b * num_heads, -1)
  out = out + (attn_1 @ r_v).transpose(1, 0, 2).reshape(b, num_heads, n, -1).transpose(
      0, 2, 1, 3).reshape(b, n, -1)
  return out @ p["proj_w"] + p["proj_b"]


def test_relative_position_index_matches_autoformer():
  for side, max_rel in ((4, 2), (5, 14), (3, 1)):
    ours = autoformer.relative_position_index(side, side, max_rel)
    ref = _reference_rel_index(side * side + 1, max_rel)
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_array_equal(ours[1], ref[1])
  v, h = autoformer.relative_position_index(2, 3, 14)
  assert v.shape == h.shape == (7, 7)
  assert v[0].max() == 0 and h[:, 0].max() == 0  # the cls token's row and column


def test_attention_matches_autoformer():
  heads, head_dim, embed, max_rel, side = 2, 4, 8, 2, 4
  attn = autoformer.Attention(embed, heads, head_dim=head_dim, relative_position=True,
                              max_relative_position=max_rel, rngs=_rngs(1))
  # Give the tables non-trivial values so that a wrong index shows.
  keys = jax.random.split(jax.random.key(5), 4)
  for table, key in zip((attn.rel_pos_k.table_v, attn.rel_pos_k.table_h,
                         attn.rel_pos_v.table_v, attn.rel_pos_v.table_h), keys):
    table[...] = jax.random.normal(key, table.shape)
  x = np.asarray(jax.random.normal(jax.random.key(6), (2, side * side + 1, embed)))
  params = {
      "qkv_w": attn.qkv.kernel[...], "qkv_b": attn.qkv.bias[...],
      "proj_w": attn.proj.kernel[...], "proj_b": attn.proj.bias[...],
      "k_v": attn.rel_pos_k.table_v[...], "k_h": attn.rel_pos_k.table_h[...],
      "v_v": attn.rel_pos_v.table_v[...], "v_h": attn.rel_pos_v.table_h[...],
  }
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  expected = _reference_attention(x.astype(np.float64), params, heads, max_rel)
  np.testing.assert_allclose(attn(jnp.asarray(x), (side, side)), expected,
                             rtol=1e-4, atol=1e-5)


# ---- forward passes ------------------------------------------------------------------


def test_forward_sampled_tiny_on_small_images():
  space = get_space("autoformer")
  genes = space.sample(jax.random.key(0), 1)[0]
  model = autoformer.build(genes, input_shape=(32, 32, 3), num_classes=10, patch_size=4,
                           rngs=_rngs())
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  logits = nnx.jit(lambda m, x: m(x))(model, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("relative_position", [False, True])
def test_forward_small_config_on_a_non_square_grid(relative_position):
  config = {"embed_dim": 16, "depth": 2, "mlp_ratio": [2.0, 3.5], "num_heads": [1, 2]}
  model = autoformer.AutoFormerSubnet(config, num_classes=5, input_shape=(8, 12, 1),
                                      patch_size=4, head_dim=8,
                                      relative_position=relative_position,
                                      dropout_rate=0.1, rngs=_rngs())
  assert model.pos_embed.shape == (1, 1 + 2 * 3, 16)
  x = jax.random.normal(jax.random.key(1), (2, 8, 12, 1))
  forward = nnx.jit(lambda m, x: m(x))
  assert np.all(np.isfinite(forward(model, x)))  # train mode: dropout on
  model.eval()
  logits = forward(model, x)
  assert logits.shape == (2, 5) and np.all(np.isfinite(logits))
  np.testing.assert_allclose(logits, forward(model, x))


# ---- build ----------------------------------------------------------------------------


def test_build_tells_tiny_from_base_by_gene_length():
  tiny = get_space("autoformer").from_native(
      {"embed_dim": 240, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [4] * 12})
  model = _abstract(lambda: autoformer.build(tiny, input_shape=(32, 32, 3), num_classes=10,
                                             patch_size=4, rngs=nnx.Rngs(0)))
  assert model.embed_dim == 240 and len(model.layers) == 12
  base = jnp.asarray(get_space("autoformer_base").from_native(AUTOFORMER_B))
  model = _abstract(lambda: autoformer.build(base, input_shape=(32, 32, 3),
                                             num_classes=10, patch_size=4,
                                             rngs=nnx.Rngs(0)))
  assert model.embed_dim == 576 and len(model.layers) == 14
  assert [layer.attn.num_heads for layer in model.layers] == AUTOFORMER_B["num_heads"]
  assert [layer.fc1.out_features for layer in model.layers] == [
      int(576 * r) for r in AUTOFORMER_B["mlp_ratio"]]


def test_build_rejects_bad_genes_and_small_inputs():
  with pytest.raises(ValueError, match="shape"):
    autoformer.build(np.zeros(31, np.int32), input_shape=(32, 32, 3), num_classes=10,
                     rngs=_rngs())
  with pytest.raises(ValueError, match="at least 16x16"):
    autoformer.build(np.zeros(30, np.int32), input_shape=(8, 8, 3), num_classes=10,
                     rngs=_rngs())
  assert autoformer.MIN_INPUT_SIZE == 16
  assert autoformer.min_input_size() == 16
  assert autoformer.min_input_size(patch_size=4, relative_position=False) == 4
  with pytest.raises(ValueError, match="at least 4x4"):
    autoformer.build(np.zeros(30, np.int32), input_shape=(3, 8, 3), num_classes=10,
                     patch_size=4, rngs=_rngs())
