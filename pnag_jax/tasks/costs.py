"""Parameter and FLOP counts of the project's own networks, as tasks and constraints.

`params_of` / `flops_of` count the network that `pnag_jax.networks.registry` builds at
its default (paper) size, for 10 classes and the space's default input (`INPUT_SHAPES`).
They are the `params` and `flops` tasks of every space, and cheap enough on NB201 to
filter 100,000 generated cells in milliseconds.

What is counted:

* params: trainable parameters (`stats.count_params`; BatchNorm statistics excluded),
  exact.
* FLOPs: multiply-adds (MACs), to float32 precision (XLA's cost analysis rounds its
  totals; NB201's stored terms are differences of such totals, so the formula and a
  full build can differ by a few MACs in 1e8), i.e. the FLOPs it reports for one
  inference forward pass of one image divided by 2, over the forward as JAX lowers it
  (`jit(...).lower(...).cost_analysis()`). Lowering drops computations that cannot
  reach the logits (e.g. an NB201 edge whose target node never reaches the cell
  output), so those cost nothing, as at inference. This is not
  `stats.forward_flops`: that asks the *compiled* module, whose optimiser also merges
  identical ReLUs / pools on a shared input, so it can be lower (by up to ~20% on
  pool-heavy NB201 cells). The lowered count depends on the network alone, not on
  XLA's optimisation passes, which is what a benchmark column should be.

NB201 is counted without building a network per cell. Parameters are a base
plus one term per edge op: every edge owns its op's weights. FLOPs are a base plus,
per live edge, its op's term, plus one elementwise add per extra non-zero term
summed at a live node; a disconnected cell's output ignores its input, so only the
last cell and the classifier are live there. The terms come from ten abstract builds
(`nnx.eval_shape`, no weights allocated; `measure_nb201_terms`, a few seconds); they
are stored here, and `costs_test` checks the formula against full builds of cells that
exercise every term.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax.errors import PnagError
from pnag_jax.spaces import as_space
from pnag_jax.spaces import nb201 as nb201_space
from pnag_jax.spaces.base import SearchSpace

NUM_CLASSES = 10
#: The input each space's networks are counted at: CIFAR for the cell spaces,
#: ImageNet for the mobile and transformer spaces.
INPUT_SHAPES = {
    "nb201": (32, 32, 3),
    "darts": (32, 32, 3),
    "mbv3": (224, 224, 3),
    "mbv3_r": (224, 224, 3),  # the default; each subnet is counted at its own resolution
    "autoformer": (224, 224, 3),
    "autoformer_base": (224, 224, 3),
}

#: The network each space's counts describe, as `pnag tasks` lists it. The MBV3 counts
#: are of the project's network, OFA's width 1.0; `ofa_acc` and `note10_latency` score
#: OFA's released width-1.2 ImageNet network (1,000 classes), about 1.8x the params.
_NETWORKS = {
    "nb201": "NB201 CIFAR network",
    "darts": "DARTS CIFAR network (20 cells, C 36)",
    "mbv3": "OFA MobileNetV3 width 1.0",
    "mbv3_r": "OFA MobileNetV3 width 1.0",
    "autoformer": "AutoFormer-T ViT",
    "autoformer_base": "AutoFormer-B ViT",
}
_OFA_NOTE = " (ofa_acc and note10_latency: width 1.2, 1,000 classes)"
COUNTED_NETWORKS = {
    name: (f"count: {net}, {NUM_CLASSES} classes, "
           + ("at its resolution" if name == "mbv3_r" else f"{INPUT_SHAPES[name][0]} px")
           + (_OFA_NOTE if name.startswith("mbv3") else ""))
    for name, net in _NETWORKS.items()}


def _genes(space: SearchSpace, genes) -> np.ndarray:
  genes = np.asarray(genes)
  if genes.ndim == 1:
    genes = genes[None]
  if genes.ndim != 2 or genes.shape[1] != space.num_genes or \
      not np.issubdtype(genes.dtype, np.integer):
    raise PnagError(f"{space.name} genes must be int[n, {space.num_genes}], got "
                    f"{genes.dtype}{list(genes.shape)}")
  card = np.asarray(space.gene_cardinalities)
  if genes.size and ((genes < 0) | (genes >= card)).any():
    raise PnagError(f"{space.name} genes out of range")
  return genes.astype(np.int32)


def _abstract_network(space_name: str, genes: np.ndarray, shape=None) -> nnx.Module:
  from pnag_jax.networks import registry  # pylint: disable=g-import-not-at-top
  shape = shape or INPUT_SHAPES[space_name]
  return nnx.eval_shape(lambda: registry.build_network(
      space_name, genes, input_shape=shape, num_classes=NUM_CLASSES, rngs=nnx.Rngs(0)))


def _count_params(model: nnx.Module) -> int:
  from pnag_jax.networks import stats  # pylint: disable=g-import-not-at-top
  return stats.count_params(model)


def _lowered_flops(model: nnx.Module, input_shape: tuple[int, int, int]) -> float:
  """XLA's FLOPs of one inference forward pass of one image, before optimisation."""
  graphdef, state = nnx.split(model)

  def forward(state, x):
    m = nnx.merge(graphdef, state)
    m.eval()
    return m(x)

  x = jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32)
  cost = jax.jit(forward).lower(state, x).cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def built_params(space: SearchSpace | str, genes) -> int:
  """Parameters of one arch from an abstract build of its whole network (exact)."""
  space = as_space(space)
  return _count_params(_abstract_network(space.name, _genes(space, genes)[0]))


