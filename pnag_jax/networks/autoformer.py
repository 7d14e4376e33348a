"""The AutoFormer ViT subnet of a Tiny or Base config, as a Flax NNX module.

Mirrors microsoft/Cream `AutoFormer/model/vision_transformer/supernet_transformer.py`
(`Vision_TransformerSuper` with `set_sample_config`) as a standalone network, with
AutoFormer's released training flags: pre-norm, `qkv_bias=True`, `--change_qkv` (q, k
and v are `num_heads * 64` wide, independent of embed_dim), `--relative_position`
with `max_relative_position=14`, absolute position embedding, class-token head.

  patch embedding conv (kernel = stride = patch) -> embed_dim
  prepend cls token, add absolute position embedding
  per layer: x += proj(MHSA(LN(x)));  x += fc2(GELU(fc1(LN(x))))
  final LayerNorm, linear head on the cls token.

Parameters mirror `pnag_jax.spaces.autoformer.param_count` one for one, which follows
AutoFormer's `get_sampled_params_numel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax.spaces import autoformer as autoformer_space
from pnag_jax.spaces import get_space

PATCH_SIZE = autoformer_space.PATCH_SIZE
HEAD_DIM = autoformer_space.HEAD_DIM
MAX_RELATIVE_POSITION = autoformer_space.MAX_RELATIVE_POSITION

# The patch grid must hold at least one patch; the default patch is 16. `build` checks
# against the patch size it is given, which may be smaller (e.g. 4 for 32x32 inputs).
MIN_INPUT_SIZE = PATCH_SIZE


def min_input_size(*, patch_size: int = PATCH_SIZE, **unused: Any) -> int:
  """The smallest H = W `build` accepts with these builder kwargs: one patch."""
  del unused  # The other builder kwargs do not change it.
  return int(patch_size)

# nn.LayerNorm's default eps, which AutoFormer's LayerNormSuper keeps.
LN_EPS = 1e-5

# AutoFormer (like timm's ViT) initialises Linear weights, tokens and tables with a
# truncated normal of std 0.02 and biases with zeros; the patch conv keeps PyTorch's
# default, uniform(+-1/sqrt(fan_in)).
_TRUNC_INIT = nnx.initializers.truncated_normal(stddev=0.02)
_PATCH_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _linear(d_in: int, d_out: int, *, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(d_in, d_out, kernel_init=_TRUNC_INIT, rngs=rngs)


def _layer_norm(d: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(d, epsilon=LN_EPS, rngs=rngs)


def relative_position_index(grid_h: int, grid_w: int,
                            max_relative_position: int) -> tuple[np.ndarray, np.ndarray]:
  """Table rows `int[N, N]` (vertical, horizontal) for N = 1 + grid_h * grid_w tokens.

  As AutoFormer's `RelativePosition2D_super.forward`: patch i sits at row i // grid_w,
  column i % grid_w (the conv output flattened row-major); the offset of key j from
  query i per axis is clipped to +-max and shifted to [1, 2 * max + 1]; any pair
  involving the cls token (index 0) uses row 0. AutoFormer takes the grid width as
  `int(sqrt(N - 1))`, the same thing for its square grids.
  """
  idx = np.arange(grid_h * grid_w)
  rows, cols = idx // grid_w, idx % grid_w
  m = max_relative_position
  v = np.clip(rows[None, :] - rows[:, None], -m, m) + m + 1
  h = np.clip(cols[None, :] - cols[:, None], -m, m) + m + 1
  return (np.pad(v, ((1, 0), (1, 0))).astype(np.int32),
          np.pad(h, ((1, 0), (1, 0))).astype(np.int32))


class RelativePosition2D(nnx.Module):
  """A vertical and a horizontal table `[2 * max + 2, head_dim]`, summed per pair."""

  def __init__(self, head_dim: int, max_relative_position: int, *, rngs: nnx.Rngs):
    self.max_relative_position = max_relative_position
    rows = 2 * max_relative_position + 2
    self.table_v = nnx.Param(_TRUNC_INIT(rngs.params(), (rows, head_dim)))
    self.table_h = nnx.Param(_TRUNC_INIT(rngs.params(), (rows, head_dim)))

  def __call__(self, grid_h: int, grid_w: int) -> jax.Array:
    """Embeddings `[N, N, head_dim]` for the cls token plus a grid_h x grid_w grid."""
    # Trace-time constants: the grid is static.
    v, h = relative_position_index(grid_h, grid_w, self.max_relative_position)
    return self.table_v[...][v] + self.table_h[...][h]


class Attention(nnx.Module):
  """Multi-head self-attention of `num_heads` heads of `head_dim`, optional 2D rel. pos."""

  def __init__(self, embed_dim: int, num_heads: int, *, head_dim: int,
               relative_position: bool, max_relative_position: int, rngs: nnx.Rngs):
    self.num_heads, self.head_dim = num_heads, head_dim
    inner = num_heads * head_dim
    self.qkv = _linear(embed_dim, 3 * inner, rngs=rngs)
    self.proj = _linear(inner, embed_dim, rngs=rngs)
    if relative_position:
      self.rel_pos_k = RelativePosition2D(head_dim, max_relative_position, rngs=rngs)
      self.rel_pos_v = RelativePosition2D(head_dim, max_relative_position, rngs=rngs)
    else:
      self.rel_pos_k = self.rel_pos_v = None

  def __call__(self, x: jax.Array, grid: tuple[int, int]) -> jax.Array:
    b, n, _ = x.shape
    # AutoFormer lays the qkv output out as (3, heads, head_dim).
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
    q, k, v = (jnp.moveaxis(qkv[:, :, i], 2, 1) for i in range(3))  # [B, H, N, D]
    scale = self.head_dim**-0.5
    logits = jnp.einsum("bhid,bhjd->bhij", q, k)
    if self.rel_pos_k is not None:
      logits += jnp.einsum("bhid,ijd->bhij", q, self.rel_pos_k(*grid))
    attn = jax.nn.softmax(logits * scale, axis=-1)
    out = jnp.einsum("bhij,bhjd->bhid", attn, v)
    if self.rel_pos_v is not None:
      out += jnp.einsum("bhij,ijd->bhid", attn, self.rel_pos_v(*grid))
    out = jnp.moveaxis(out, 1, 2).reshape(b, n, self.num_heads * self.head_dim)
    return self.proj(out)


class EncoderLayer(nnx.Module):
  """Pre-norm transformer layer: attention and a GELU MLP, each residual."""

  def __init__(self, embed_dim: int, mlp_ratio: float, num_heads: int, *, head_dim: int,
               relative_position: bool, max_relative_position: int,
               dropout_rate: float, rngs: nnx.Rngs):
    # AutoFormer truncates the hidden width: int(embed_dim * mlp_ratio).
    hidden = int(embed_dim * mlp_ratio)
    self.attn_norm = _layer_norm(embed_dim, rngs=rngs)
    self.attn = Attention(embed_dim, num_heads, head_dim=head_dim,
                          relative_position=relative_position,
                          max_relative_position=max_relative_position, rngs=rngs)
    self.ffn_norm = _layer_norm(embed_dim, rngs=rngs)
    self.fc1 = _linear(embed_dim, hidden, rngs=rngs)
    self.fc2 = _linear(hidden, embed_dim, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

  def __call__(self, x: jax.Array, grid: tuple[int, int]) -> jax.Array:
    x = x + self.dropout(self.attn(self.attn_norm(x), grid))
    # PyTorch's nn.GELU is the exact (erf) form.
    y = self.dropout(jax.nn.gelu(self.fc1(self.ffn_norm(x)), approximate=False))
    return x + self.dropout(self.fc2(y))


def _unpack_config(config: Mapping[str, Any]) -> tuple[int, list[float], list[int]]:
  """(embed_dim, mlp_ratios, num_heads) of a canonical or AutoFormer-style config."""
  if "layer_num" in config:
    # AutoFormer's own dicts list embed_dim per layer; a subnet has one throughout.
    embeds = list(config["embed_dim"])
    if not embeds or any(e != embeds[0] for e in embeds):
      raise ValueError(f"autoformer config: embed_dim list {embeds} must be constant")
    embed_dim, depth = int(embeds[0]), int(config["layer_num"])
  else:
    embed_dim, depth = int(config["embed_dim"]), int(config["depth"])
  mlp_ratios = [float(r) for r in config["mlp_ratio"]]
  num_heads = [int(h) for h in config["num_heads"]]
  if embed_dim <= 0 or depth <= 0 or len(mlp_ratios) != depth or len(num_heads) != depth:
    raise ValueError(f"autoformer config: need embed_dim > 0, depth > 0 and depth entries "
                     f"in mlp_ratio and num_heads, got {dict(config)}")
  if any(r <= 0 for r in mlp_ratios) or any(h <= 0 for h in num_heads):
    raise ValueError(f"autoformer config: mlp ratios and head counts must be positive, "
                     f"got {mlp_ratios}, {num_heads}")
  return embed_dim, mlp_ratios, num_heads


class AutoFormerSubnet(nnx.Module):
  """An AutoFormer ViT subnet; `__call__` maps NHWC images to logits `[B, classes]`."""

  def __init__(self, config: Mapping[str, Any], *, num_classes: int,
               input_shape: tuple[int, int, int] = (224, 224, 3),
               patch_size: int = PATCH_SIZE, head_dim: int = HEAD_DIM,
               relative_position: bool = True,
               max_relative_position: int = MAX_RELATIVE_POSITION,
               dropout_rate: float = 0.0, rngs: nnx.Rngs):
    """Builds the subnet.

    Args:
      config: `{"embed_dim", "depth", "mlp_ratio": [depth], "num_heads": [depth]}`
        (canonical) or AutoFormer's own `{"layer_num", "embed_dim": [..], ...}`; any
        positive ratios and head counts, so published subnets outside a space's
        choices build too.
      num_classes: head outputs.
      input_shape: (H, W, C) of the NHWC inputs; fixes the position embedding.
      patch_size: patch side; H and W are floored to multiples of it, as a strided conv.
      head_dim: q/k/v width per head (AutoFormer's `--change_qkv` uses 64).
      relative_position: add AutoFormer's 2D relative-position tables to every layer.
      max_relative_position: clipping distance of the relative positions.
      dropout_rate: dropout on the attention and MLP outputs (AutoFormer's default 0).
      rngs: parameter (and dropout) randomness.
    """
    embed_dim, mlp_ratios, num_heads = _unpack_config(config)
    h, w, c = input_shape
    if min(h, w) < patch_size:
      raise ValueError(f"autoformer with patch {patch_size} needs inputs of at least "
                       f"{patch_size}x{patch_size}, got {h}x{w}")
    self.embed_dim, self.num_classes, self.in_channels = embed_dim, num_classes, c
    self.grid = (h // patch_size, w // patch_size)
    num_patches = self.grid[0] * self.grid[1]
    self.patch_embed = nnx.Conv(c, embed_dim, (patch_size, patch_size), strides=patch_size,
                                padding="VALID", kernel_init=_PATCH_INIT, rngs=rngs)
    self.cls_token = nnx.Param(_TRUNC_INIT(rngs.params(), (1, 1, embed_dim)))
    self.pos_embed = nnx.Param(_TRUNC_INIT(rngs.params(), (1, num_patches + 1, embed_dim)))
    self.layers = nnx.List([
        EncoderLayer(embed_dim, float(r), int(nh), head_dim=head_dim,
                     relative_position=relative_position,
                     max_relative_position=max_relative_position,
                     dropout_rate=dropout_rate, rngs=rngs)
        for r, nh in zip(mlp_ratios, num_heads)])
    self.norm = _layer_norm(embed_dim, rngs=rngs)
    self.head = _linear(embed_dim, num_classes, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b = x.shape[0]
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, self.in_channels)
    x = self.patch_embed(x)
    chex.assert_shape(x, (b, *self.grid, self.embed_dim))
    x = x.reshape(b, -1, self.embed_dim)  # row-major, as PyTorch's flatten(2)
    cls = jnp.broadcast_to(self.cls_token[...], (b, 1, self.embed_dim))
    x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...]
    x = self.dropout(x)
    for layer in self.layers:
      x = layer(x, self.grid)
    logits = self.head(self.norm(x)[:, 0])
    chex.assert_shape(logits, (b, self.num_classes))
    return logits


def _space_for(genes: np.ndarray, space: str | None) -> autoformer_space.AutoFormerSpace:
  if space is not None:
    return get_space(space)
  # Tiny and Base genes differ in length (2 + 2 * max_depth: 30 vs 34).
  for name in ("autoformer", "autoformer_base"):
    s = get_space(name)
    if genes.shape == (s.num_genes,):
      return s
  raise ValueError(f"autoformer genes must have shape (30,) (Tiny) or (34,) (Base), got "
                   f"{genes.shape}")


def build(genes: Any, *, input_shape: tuple[int, int, int], num_classes: int,
          rngs: nnx.Rngs, patch_size: int = PATCH_SIZE, relative_position: bool = True,
          max_relative_position: int = MAX_RELATIVE_POSITION, head_dim: int = HEAD_DIM,
          dropout_rate: float = 0.0, space: str | None = None) -> AutoFormerSubnet:
  """The subnet of AutoFormer genes (numpy or jax) for NHWC inputs of `input_shape`.

  Args:
    genes: Tiny (`int[30]`) or Base (`int[34]`) genes; the space is told by the length
      unless `space` ("autoformer" or "autoformer_base") names it.
    input_shape: (H, W, C); H and W must be at least `patch_size`.

  Raises:
    ValueError: the genes are malformed or the input is smaller than a patch.
  """
  genes = np.asarray(genes)
  config = _space_for(genes, space).to_native(genes)
  return AutoFormerSubnet(config, num_classes=num_classes, input_shape=tuple(input_shape),
                          patch_size=patch_size, head_dim=head_dim,
                          relative_position=relative_position,
                          max_relative_position=max_relative_position,
                          dropout_rate=dropout_rate, rngs=rngs)
