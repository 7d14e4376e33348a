"""The AutoFormer ViT search spaces, Tiny and Base (DESIGN §2, AutoFormer row).

One embed_dim for the whole network, a depth, and per present layer an mlp_ratio and
a num_heads. The native string is the config as JSON,
`{"embed_dim": 192, "depth": 13, "mlp_ratio": [13 floats], "num_heads": [13 ints]}`;
AutoFormer's own subnet dicts (`layer_num`, per-layer `embed_dim` list) are accepted
too.

Dense form, N = max_depth + 2: node 0 is the input, whose op is `input_e<E>` and so
carries embed_dim; nodes 1..max_depth are the layers, a present layer's op being its
`mlp<r>_h<h>` token and a layer past the depth `skip`; node N-1 is the output. The
adjacency is the fixed chain i -> i+1.

Genes `int32[2 + 2 * max_depth]`: embed_idx, depth_idx, mlp_idx[max_depth],
heads_idx[max_depth]; entries past the depth are 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import ArchStringError
from pnag_jax.spaces import base, parsing

Array = jax.Array

_CANONICAL_KEYS = ("embed_dim", "depth", "mlp_ratio", "num_heads")
_AUTOFORMER_KEYS = ("layer_num", "embed_dim", "mlp_ratio", "num_heads")

# AutoFormer's ImageNet setting: 224x224 RGB, patch 16, 1000 classes, q/k/v 64 wide
# per head (`--change_qkv`), relative positions clipped at 14.
NUM_CLASSES = 1000
IMG_SIZE = 224
PATCH_SIZE = 16
IN_CHANS = 3
HEAD_DIM = 64
MAX_RELATIVE_POSITION = 14


# The searched subnets as released in AutoFormer (microsoft/Cream) and NNI's
# `AutoFormer.load_searched_model`. AutoFormer-T's mlp_ratio 3.0 lies outside the Tiny
# choices, so it is a config, not genes of the space.
AUTOFORMER_T = {
    "embed_dim": 192, "depth": 13,
    "mlp_ratio": [3.5, 3.5, 3.0, 3.5, 3.0, 3.0, 4.0, 4.0, 3.5, 4.0, 3.5, 4.0, 3.5],
    "num_heads": [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3],
}
AUTOFORMER_B = {
    "embed_dim": 576, "depth": 14,
    "mlp_ratio": [3.5, 3.5, 4.0, 3.5, 4.0, 3.5, 3.5, 3.0, 4.0, 4.0, 3.0, 4.0, 3.0, 3.5],
    "num_heads": [9, 9, 9, 9, 9, 10, 9, 9, 10, 9, 10, 9, 9, 10],
}


@dataclasses.dataclass(frozen=True)
class AutoFormerChoices:
  """The choices that define one AutoFormer space; each tuple sorted ascending."""
  name: str
  embed_dims: tuple[int, ...]
  depths: tuple[int, ...]
  mlp_ratios: tuple[float, ...]
  num_heads: tuple[int, ...]

  def __post_init__(self):
    for field, values in (("embed_dims", self.embed_dims), ("depths", self.depths),
                          ("mlp_ratios", self.mlp_ratios), ("num_heads", self.num_heads)):
      if not values or list(values) != sorted(set(values)) or min(values) <= 0:
        raise ValueError(f"{field} must be non-empty, positive, strictly increasing: "
                         f"{values}")


TINY_CHOICES = AutoFormerChoices(
    name="autoformer", embed_dims=(192, 216, 240), depths=(12, 13, 14),
    mlp_ratios=(3.5, 4.0), num_heads=(3, 4))
BASE_CHOICES = AutoFormerChoices(
    name="autoformer_base", embed_dims=(528, 576, 624), depths=(14, 15, 16),
    mlp_ratios=(3.0, 3.5, 4.0), num_heads=(9, 10))


# ---- host-side config parsing -------------------------------------------------


def _is_real(x: Any) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _is_finite(x: numbers.Real) -> bool:
  # float() of a huge JSON integer overflows; integers are finite anyway.
  return parsing.is_int(x) or math.isfinite(float(x))


def _parse_config(config: Any, where: str) -> tuple[int, int, list[Any], list[Any]]:
  """Checks a config's structure and value types, not its choices.

  Args:
    config: a canonical or AutoFormer-style config dict.
    where: names the space (or purpose) in error messages.

  Returns:
    (embed_dim, depth, mlp_ratios, num_heads); depth and embed_dim are positive ints,
    the lists have `depth` entries of real numbers and ints respectively.

  Raises:
    ArchStringError naming the problem.
  """
  if not isinstance(config, Mapping):
    raise ArchStringError(f"{where} config must be a JSON object (dict), got "
                          f"{type(config).__name__}")
  keys = set(config)
  expected = _AUTOFORMER_KEYS if "layer_num" in keys else _CANONICAL_KEYS
  missing = [k for k in expected if k not in keys]
  unknown = sorted(parsing.short_repr(k) for k in keys if k not in expected)
  if unknown:
    raise ArchStringError(f"{where} config: unknown key(s) {', '.join(unknown)}; "
                          f"expected keys {list(expected)}")
  if missing:
    raise ArchStringError(f"{where} config: missing key(s) {missing}")

  depth_key = "layer_num" if expected is _AUTOFORMER_KEYS else "depth"
  depth = config[depth_key]
  if not parsing.is_int(depth) or depth <= 0:
    raise ArchStringError(f"{depth_key} = {parsing.short_repr(depth)} must be a positive integer "
                          f"for {where}")
  depth = int(depth)

  def as_list(key: str) -> list[Any]:
    value = config[key]
    if not isinstance(value, (list, tuple)):
      raise ArchStringError(f"{key} must be a list of {depth} values for {where}, got "
                            f"{parsing.short_repr(value)}")
    if len(value) != depth:
      raise ArchStringError(f"{key} has {len(value)} entries but {depth_key} is "
                            f"{parsing.short_repr(depth)} for {where}")
    return list(value)

  if expected is _AUTOFORMER_KEYS:
    embeds = as_list("embed_dim")
    for i, e in enumerate(embeds):
      if not parsing.is_int(e):
        raise ArchStringError(f"embed_dim[{i}] = {parsing.short_repr(e)} must be an integer for "
                              f"{where}")
    if any(e != embeds[0] for e in embeds):
      raise ArchStringError(f"embed_dim list {parsing.short_repr(embeds)} must be constant (one "
                            f"embed_dim for the whole network) for {where}")
    embed = embeds[0]
    embed_field = "embed_dim[0]"
  else:
    embed = config["embed_dim"]
    embed_field = "embed_dim"
  if not parsing.is_int(embed) or embed <= 0:
    raise ArchStringError(f"{embed_field} = {parsing.short_repr(embed)} must be a positive integer "
                          f"for {where}")

  mlp = as_list("mlp_ratio")
  for i, r in enumerate(mlp):
    # The hidden width int(embed_dim * r) must exist too (1e308 is finite, its product not).
    if not _is_real(r) or not r > 0 or not _is_finite(r) or not _is_finite(embed * r):
      raise ArchStringError(f"mlp_ratio[{i}] = {parsing.short_repr(r)} must be a positive number "
                            f"(with a finite embed_dim * mlp_ratio) for {where}")
  heads = as_list("num_heads")
  for i, h in enumerate(heads):
    if not parsing.is_int(h) or h <= 0:
      raise ArchStringError(f"num_heads[{i}] = {parsing.short_repr(h)} must be a positive integer "
                            f"for {where}")
  return int(embed), depth, mlp, [int(h) for h in heads]


def _index_of(value: Any, choices: tuple[Any, ...], field: str, where: str) -> int:
  # Exact `==` (no float()), so 4 matches 4.0 and a huge int cannot overflow.
  for i, c in enumerate(choices):
    if value == c:
      return i
  raise ArchStringError(f"{field} = {parsing.short_repr(value)} is not one of {choices} for {where}")


# ---- AutoFormer's parameter count -----------------------------------------------


def _layer_params(embed_dim: int, mlp_ratio: float, num_heads: int, head_dim: int,
                  rel_pos_params: int) -> int:
  """Parameters of one pre-norm encoder layer of an AutoFormer subnet."""
  e, q = embed_dim, num_heads * head_dim
  hidden = int(embed_dim * mlp_ratio)  # AutoFormer truncates, as int(e * r).
  return (2 * e + 2 * e  # attn and ffn LayerNorms
          + e * 3 * q + 3 * q  # qkv, with bias
          + q * e + e  # proj back to embed_dim
          + e * hidden + hidden  # fc1
          + hidden * e + e  # fc2
          + rel_pos_params)


def _rel_pos_params(head_dim: int, max_relative_position: int) -> int:
  # rel_pos_embed_k and _v, each a vertical and a horizontal table of
  # (2 * max_relative_position + 2, head_dim).
  return 2 * 2 * (2 * max_relative_position + 2) * head_dim


def _stem_head_params(embed_dim: int, num_classes: int, img_size: int, patch_size: int,
                      in_chans: int) -> int:
  """Parameters outside the layers: patch embed, cls + pos, final norm, head."""
  num_patches = (img_size // patch_size)**2
  e = embed_dim
  return (in_chans * patch_size * patch_size * e + e  # patch-embedding conv
          + e * (2 + num_patches)  # cls token (1) and position embedding (patches + 1)
          + 2 * e  # final LayerNorm
          + e * num_classes + num_classes)  # head


def param_count(config: Mapping[str, Any], *, num_classes: int = NUM_CLASSES,
                img_size: int = IMG_SIZE, patch_size: int = PATCH_SIZE,
                in_chans: int = IN_CHANS, head_dim: int = HEAD_DIM,
                relative_position: bool = True,
                max_relative_position: int = MAX_RELATIVE_POSITION) -> int:
  """AutoFormer's parameter count of a subnet (`get_sampled_params_numel`).

  Follows microsoft/Cream AutoFormer `Vision_TransformerSuper.get_sampled_params_numel`
  with its released training flags (`qkv_bias=True`, `--change_qkv` so q/k/v are
  `num_heads * 64` wide, `--relative_position` with `max_relative_position=14`,
  absolute position embedding, pre-norm). Any positive mlp_ratio / num_heads is
  accepted, so published subnets outside a space's choices can be counted.

  The released AutoFormer-T subnet counts 5,867,944 (5,768,104 without the
  relative-position tables) against the paper's 5.7M; AutoFormer-B counts 53,691,688
  against 53.7M. Which setting the paper's 5.7M used is not confirmed.

  Args:
    config: a canonical or AutoFormer-style config dict.
    relative_position: count the relative-position tables (7,680 per layer). AutoFormer
      trains with them; pass False for the plain-ViT count.

  Returns:
    The exact parameter count.

  Raises:
    ArchStringError: `config` is malformed.
  """
  embed, _, mlp, heads = _parse_config(config, "param_count")
  rel = _rel_pos_params(head_dim, max_relative_position) if relative_position else 0
  total = _stem_head_params(embed, num_classes, img_size, patch_size, in_chans)
  for r, h in zip(mlp, heads):
    total += _layer_params(embed, r, h, head_dim, rel)
  return total


# ---- the space ----------------------------------------------------------------


class AutoFormerSpace(base.SearchSpace):
  """An AutoFormer space; `AutoFormerTinySpace` and `AutoFormerBaseSpace` fix the choices."""

  fixed_adjacency = True
  format_valid_decodes_exactly = False  # see SearchSpace: the depth is in the ops

  def __init__(self, choices: AutoFormerChoices):
    self.choices = choices
    self.name = choices.name
    self.embed_dim_choices = choices.embed_dims
    self.depth_choices = choices.depths
    self.mlp_ratio_choices = tuple(float(r) for r in choices.mlp_ratios)
    self.num_heads_choices = choices.num_heads
    self.min_depth = min(choices.depths)
    self.max_depth = max(choices.depths)

    n_e, n_m, n_h = len(choices.embed_dims), len(choices.mlp_ratios), len(choices.num_heads)
    self._n_heads = n_h
    self.num_layer_ops = n_m * n_h
    self.num_nodes = self.max_depth + 2
    self.input_ops = tuple(range(n_e))
    self.output_op = n_e
    self.first_layer_op = n_e + 1  # token of (mlp_idx, heads_idx) = first + m * n_h + h
    self.skip_op = self.first_layer_op + self.num_layer_ops
    self.node_ops = (tuple(f"input_e{e}" for e in choices.embed_dims) + ("output",)
                     + tuple(f"mlp{r}_h{h}" for r in self.mlp_ratio_choices
                             for h in choices.num_heads)
                     + ("skip",))
    self.edge_budget = self.num_nodes - 1
    self.gene_cardinalities = ((n_e, len(choices.depths))
                               + (n_m,) * self.max_depth + (n_h,) * self.max_depth)
    self._mlp = slice(2, 2 + self.max_depth)
    self._heads = slice(2 + self.max_depth, 2 + 2 * self.max_depth)
    self._chain = np.eye(self.num_nodes, k=1, dtype=bool)

  # ---- sizes --------------------------------------------------------------

  def size(self) -> int:
    return len(self.embed_dim_choices) * sum(
        self.num_layer_ops**d for d in self.depth_choices)

  # ---- native format (host) -------------------------------------------------

  def from_native(self, config: Any) -> np.ndarray:
    """Parses a canonical or AutoFormer-style config dict to genes `int32[G]`.

    Raises:
      ArchStringError naming the field that is wrong.
    """
    embed, depth, mlp, heads = _parse_config(config, self.name)
    depth_field = "layer_num" if "layer_num" in config else "depth"
    embed_field = "embed_dim[0]" if "layer_num" in config else "embed_dim"
    genes = np.zeros(self.num_genes, np.int32)
    genes[0] = _index_of(embed, self.embed_dim_choices, embed_field, self.name)
    genes[1] = _index_of(depth, self.depth_choices, depth_field, self.name)
    for i, (r, h) in enumerate(zip(mlp, heads)):
      genes[self._mlp.start + i] = _index_of(r, self.mlp_ratio_choices,
                                             f"mlp_ratio[{i}]", self.name)
      genes[self._heads.start + i] = _index_of(h, self.num_heads_choices,
                                               f"num_heads[{i}]", self.name)
    return genes

  def to_native(self, genes: np.ndarray) -> dict[str, Any]:
    """Genes `int[G]` to the canonical config dict (entries past the depth ignored)."""
    genes = np.asarray(genes)
    if genes.shape != (self.num_genes,) or not np.issubdtype(genes.dtype, np.integer):
      raise ValueError(f"{self.name}: expected integer genes of shape "
                       f"({self.num_genes},), got {genes.dtype}{genes.shape}")
    if np.any(genes < 0) or np.any(genes >= np.asarray(self.gene_cardinalities)):
      raise ValueError(f"{self.name}: genes out of range: {genes.tolist()}")
    depth = self.depth_choices[genes[1]]
    return {
        "embed_dim": int(self.embed_dim_choices[genes[0]]),
        "depth": int(depth),
        "mlp_ratio": [float(self.mlp_ratio_choices[i]) for i in genes[self._mlp][:depth]],
        "num_heads": [int(self.num_heads_choices[i]) for i in genes[self._heads][:depth]],
    }

  def from_string(self, s: str) -> np.ndarray:
    return self.from_native(parsing.load_json(s, f"{self.name} config"))

  def to_string(self, genes: np.ndarray) -> str:
    return json.dumps(self.to_native(genes))

  def param_count(self, config: Mapping[str, Any] | str, **kwargs) -> int:
    """`param_count` of a config dict or native string; choices are not enforced."""
    if isinstance(config, str):
      config = parsing.load_json(config, f"{self.name} config")
    return param_count(config, **kwargs)

  # ---- vectorised, jit-able -------------------------------------------------

  def _present(self, depth: Array) -> Array:
    """bool[..., max_depth]: which layers are inside `depth`."""
    return jnp.arange(self.max_depth) < depth[..., None]

  def sample(self, key: Array, n: int) -> Array:
    k_embed, k_depth, k_mlp, k_heads = jax.random.split(key, 4)
    embed = jax.random.randint(k_embed, (n,), 0, len(self.embed_dim_choices))
    # Depth d has num_layer_ops**d configurations, so uniform over archs weights it so.
    logits = jnp.asarray([d * np.log(self.num_layer_ops) for d in self.depth_choices],
                         jnp.float32)
    depth_idx = jax.random.categorical(k_depth, logits, shape=(n,))
    mlp = jax.random.randint(k_mlp, (n, self.max_depth), 0, len(self.mlp_ratio_choices))
    heads = jax.random.randint(k_heads, (n, self.max_depth), 0, self._n_heads)
    present = self._present(jnp.asarray(self.depth_choices)[depth_idx])
    return jnp.concatenate(
        [embed[:, None], depth_idx[:, None], jnp.where(present, mlp, 0),
         jnp.where(present, heads, 0)], axis=-1).astype(jnp.int32)

  def canonicalize(self, genes: Array) -> Array:
    """Zeroes the entries past the depth: they encode nothing."""
    genes = jnp.asarray(genes, jnp.int32)
    present = self._present(jnp.asarray(self.depth_choices)[genes[..., 1]])
    return jnp.concatenate(
        [genes[..., :2], jnp.where(present, genes[..., self._mlp], 0),
         jnp.where(present, genes[..., self._heads], 0)], axis=-1)

  def encode(self, genes: Array) -> tuple[Array, Array]:
    genes = jnp.asarray(genes, jnp.int32)
    lead = genes.shape[:-1]
    depth = jnp.asarray(self.depth_choices, jnp.int32)[genes[..., 1]]
    tokens = self.first_layer_op + genes[..., self._mlp] * self._n_heads + genes[..., self._heads]
    layers = jnp.where(self._present(depth), tokens, self.skip_op)
    ops = jnp.concatenate(
        [genes[..., :1], layers, jnp.full(lead + (1,), self.output_op, jnp.int32)],
        axis=-1).astype(jnp.int32)
    adj = jnp.broadcast_to(jnp.asarray(self._chain), lead + self._chain.shape)
    return ops, adj

  def _layer_tokens(self, ops: Array) -> tuple[Array, Array, Array]:
    """(is_layer, is_skip, leading layer count) of the layer nodes 1..N-2."""
    layers = ops[..., 1:-1]
    is_layer = (layers >= self.first_layer_op) & (layers < self.skip_op)
    is_skip = layers == self.skip_op
    count = jnp.sum(jnp.cumprod(is_layer.astype(jnp.int32), axis=-1), axis=-1)
    return is_layer, is_skip, count

  def decode(self, ops: Array, adj: Array) -> Array:
    del adj  # The chain is fixed; strict_valid checks it.
    ops = jnp.asarray(ops, jnp.int32)
    is_layer, _, count = self._layer_tokens(ops)
    depths = jnp.asarray(self.depth_choices, jnp.int32)
    # The largest depth choice <= count; the smallest when count is below them all.
    depth_idx = jnp.clip(jnp.sum(depths <= count[..., None], axis=-1) - 1, 0,
                         len(self.depth_choices) - 1)
    embed_idx = jnp.clip(ops[..., 0], 0, len(self.embed_dim_choices) - 1)
    keep = self._present(depths[depth_idx]) & is_layer
    rel = jnp.where(keep, ops[..., 1:-1] - self.first_layer_op, 0)
    return jnp.concatenate(
        [embed_idx[..., None], depth_idx[..., None], rel // self._n_heads,
         rel % self._n_heads], axis=-1).astype(jnp.int32)

  def format_valid(self, ops: Array, adj: Array) -> Array:
    del adj
    return base.io_format_valid(jnp.asarray(ops), self.num_ops, self.input_ops,
                                self.output_op)

  def strict_valid(self, ops: Array, adj: Array) -> Array:
    ops = jnp.asarray(ops, jnp.int32)
    adj = jnp.asarray(adj).astype(bool)
    is_layer, is_skip, count = self._layer_tokens(ops)
    # A prefix of `count` layer tokens, then skips only: no holes, no stray tokens.
    prefix_ok = jnp.all(jnp.where(self._present(count), is_layer, is_skip), axis=-1)
    depth_ok = jnp.isin(count, jnp.asarray(self.depth_choices))
    chain_ok = jnp.all(adj == jnp.asarray(self._chain), axis=(-2, -1))
    reach = base.path_exists(adj, jnp.ones(ops.shape, bool))
    return self.format_valid(ops, adj) & prefix_ok & depth_ok & chain_ok & reach

  def param_counts(self, genes: Array, relative_position: bool = True) -> Array:
    """`param_count` (default ImageNet setting) of genes `int[..., G]` as `int32[...]`.

    Exact while the count fits int32 (both spaces stay below 10^8).
    """
    genes = jnp.asarray(genes, jnp.int32)
    rel = _rel_pos_params(HEAD_DIM, MAX_RELATIVE_POSITION) if relative_position else 0
    table = np.array([[[_layer_params(e, r, h, HEAD_DIM, rel) for h in self.num_heads_choices]
                       for r in self.mlp_ratio_choices] for e in self.embed_dim_choices],
                     np.int32)
    stem = np.array([_stem_head_params(e, NUM_CLASSES, IMG_SIZE, PATCH_SIZE, IN_CHANS)
                     for e in self.embed_dim_choices], np.int32)
    embed = genes[..., :1]
    per_layer = jnp.asarray(table)[embed, genes[..., self._mlp], genes[..., self._heads]]
    present = self._present(jnp.asarray(self.depth_choices)[genes[..., 1]])
    return jnp.asarray(stem)[genes[..., 0]] + jnp.sum(
        jnp.where(present, per_layer, 0), axis=-1, dtype=jnp.int32)


class AutoFormerTinySpace(AutoFormerSpace):
  """AutoFormer-Tiny: embed {192, 216, 240}, depth {12, 13, 14}, mlp {3.5, 4}, heads {3, 4}."""

  def __init__(self):
    super().__init__(TINY_CHOICES)


class AutoFormerBaseSpace(AutoFormerSpace):
  """AutoFormer-Base: embed {528, 576, 624}, depth {14, 15, 16}, mlp {3, 3.5, 4}, heads {9, 10}."""

  def __init__(self):
    super().__init__(BASE_CHOICES)