def built_counts(space: SearchSpace | str, genes) -> tuple[int, float]:
  """(params, MACs) of one arch from an abstract build of its whole network (slow, exact)."""
  space = as_space(space)
  g = _genes(space, genes)[0]
  model = _abstract_network(space.name, g)
  return _count_params(model), _lowered_flops(model, INPUT_SHAPES[space.name]) / 2


# ---- NB201: the exact decomposition -----------------------------------------------

_NONE, _SKIP, _POOL = 0, 1, 4
_E01, _E02, _E12, _E03, _E13, _E23 = range(6)
# Edge positions by target node: the sums whose adds cost FLOPs.
_IN_EDGES = {1: (_E01,), 2: (_E02, _E12), 3: (_E03, _E13, _E23)}


def _cell(**ops: int) -> np.ndarray:
  genes = np.zeros(nb201_space.NUM_EDGES, np.int32)
  for edge, op in ops.items():
    genes[["e01", "e02", "e12", "e03", "e13", "e23"].index(edge)] = op
  return genes


#: `measure_nb201_terms()`, stored: every process that counts NB201 costs (a surrogate
#: run reads the params and FLOPs tasks) would otherwise spend seconds measuring them.
_NB201_TERMS = {
    "params_base": 73306.0, "params_op": (0.0, 0.0, 28000.0, 243040.0, 0.0),
    "conn_base": 14319722.0, "conn_op": (0.0, 0.0, 8438880.0, 64687198.0, 1344000.0),
    "conn_add": 143360.0, "disc_base": 21898.0,
    "disc_op": (0.0, 0.0, 540800.0, 3981440.0, 37376.0), "disc_add": 4096.0,
}


@functools.cache
def nb201_terms() -> dict[str, np.ndarray]:
  """The terms of NB201's decomposition (see `measure_nb201_terms`), float64 arrays."""
  return {k: np.asarray(v, np.float64) for k, v in _NB201_TERMS.items()}


