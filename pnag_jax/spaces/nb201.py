"""NAS-Bench-201: a 4-node cell whose 6 edges each carry one of 5 ops.

Dense form (DESIGN §2): node 0 = input, nodes 1..6 = the cell edges in arch-string
order e01, e02, e12, e03, e13, e23, node 7 = output. An edge i->j feeds every edge
j->k, edges into cell node 3 feed the output, and the input feeds e01, e02, e03.

Genes are the 6 edge ops in NB201's own op order (`none, skip_connect, nor_conv_1x1,
nor_conv_3x3, avg_pool_3x3`), so `code = sum(g[i] * 5**(5-i))` is a dense index over
all 15,625 cells; it is the row of every NB201 table in `pnag_jax.data`.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import ArchStringError
from pnag_jax.spaces import base, parsing

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_EDGES = 6
NUM_CELLS = len(OPS) ** NUM_EDGES  # 15,625
# (source cell node, target cell node) of each edge, in arch-string order.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

_INPUT, _OUTPUT, _OP0 = 0, 1, 2
_RADIX = np.array([len(OPS) ** (NUM_EDGES - 1 - i) for i in range(NUM_EDGES)], np.int32)
_BLOCK_RE = re.compile(r"\|([^|~]*)~(\d+)")


def _fixed_adjacency() -> np.ndarray:
  n = NUM_EDGES + 2
  adj = np.zeros((n, n), dtype=bool)
  for a, (src, dst) in enumerate(EDGES):
    if src == 0:
      adj[0, 1 + a] = True
    if dst == 3:
      adj[1 + a, n - 1] = True
    for b, (src_b, _) in enumerate(EDGES):
      if src_b == dst:
        adj[1 + a, 1 + b] = True
  return adj


ADJACENCY = _fixed_adjacency()


def unique_str(genes) -> str:
  """NATS-Bench's canonical string of the cell's computation graph.

  A `none` edge, or any op applied to a node that is identically zero (`#`), is
  zero; `skip_connect` passes its input's string through; a node is the sorted
  `+`-join of its incoming terms. Cells with equal strings compute the same function.
  """
  nodes = {0: "0"}
  for dst in (1, 2, 3):
    terms = []
    for a, (src, d) in enumerate(EDGES):
      if d != dst:
        continue
      op = OPS[int(genes[a])]
      if op == "none" or nodes[src] == "#":
        terms.append("#")
      elif op == "skip_connect":
        terms.append(nodes[src])
      else:
        terms.append(f"({nodes[src]})@{op}")
    nodes[dst] = "+".join(sorted(terms))
  return nodes[3]


def genes_of_code(code):
  """Inverse of `code_of_genes`; works on numpy and jax integer arrays."""
  xp = jnp if isinstance(code, jax.Array) else np
  code = xp.asarray(code)
  return ((code[..., None] // _RADIX) % len(OPS)).astype(xp.int32)


def code_of_genes(genes):
  """Mixed-radix cell code in [0, 15625); numpy in, numpy out, jax in, jax out."""
  xp = jnp if isinstance(genes, jax.Array) else np
  return xp.sum(xp.asarray(genes).astype(xp.int32) * _RADIX, axis=-1)


@functools.lru_cache(maxsize=1)
def _tables() -> dict[str, np.ndarray]:
  """Host-side tables over all cells, built once (~0.1 s)."""
  all_genes = genes_of_code(np.arange(NUM_CELLS))
  strings = [unique_str(g) for g in all_genes]
  first_code = {}
  iso_rep = np.empty(NUM_CELLS, np.int32)
  for c, s in enumerate(strings):
    iso_rep[c] = first_code.setdefault(s, c)
  alive = np.concatenate([np.ones((NUM_CELLS, 1), bool), all_genes != 0,
                          np.ones((NUM_CELLS, 1), bool)], axis=1)
  # The first use may happen while tracing a jitted caller; the table is a constant.
  with jax.ensure_compile_time_eval():
    connected = np.asarray(base.path_exists(jnp.asarray(ADJACENCY), jnp.asarray(alive)))
  return {
      "iso_rep": iso_rep,  # smallest code in each cell's isomorphism class
      "valid_codes": np.flatnonzero(connected).astype(np.int32),
  }


class NB201Space(base.SearchSpace):
  """NAS-Bench-201 (Dong & Yang, ICLR 2020)."""

  name = "nb201"
  num_nodes = NUM_EDGES + 2
  node_ops = ("input", "output") + OPS
  input_ops = (_INPUT,)
  output_op = _OUTPUT
  gene_cardinalities = (len(OPS),) * NUM_EDGES
  edge_budget = int(ADJACENCY.sum())
  fixed_adjacency = True
  enumerable = True
  # Every node of a cell holds C channels at one resolution, and every edge op maps C to
  # C in place: an op costs the same on any of the six edges.
  alike_genes = (tuple(range(NUM_EDGES)),)

  # ---- sizes ----------------------------------------------------------------

  def size(self) -> int:
    """All 15,625 cells, as the literature counts them."""
    return NUM_CELLS

  def num_connected(self) -> int:
    """Cells with an input->output path through non-`none` edges (15,284)."""
    return int(_tables()["valid_codes"].size)

  def enumerate(self) -> np.ndarray:
    """All 15,625 cells (also the disconnected ones), in code order."""
    return genes_of_code(np.arange(NUM_CELLS))

  def index(self, genes):
    """The cell code: the row in `enumerate()` and in every NB201 table."""
    return code_of_genes(genes)

  # ---- native format ------------------------------------------------------------

  def from_string(self, s: str) -> np.ndarray:
    if not isinstance(s, str):
      raise ArchStringError(f"NB201 arch string must be a str, got {type(s).__name__}")
    blocks = s.split("+")
    if len(blocks) != 3:
      raise ArchStringError(
          f"NB201 arch string needs 3 '+'-separated blocks, got {len(blocks)}: {s[:80]!r}")
    genes = []
    for dst, block in enumerate(blocks, start=1):
      if not (block.startswith("|") and block.endswith("|")):
        raise ArchStringError(f"NB201 block {dst} must start and end with '|': {block[:80]!r}")
      edges = _BLOCK_RE.findall(block)
      expected = "".join(f"|{op}~{src}" for op, src in edges) + "|"
      if len(edges) != dst or expected != block:
        raise ArchStringError(
            f"NB201 block {dst} must list exactly {dst} edges as |op~src|: {block[:80]!r}")
      for src, (op, src_str) in enumerate(edges):
        if op not in OPS:
          raise ArchStringError(f"unknown NB201 op {op[:40]!r}; ops are {', '.join(OPS)}")
        if src_str != str(src):
          raise ArchStringError(
              f"NB201 block {dst}, edge {src}: source must be ~{src}, got ~{src_str[:10]}")
        genes.append(OPS.index(op))
    return np.asarray(genes, np.int32)

  def to_string(self, genes) -> str:
    g = parsing.integer_genes(genes, "NB201")
    if len(g) != NUM_EDGES or not all(0 <= x < len(OPS) for x in g):
      raise ArchStringError(f"NB201 genes must be {NUM_EDGES} ints in [0, {len(OPS)}), got {g}")
    blocks, a = [], 0
    for dst in (1, 2, 3):
      blocks.append("|" + "|".join(f"{OPS[g[a + src]]}~{src}" for src in range(dst)) + "|")
      a += dst
    return "+".join(blocks)

  # ---- vectorised ---------------------------------------------------------------

  def code(self, genes: jax.Array) -> jax.Array:
    """Dense cell code (row of the NB201 tables), int32[...]."""
    return code_of_genes(genes)

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """Uniform over the strictly valid (connected) cells."""
    valid = jnp.asarray(_tables()["valid_codes"])
    codes = valid[jax.random.randint(key, (n,), 0, valid.shape[0])]
    return genes_of_code(codes)

  def encode(self, genes: jax.Array) -> tuple[jax.Array, jax.Array]:
    genes = jnp.asarray(genes, jnp.int32)
    batch = genes.shape[:-1]
    ops = jnp.concatenate([
        jnp.full(batch + (1,), _INPUT, jnp.int32), genes + _OP0,
        jnp.full(batch + (1,), _OUTPUT, jnp.int32)
    ], axis=-1)
    adj = jnp.broadcast_to(jnp.asarray(ADJACENCY), batch + ADJACENCY.shape)
    return ops, adj

  def decode(self, ops: jax.Array, adj: jax.Array) -> jax.Array:
    del adj  # fixed; validity checks it
    return jnp.clip(ops[..., 1:-1] - _OP0, 0, len(OPS) - 1).astype(jnp.int32)

  def format_valid(self, ops: jax.Array, adj: jax.Array) -> jax.Array:
    del adj  # DiffusionNAG's format rules look at ops only
    return base.io_format_valid(ops, self.num_ops, self.input_ops, self.output_op)

  def strict_valid(self, ops: jax.Array, adj: jax.Array) -> jax.Array:
    adj_ok = jnp.all(adj == jnp.asarray(ADJACENCY), axis=(-2, -1))
    alive = ops != _OP0  # `none` passes nothing; input and output are alive
    return self.format_valid(ops, adj) & adj_ok & base.path_exists(adj, alive)

  def canonicalize(self, genes: jax.Array) -> jax.Array:
    rep = jnp.asarray(_tables()["iso_rep"])[code_of_genes(jnp.asarray(genes))]
    return genes_of_code(rep)
