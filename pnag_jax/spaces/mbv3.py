"""The OFA MobileNetV3 search space (DESIGN §2, MBV3 row).

Five stages of four layers each. A stage has depth 2, 3 or 4; each layer picks a
kernel size (3, 5, 7) and an expand ratio (3, 4, 6). The native string is the OFA
dict `{"ks": [20], "e": [20], "d": [5]}` as JSON.

Dense form: node 0 input, nodes 1..20 the 20 layers in order (stage-major), node 21
output, on a fixed chain. A present layer's op id is `2 + 3 * ks_idx + e_idx`; a layer
past its stage's depth is `skip`.

Genes `int32[45]`: `ks_idx[20]`, `e_idx[20]`, `d_idx[5]`. OFA dicts list `ks` and `e`
for all 20 layers, including those past the depth, so genes keep those entries and
the native string round-trips exactly; `canonicalize` zeroes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import ArchStringError
from pnag_jax.spaces import base, parsing

Array = jax.Array

KERNEL_SIZES = (3, 5, 7)
EXPAND_RATIOS = (3, 4, 6)
DEPTHS = (2, 3, 4)
NUM_STAGES = 5
LAYERS_PER_STAGE = 4
NUM_LAYERS = NUM_STAGES * LAYERS_PER_STAGE
NUM_LAYER_OPS = len(KERNEL_SIZES) * len(EXPAND_RATIOS)

# Gene slices.
_KS = slice(0, NUM_LAYERS)
_E = slice(NUM_LAYERS, 2 * NUM_LAYERS)
_D = slice(2 * NUM_LAYERS, 2 * NUM_LAYERS + NUM_STAGES)
_NUM_GENES = 2 * NUM_LAYERS + NUM_STAGES

_FIRST_LAYER_OP = 2
SKIP_OP = 11

_NATIVE_KEYS = (("ks", KERNEL_SIZES, NUM_LAYERS), ("e", EXPAND_RATIOS, NUM_LAYERS),
                ("d", DEPTHS, NUM_STAGES))


def count_archs(num_stages: int = NUM_STAGES, depths: Sequence[int] = DEPTHS,
                num_layer_ops: int = NUM_LAYER_OPS) -> int:
  """Distinct networks: per stage, one op sequence for each allowed depth."""
  return sum(num_layer_ops**d for d in depths)**num_stages


def _chain_adjacency(n: int) -> np.ndarray:
  return np.eye(n, k=1, dtype=bool)


class MBV3Space(base.SearchSpace):
  """OFA MobileNetV3: 5 stages x 4 layers on a fixed chain."""

  name = "mbv3"
  num_nodes = NUM_LAYERS + 2
  node_ops = ("input", "output", "k3_e3", "k3_e4", "k3_e6", "k5_e3", "k5_e4",
              "k5_e6", "k7_e3", "k7_e4", "k7_e6", "skip")
  input_ops = (0,)
  output_op = 1
  gene_cardinalities = (3,) * _NUM_GENES
  edge_budget = NUM_LAYERS + 1
  fixed_adjacency = True

  # ---- sizes --------------------------------------------------------------

  def size(self) -> int:
    return count_archs()

  # ---- native format (host) -------------------------------------------------

  def from_native(self, d: Any) -> np.ndarray:
    """Parses an OFA dict `{"ks": [20], "e": [20], "d": [5]}` to genes `int32[45]`.

    OFA's `"wid": null` and a resolution of 224 (`"r": 224` or `[224]`), the one mbv3
    subnets run at, are accepted.

    Raises:
      ArchStringError: naming the first problem found.
    """
    if not isinstance(d, dict):
      raise ArchStringError(f"OFA dict: expected a dict, got {type(d).__name__}")
    d, r = _without_ofa_extras(d)
    if r is not None and r != RESOLUTIONS[-1]:
      raise ArchStringError(f"OFA dict: mbv3 subnets run at {RESOLUTIONS[-1]} px, got 'r' = "
                            f"{r}; the mbv3_r space searches the resolution")
    expected = [k for k, _, _ in _NATIVE_KEYS]
    missing = [k for k in expected if k not in d]
    unknown = [k for k in d if k not in expected]
    if missing or unknown:
      parts = []
      if missing:
        parts.append(f"missing keys {missing}")
      if unknown:
        parts.append("unknown keys [" + ", ".join(parsing.short_repr(k) for k in unknown[:5])
                     + (", ..." if len(unknown) > 5 else "") + "]")
      raise ArchStringError("OFA dict: " + "; ".join(parts))
    genes = []
    for key, choices, length in _NATIVE_KEYS:
      values = d[key]
      if not isinstance(values, (list, tuple)):
        raise ArchStringError(
            f"OFA dict: {key!r} must be a list, got {type(values).__name__}")
      if len(values) != length:
        raise ArchStringError(
            f"OFA dict: {key!r} must have {length} entries, got {len(values)}")
      for i, v in enumerate(values):
        if not parsing.is_int(v):
          raise ArchStringError(
              f"OFA dict: {key}[{i}] must be an int, got {type(v).__name__} {parsing.short_repr(v)}")
        if int(v) not in choices:
          raise ArchStringError(
              f"OFA dict: {key}[{i}] = {parsing.short_repr(v)} is not one of {list(choices)}")
        genes.append(choices.index(int(v)))
    return np.asarray(genes, np.int32)

  def to_native(self, genes: np.ndarray) -> dict[str, list[int]]:
    """Genes `int[45]` to the OFA dict (plain Python ints, key order ks, e, d)."""
    g = np.asarray(genes)
    if g.shape != (_NUM_GENES,):
      raise ValueError(f"mbv3 genes must have shape ({_NUM_GENES},), got {g.shape}")
    if not np.issubdtype(g.dtype, np.integer):
      raise ValueError(f"mbv3 genes must be integers, got dtype {g.dtype}")
    if np.any((g < 0) | (g >= 3)):
      raise ValueError(f"mbv3 genes must lie in [0, 3), got {g.tolist()}")
    return {
        "ks": [KERNEL_SIZES[i] for i in g[_KS].tolist()],
        "e": [EXPAND_RATIOS[i] for i in g[_E].tolist()],
        "d": [DEPTHS[i] for i in g[_D].tolist()],
    }

  def from_string(self, s: str) -> np.ndarray:
    return self.from_native(parsing.load_json(s, "OFA dict"))

  def to_string(self, genes: np.ndarray) -> str:
    return json.dumps(self.to_native(genes))

  # ---- vectorised, jit-able -------------------------------------------------

  def _present(self, d_idx: Array) -> Array:
    """`bool[..., 20]`: whether each layer lies within its stage's depth."""
    depth = jnp.asarray(d_idx, jnp.int32) + DEPTHS[0]
    per_layer = jnp.repeat(depth, LAYERS_PER_STAGE, axis=-1)
    pos = jnp.arange(NUM_LAYERS, dtype=jnp.int32) % LAYERS_PER_STAGE
    return pos < per_layer

  def canonicalize(self, genes: Array) -> Array:
    """Zeroes ks/e of layers past their stage's depth; they do not change the network."""
    genes = jnp.asarray(genes, jnp.int32)
    present = self._present(genes[..., _D])
    ks = jnp.where(present, genes[..., _KS], 0)
    e = jnp.where(present, genes[..., _E], 0)
    return jnp.concatenate([ks, e, genes[..., _D]], axis=-1)

  def sample(self, key: Array, n: int) -> Array:
    """Uniform over networks: a depth-d stage has 9**d op sequences, so weight 9**d."""
    k_depth, k_ops = jax.random.split(key)
    logits = jnp.log(jnp.asarray([float(NUM_LAYER_OPS)**d for d in DEPTHS], jnp.float32))
    d_idx = jax.random.categorical(k_depth, logits, shape=(n, NUM_STAGES)).astype(jnp.int32)
    layer_op = jax.random.randint(k_ops, (n, NUM_LAYERS), 0, NUM_LAYER_OPS, jnp.int32)
    genes = jnp.concatenate(
        [layer_op // len(EXPAND_RATIOS), layer_op % len(EXPAND_RATIOS), d_idx], axis=-1)
    return self.canonicalize(genes)

  def encode(self, genes: Array) -> tuple[Array, Array]:
    genes = jnp.asarray(genes, jnp.int32)
    batch = genes.shape[:-1]
    present = self._present(genes[..., _D])
    layer_op = _FIRST_LAYER_OP + len(EXPAND_RATIOS) * genes[..., _KS] + genes[..., _E]
    layer_op = jnp.where(present, layer_op, SKIP_OP)
    ops = jnp.concatenate([
        jnp.full(batch + (1,), self.input_ops[0], jnp.int32),
        layer_op.astype(jnp.int32),
        jnp.full(batch + (1,), self.output_op, jnp.int32),
    ], axis=-1)
    adj = jnp.broadcast_to(jnp.asarray(_chain_adjacency(self.num_nodes)),
                           batch + (self.num_nodes, self.num_nodes))
    return ops, adj

  def _layer_present(self, ops: Array) -> Array:
    """`bool[..., 5, 4]`: which layer nodes carry one of the 9 layer ops."""
    layer_op = jnp.asarray(ops, jnp.int32)[..., 1:1 + NUM_LAYERS]
    present = (layer_op >= _FIRST_LAYER_OP) & (layer_op < _FIRST_LAYER_OP + NUM_LAYER_OPS)
    return present.reshape(present.shape[:-1] + (NUM_STAGES, LAYERS_PER_STAGE))

  def decode(self, ops: Array, adj: Array) -> Array:
    del adj  # Fixed chain: all information is in the ops.
    ops = jnp.asarray(ops, jnp.int32)
    layer_op = ops[..., 1:1 + NUM_LAYERS]
    present = self._layer_present(ops)
    flat_present = present.reshape(present.shape[:-2] + (NUM_LAYERS,))
    v = jnp.clip(layer_op - _FIRST_LAYER_OP, 0, NUM_LAYER_OPS - 1)
    ks = jnp.where(flat_present, v // len(EXPAND_RATIOS), 0)
    e = jnp.where(flat_present, v % len(EXPAND_RATIOS), 0)
    leading = jnp.sum(jnp.cumprod(present.astype(jnp.int32), axis=-1), axis=-1)
    d_idx = jnp.clip(leading, DEPTHS[0], DEPTHS[-1]) - DEPTHS[0]
    return jnp.concatenate([ks, e, d_idx], axis=-1).astype(jnp.int32)

  def constrained_decode(self, op_logits, adj_logits, op_mask, adj_mask, adj_fixed):
    """Ops under the mask, each stage at the depth whose layers score best.

    Masking every node alone cannot keep the depth rule (present layers form a prefix
    of length >= 2): a stage of depth d takes its first d layers' best layer ops and
    `skip` after them, and d in {2, 3, 4} maximises the sum of the chosen logits. So
    every output is format-valid, and the chain is the space's one adjacency.
    """
    del adj_logits, adj_mask
    masked = jnp.where(op_mask, op_logits, -jnp.inf)
    layers = masked[1:1 + NUM_LAYERS].reshape(NUM_STAGES, LAYERS_PER_STAGE, -1)
    layer_logits = layers[..., _FIRST_LAYER_OP:_FIRST_LAYER_OP + NUM_LAYER_OPS]
    best_op = _FIRST_LAYER_OP + jnp.argmax(layer_logits, -1)          # [S, L]
    best, skip = jnp.max(layer_logits, -1), layers[..., SKIP_OP]       # [S, L]
    scores = jnp.stack([best[:, :d].sum(-1) + skip[:, d:].sum(-1) for d in DEPTHS], -1)
    depth = jnp.asarray(DEPTHS)[jnp.argmax(scores, -1)]                # [S]
    present = jnp.arange(LAYERS_PER_STAGE) < depth[:, None]
    layer_ops = jnp.where(present, best_op, SKIP_OP).reshape(NUM_LAYERS)
    ops = jnp.concatenate([jnp.argmax(masked[:1], -1), layer_ops, jnp.argmax(masked[-1:], -1)])
    return ops.astype(jnp.int32), adj_fixed

  def format_valid(self, ops: Array, adj: Array) -> Array:
    """IO rules plus, per stage, present layers forming a prefix of length >= 2."""
    del adj  # DiffusionNAG's format rules look at the ops only.
    ops = jnp.asarray(ops, jnp.int32)
    io_ok = base.io_format_valid(ops, self.num_ops, self.input_ops, self.output_op)
    p = self._layer_present(ops)
    # A prefix of length >= 2 out of 4: layers 1, 2 present, and no present after a skip.
    stage_ok = p[..., 0] & p[..., 1] & (p[..., 2] | ~p[..., 3])
    return io_ok & jnp.all(stage_ok, axis=-1)

  def strict_valid(self, ops: Array, adj: Array) -> Array:
    ops = jnp.asarray(ops, jnp.int32)
    adj = jnp.asarray(adj, bool)
    chain = jnp.asarray(_chain_adjacency(self.num_nodes))
    is_chain = jnp.all(adj == chain, axis=(-2, -1))
    # Every node passes data on (skip is identity); kept for the strict-validity contract.
    alive = jnp.ones(adj.shape[:-1], bool)
    return self.format_valid(ops, adj) & is_chain & base.path_exists(adj, alive)


# ---- with the input resolution ----------------------------------------------------------

RESOLUTIONS = (160, 176, 192, 208, 224)
_R = _NUM_GENES  # the resolution gene's index


def _without_ofa_extras(d: dict) -> tuple[dict, int | None]:
  """(`d` without OFA's `wid` and `r` keys, the resolution `r` names, or None if absent).

  OFA's own subnet dicts carry `"wid": null` (its MobileNetV3 has one width) and, from
  its tutorial, the resolution; both spaces read them.
  """
  if d.get("wid", None) is not None:
    raise ArchStringError(f"OFA dict: 'wid' must be null (OFA's MobileNetV3 has one "
                          f"width), got {parsing.short_repr(d['wid'])}")
  r = _resolution(d["r"]) if "r" in d else None
  return {k: v for k, v in d.items() if k not in ("r", "wid")}, r


def _resolution(r: Any) -> int:
  """The resolution `r` names: an int or OFA's one-element list of one."""
  given = r
  if isinstance(r, list) and len(r) == 1:
    r = r[0]
  if not parsing.is_int(r) or int(r) not in RESOLUTIONS:
    raise ArchStringError(f"OFA dict: 'r' = {parsing.short_repr(given)} is not one of "
                          f"{list(RESOLUTIONS)} (or a one-element list of one)")
  return int(r)


class MBV3ResolutionSpace(MBV3Space):
  """OFA MobileNetV3 searched together with its input resolution, as OFA's tutorial does.

  The native string is the OFA dict with the resolution inside it,
  `{"ks": [20], "e": [20], "d": [5], "r": 192}`; OFA's own spelling (`"r": [192]`,
  `"wid": null`) parses too. Genes are MBV3's 45 then `r_idx` (one of `RESOLUTIONS`).

  The resolution lives on node 0: the input op names it (`input_r160` .. `input_r224`).
  Ids 0..11 keep MBV3's meaning (0 is `input_r160`), and the four other inputs come
  after `skip`, so every rule of MBV3's dense form holds unchanged.
  """

  name = "mbv3_r"
  node_ops = ("input_r160",) + MBV3Space.node_ops[1:] + tuple(
      f"input_r{r}" for r in RESOLUTIONS[1:])
  input_ops = (0,) + tuple(range(len(MBV3Space.node_ops), len(MBV3Space.node_ops) + 4))
  gene_cardinalities = MBV3Space.gene_cardinalities + (len(RESOLUTIONS),)

  def size(self) -> int:
    return count_archs() * len(RESOLUTIONS)

  # ---- native format (host) -------------------------------------------------

  def from_native(self, d: Any) -> np.ndarray:
    """Parses `{"ks", "e", "d", "r"}` (r an int or OFA's one-element list; OFA's
    `"wid": null` allowed) to genes `int32[46]`.

    Raises:
      ArchStringError: naming the first problem found.
    """
    if not isinstance(d, dict):
      raise ArchStringError(f"OFA dict: expected a dict, got {type(d).__name__}")
    rest, r = _without_ofa_extras(d)
    if r is None:
      raise ArchStringError("OFA dict: missing key 'r' (the input resolution, one of "
                            f"{list(RESOLUTIONS)})")
    genes = super().from_native(rest)
    return np.concatenate([genes, [RESOLUTIONS.index(r)]]).astype(np.int32)

  def to_native(self, genes: np.ndarray) -> dict[str, Any]:
    """Genes `int[46]` to the OFA dict with `r` (plain Python ints; ks, e, d, r)."""
    g = np.asarray(genes)
    if g.shape != (self.num_genes,):
      raise ValueError(f"mbv3_r genes must have shape ({self.num_genes},), got {g.shape}")
    if not np.issubdtype(g.dtype, np.integer) or not 0 <= g[_R] < len(RESOLUTIONS):
      raise ValueError(f"mbv3_r resolution gene must be an int in [0, {len(RESOLUTIONS)}), "
                       f"got {g[_R]!r}")
    return {**super().to_native(g[:_R]), "r": RESOLUTIONS[int(g[_R])]}

  # ---- vectorised, jit-able -------------------------------------------------

  def canonicalize(self, genes: Array) -> Array:
    genes = jnp.asarray(genes, jnp.int32)
    return jnp.concatenate([super().canonicalize(genes[..., :_R]), genes[..., _R:]], axis=-1)

  def sample(self, key: Array, n: int) -> Array:
    k_net, k_r = jax.random.split(key)
    r = jax.random.randint(k_r, (n, 1), 0, len(RESOLUTIONS), jnp.int32)
    return jnp.concatenate([super().sample(k_net, n), r], axis=-1)

  def encode(self, genes: Array) -> tuple[Array, Array]:
    genes = jnp.asarray(genes, jnp.int32)
    ops, adj = super().encode(genes[..., :_R])
    ops = ops.at[..., 0].set(jnp.asarray(self.input_ops, jnp.int32)[genes[..., _R]])
    return ops, adj

  def decode(self, ops: Array, adj: Array) -> Array:
    ops = jnp.asarray(ops, jnp.int32)
    # An input op names its resolution; anything else on node 0 decodes to index 0
    # (the arch is then format-invalid anyway).
    r = jnp.argmax(ops[..., :1] == jnp.asarray(self.input_ops, jnp.int32), axis=-1)
    return jnp.concatenate([super().decode(ops, adj), r[..., None].astype(jnp.int32)], -1)