def measure_nb201_terms() -> dict[str, np.ndarray]:
  """The terms of NB201's decomposition, from 10 abstract builds (a few s).

  Returns a dict of float64 arrays:
    params_base, params_op[5]: params = base + sum over edges of params_op[op].
    conn_base, conn_op[5], conn_add: a connected cell's FLOPs (x2, XLA's count) =
      base + sum over live edges of conn_op[op] + conn_add per add of `nb201_structure`.
    disc_base, disc_op[5], disc_add: the same for a disconnected cell, where only the
      last cell (and the classifier) is live.
  """
  shape = INPUT_SHAPES["nb201"]
  ops = range(len(nb201_space.OPS))

  def measure(genes):
    model = _abstract_network("nb201", genes)
    return _count_params(model), _lowered_flops(model, shape)

  # The all-`none` cell: no cell owns a weight, and nothing before the head is live.
  params_base, disc_base = measure(_cell())
  # e03 = skip is the cheapest connected cell: the whole backbone, no cell compute.
  _, conn_base = measure(_cell(e03=_SKIP))
  params_op, conn_op, disc_op = np.zeros(5), np.zeros(5), np.zeros(5)
  for op in ops:
    if op in (_NONE, _SKIP):
      continue
    # One live edge in every cell; its weights exist in every cell alike.
    p, f = measure(_cell(e03=op))
    params_op[op], conn_op[op] = p - params_base, f - conn_base
    # e23 alone is disconnected: only the last cell's edge (on zeros) is live.
    _, f = measure(_cell(e23=op))
    disc_op[op] = f - disc_base
  # Node 3 = e03 + e13 (both skip): one add per cell.
  _, f = measure(_cell(e01=_SKIP, e03=_SKIP, e13=_SKIP))
  conn_add = f - conn_base
  # Nodes 1 and 2 are zero; node 3 = pool(0) + pool(0) still sums (last cell only).
  _, f = measure(_cell(e13=_POOL, e23=_POOL))
  disc_add = f - disc_base - 2 * disc_op[_POOL]
  return {"params_base": np.float64(params_base), "params_op": params_op,
          "conn_base": np.float64(conn_base), "conn_op": conn_op,
          "conn_add": np.float64(conn_add), "disc_base": np.float64(disc_base),
          "disc_op": disc_op, "disc_add": np.float64(disc_add)}


# ---- MBV3: parameters by block --------------------------------------------------------


@functools.cache
def mbv3_param_terms() -> tuple[float, np.ndarray]:
  """(base, per_layer float64[20, 3, 3]) of MBV3's parameter count (a few seconds).

  A subnet's parameters are the fixed layers' (stem, first block, head, classifier)
  plus, for each active layer, its block's, which depend only on the layer's slot
  (its stage's widths, and whether it is the stage's first) and its kernel size and
  expand ratio. Blocks are built abstractly with the network's own `MBConv`; the base
  is one full abstract build less its blocks.
  """
  from pnag_jax.networks import mbv3 as net  # pylint: disable=g-import-not-at-top
  from pnag_jax.spaces import mbv3 as space  # pylint: disable=g-import-not-at-top

  @functools.cache  # a stage's later layers share one block shape
  def block(in_ch, out_ch, ks, e, s):
    return _count_params(nnx.eval_shape(lambda: net.MBConv(
        in_ch, out_ch, ks, e, 1, net.STAGE_ACTS[s], net.STAGE_SE[s], rngs=nnx.Rngs(0))))

  per_layer = np.zeros((space.NUM_LAYERS, len(space.KERNEL_SIZES), len(space.EXPAND_RATIOS)))
  for s, width in enumerate(net.STAGE_WIDTHS):
    prev = net.STAGE_WIDTHS[s - 1] if s else net.FIRST_CONV_WIDTH
    for i in range(space.LAYERS_PER_STAGE):
      for a, ks in enumerate(space.KERNEL_SIZES):
        for b, e in enumerate(space.EXPAND_RATIOS):
          per_layer[s * space.LAYERS_PER_STAGE + i, a, b] = block(
              prev if i == 0 else width, width, ks, e, s)
  genes = np.zeros(space.NUM_LAYERS * 2 + space.NUM_STAGES, np.int32)  # ks 3, e 3, d 2
  model = _abstract_network("mbv3", genes)
  blocks = sum(_count_params(b) for b in model.blocks[1:])
  return float(_count_params(model) - blocks), per_layer


def _mbv3_params(genes: np.ndarray) -> np.ndarray:
  from pnag_jax.spaces import mbv3 as space  # pylint: disable=g-import-not-at-top
  base, per_layer = mbv3_param_terms()
  n_layers = space.NUM_LAYERS
  ks, e = genes[:, :n_layers], genes[:, n_layers:2 * n_layers]
  depth = np.asarray(space.DEPTHS)[genes[:, 2 * n_layers:2 * n_layers + space.NUM_STAGES]]
  active = np.arange(space.LAYERS_PER_STAGE)[None, None] < depth[..., None]  # [n, 5, 4]
  terms = per_layer[np.arange(n_layers), ks, e]                               # [n, 20]
  return base + (terms * active.reshape(len(genes), n_layers)).sum(-1)


def nb201_structure(genes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(connected bool[n], live edges bool[n, 6], adds int[n]) of cells `int[n, 6]`.

  An edge is live when its target node reaches the cell output through non-`none`
  edges; its source may be a zero node (no live input), and the op still runs on the
  zeros. A live node costs one add per term past its first, counting only terms that
  are not constant zero: a `none` edge, or a skip from a zero node, is a literal zero
  that lowering folds away.
  """
  genes = np.asarray(genes)
  nz = genes != _NONE
  n = genes.shape[0]
  live_node = {3: np.ones(n, bool)}
  live_node[2] = nz[:, _E23]
  live_node[1] = nz[:, _E13] | (nz[:, _E12] & live_node[2])
  live = np.zeros_like(nz)
  zero_node = {0: np.zeros(n, bool)}
  adds = np.zeros(n, np.int64)
  for dst, edges in _IN_EDGES.items():
    terms = np.zeros(n, np.int64)
    for a in edges:
      src = nb201_space.EDGES[a][0]
      live[:, a] = nz[:, a] & live_node[dst]
      terms += nz[:, a] & ~((genes[:, a] == _SKIP) & zero_node[src])
    zero_node[dst] = terms == 0
    adds += np.where(live_node[dst], np.maximum(terms - 1, 0), 0)
  reach1 = nz[:, _E01]
  reach2 = nz[:, _E02] | (reach1 & nz[:, _E12])
  connected = nz[:, _E03] | (reach1 & nz[:, _E13]) | (reach2 & nz[:, _E23])
  return connected, live, adds


def _nb201_params(genes: np.ndarray) -> np.ndarray:
  t = nb201_terms()
  return t["params_base"] + t["params_op"][genes].sum(-1)


def _nb201_flops(genes: np.ndarray) -> np.ndarray:
  t = nb201_terms()
  connected, live, adds = nb201_structure(genes)
  conn = t["conn_base"] + (t["conn_op"][genes] * live).sum(-1) + t["conn_add"] * adds
  disc = t["disc_base"] + (t["disc_op"][genes] * live).sum(-1) + t["disc_add"] * adds
  return np.where(connected, conn, disc) / 2


# ---- the public functions ------------------------------------------------------------


def counted_quickly(space: SearchSpace | str, count: str) -> bool:
  """Whether `params_of` (`count="params"`) or `flops_of` (`"flops"`) is a formula,
  cheap for tens of thousands of archs, rather than one abstract build per arch."""
  name = as_space(space).name
  if count == "params":
    return name in ("nb201", "mbv3", "mbv3_r") or name.startswith("autoformer")
  if count == "flops":
    return name == "nb201"
  raise PnagError(f"unknown count {count!r}; counts: params, flops")


def params_of(space: SearchSpace | str, genes) -> np.ndarray:
  """Exact trainable parameters of each arch's network, float64[n].

  Args:
    space: a space or its name.
    genes: int[n, G] (or one arch, int[G]).

  NB201 is a formula, MBV3 one too (by block; `mbv3_param_terms`), AutoFormer its own
  closed form; darts builds each network abstractly (seconds per arch; exact).
  """
  space = as_space(space)
  genes = _genes(space, genes)
  if space.name == "nb201":
    return _nb201_params(genes)
  if space.name in ("mbv3", "mbv3_r"):
    return _mbv3_params(genes)  # the resolution changes no parameter
  if space.name.startswith("autoformer"):
    # AutoFormer's own count equals the built subnet's (checked on sampled subnets).
    img = INPUT_SHAPES[space.name][0]
    return np.array([space.param_count(space.to_native(g), num_classes=NUM_CLASSES,
                                       img_size=img) for g in genes], np.float64)
  return np.array([_count_params(_abstract_network(space.name, g)) for g in genes],
                  np.float64)


def flops_of(space: SearchSpace | str, genes) -> np.ndarray:
  """Multiply-adds (MACs = XLA FLOPs / 2, to float32 precision) of one forward pass per
  arch, float64[n].

  See the module docstring for what is counted. NB201 is a formula; the other spaces
  lower each network abstractly (tens of seconds per arch on a small CPU).
  """
  space = as_space(space)
  genes = _genes(space, genes)
  if space.name == "nb201":
    return _nb201_flops(genes)
  def shape(g):
    if space.name == "mbv3_r":  # the resolution the subnet is searched at
      r = space.to_native(g)["r"]
      return (r, r, 3)
    return INPUT_SHAPES[space.name]
  return np.array([_lowered_flops(_abstract_network(space.name, g, shape(g)), shape(g)) / 2
                   for g in genes], np.float64)
