"""DARTS: a normal and a reduce cell, 4 intermediate nodes of 2 (op, input) pairs each.

Genes (`int32[32]`): normal ops[8], normal inputs[8], reduce ops[8], reduce inputs[8].
An op gene indexes `PRIMITIVES`; an input gene is 0 (c_{k-2}), 1 (c_{k-1}) or an
intermediate node 2..5. Pair p of a cell belongs to intermediate node 2 + p // 2.

Dense form (DESIGN §2), N = 19, operations on nodes:

* node 0 = `input` (c_{k-2}), node 1 = `input_prev` (c_{k-1}), shared by both cells;
* nodes 2..9 = the 8 pairs of the normal cell, nodes 10..17 = those of the reduce
  cell, each an op node;
* node 18 = `output`, fed by all 16 op nodes (the concat is always [2, 3, 4, 5]).

An op node reading c_{k-2} or c_{k-1} has an edge from node 0 or 1; one reading
intermediate node i has edges from both op nodes of i in the same cell, since the
node's value is the sum of its two ops. The generator therefore emits structure, and
`strict_valid` accepts exactly the adjacencies a genotype explains.
"""

from __future__ import annotations

import ast
import collections
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import ArchStringError
from pnag_jax.spaces import base, parsing

Genotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

# DARTS search order; `none` is only here so that validity can reject it.
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")

# DARTS, second order (Liu et al., ICLR 2019), as published in DARTS' genotypes.py.
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0),
            ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
            ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
            ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5])

CELLS = ("normal", "reduce")
NUM_STEPS = 4  # intermediate nodes per cell
NUM_PAIRS = 2 * NUM_STEPS  # (op, input) pairs per cell
NUM_INPUTS = 2 + NUM_STEPS  # input gene values 0..5
CONCAT = [2, 3, 4, 5]
NUM_NODES = 2 + len(CELLS) * NUM_PAIRS + 1  # 19

_INPUT, _OUTPUT, _INPUT_PREV, _OP0 = 0, 1, 2, 3
_NONE = _OP0 + PRIMITIVES.index("none")
_OUT = NUM_NODES - 1


def _op_node(cell: int, pair: int) -> int:
  """Dense node of pair `pair` of cell `cell` (0 normal, 1 reduce)."""
  return 2 + cell * NUM_PAIRS + pair


def _step(pair: int) -> int:
  """Intermediate node (2..5) that pair `pair` belongs to."""
  return 2 + pair // 2


def _edge_input() -> np.ndarray:
  """`[s, j]`: the input gene of op node j that puts an edge s -> j, else -1."""
  table = np.full((NUM_NODES, NUM_NODES), -1, np.int32)
  for cell in range(len(CELLS)):
    for pair in range(NUM_PAIRS):
      j = _op_node(cell, pair)
      table[0, j] = 0
      table[1, j] = 1
      for i in range(2, _step(pair)):
        first = _op_node(cell, 2 * (i - 2))
        table[first:first + 2, j] = i
  return table


EDGE_INPUT = _edge_input()
_OUTPUT_EDGES = np.zeros((NUM_NODES, NUM_NODES), bool)
_OUTPUT_EDGES[2:_OUT, _OUT] = True
# Per input value i: the exact predecessor column an op node reading i has.
_PATTERNS = np.stack([EDGE_INPUT == i for i in range(NUM_INPUTS)])  # [6, N, N]
_PATTERN_OK = _PATTERNS.any(axis=1)  # [6, N]: whether op node j may read i at all


# ---- native format (host) ---------------------------------------------------------


def _literal(node: ast.AST, where: str) -> Any:
  """Evaluates the few literal forms a Genotype repr uses; never runs code."""
  if isinstance(node, ast.Constant):
    return node.value
  if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and
      isinstance(node.operand, ast.Constant) and type(node.operand.value) is int):
    return -node.operand.value
  if isinstance(node, ast.List):
    return [_literal(e, where) for e in node.elts]
  if isinstance(node, ast.Tuple):
    return tuple(_literal(e, where) for e in node.elts)
  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
    args = [_literal(a, where) for a in node.args]
    if node.keywords or not 1 <= len(args) <= 3 or any(type(a) is not int for a in args):
      raise ArchStringError(f"{where}: range() takes 1 to 3 int arguments")
    if args[-1] == 0 and len(args) == 3:
      raise ArchStringError(f"{where}: range() step must not be zero")
    return range(*args)
  raise ArchStringError(f"{where}: unsupported expression {type(node).__name__}; "
                        "expected a literal list, tuple, str, int or range")


def _parse_genotype(s: str) -> dict[str, Any]:
  """Parses a Genotype(...) call into its four field values (plain Python)."""
  try:
    with warnings.catch_warnings():
      # Odd escapes in string literals warn; the strings are data, not our code.
      warnings.simplefilter("ignore")
      tree = ast.parse(s.strip(), mode="eval")
  except Exception as e:  # pylint: disable=broad-except
    # ast raises SyntaxError, ValueError, RecursionError, MemoryError, ... on hostile
    # text; all of them mean "not a genotype string".
    raise ArchStringError(f"DARTS genotype string does not parse: {type(e).__name__}: "
                          f"{str(e)[:80] or 'no detail'}") from None
  call = tree.body
  if not isinstance(call, ast.Call):
    raise ArchStringError(
        f"DARTS genotype string must be a Genotype(...) call, got {type(call).__name__}")
  if not (isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
    name = call.func.id if isinstance(call.func, ast.Name) else type(call.func).__name__
    raise ArchStringError(f"DARTS genotype string must call Genotype, not {name[:40]!r}")
  if len(call.args) > len(Genotype._fields):
    raise ArchStringError(
        f"Genotype takes at most {len(Genotype._fields)} positional fields, "
        f"got {len(call.args)}")
  fields = {}
  for name, arg in zip(Genotype._fields, call.args):
    if isinstance(arg, ast.Starred):
      raise ArchStringError("Genotype fields cannot be given with *args")
    fields[name] = _literal(arg, name)
  for kw in call.keywords:
    if kw.arg is None:
      raise ArchStringError("Genotype fields cannot be given with **kwargs")
    if kw.arg not in Genotype._fields:
      raise ArchStringError(f"unknown Genotype field {kw.arg[:40]!r}; "
                            f"fields are {', '.join(Genotype._fields)}")
    if kw.arg in fields:
      raise ArchStringError(f"duplicate Genotype field {kw.arg!r}")
    fields[kw.arg] = _literal(kw.value, kw.arg)
  return fields


def _short_repr(x: Any, limit: int = 60) -> str:
  """repr for error messages, truncated; huge ints cannot even be repr'd."""
  try:
    shown = repr(x)
  except (ValueError, RecursionError):
    return f"<{type(x).__name__}>"
  return shown[:limit] + "..." if len(shown) > limit else shown


def _is_int(x: Any) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_concat(name: str, value: Any) -> None:
  if isinstance(value, range):
    ok = value == range(2, 6)  # range equality is by elements, without materialising
  elif isinstance(value, (list, tuple)):
    ok = all(_is_int(x) for x in value) and [int(x) for x in value] == CONCAT
  else:
    ok = False
  if not ok:
    raise ArchStringError(f"{name}: only concat {CONCAT} is supported, "
                          f"got {_short_repr(value)}")


def _cell_genes(name: str, value: Any) -> tuple[list[int], list[int]]:
  """(op genes, input genes) of one cell's list of (op, input) pairs."""
  if not isinstance(value, (list, tuple)):
    raise ArchStringError(f"{name} must be a list of (op, input) pairs, "
                          f"got {type(value).__name__}")
  if len(value) != NUM_PAIRS:
    raise ArchStringError(f"{name} must have exactly {NUM_PAIRS} (op, input) pairs, "
                          f"got {len(value)}")
  ops, inputs = [], []
  for p, pair in enumerate(value):
    where = f"{name} pair {p}"
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and
            isinstance(pair[0], str) and _is_int(pair[1])):
      raise ArchStringError(f"{where} must be an (op name, input index) pair of (str, int), "
                            f"got {_short_repr(pair)}")
    op, src = pair
    if op not in PRIMITIVES:
      raise ArchStringError(f"{where}: unknown op {op[:40]!r}; ops are {', '.join(PRIMITIVES)}")
    if not 0 <= src < NUM_INPUTS:
      raise ArchStringError(f"{where}: input index {_short_repr(int(src))} "
                            f"out of range [0, {NUM_INPUTS - 1}]")
    ops.append(PRIMITIVES.index(op))
    inputs.append(int(src))
  return ops, inputs


def _genes_of_fields(fields: dict[str, Any]) -> np.ndarray:
  missing = [f for f in Genotype._fields if f not in fields]
  if missing:
    raise ArchStringError(f"Genotype is missing field(s) {', '.join(missing)}")
  genes = []
  for cell in CELLS:
    _check_concat(f"{cell}_concat", fields[f"{cell}_concat"])
    ops, inputs = _cell_genes(cell, fields[cell])
    genes += ops + inputs
  return np.asarray(genes, np.int32)


def from_native(genotype: Any) -> np.ndarray:
  """A `Genotype` (or any 4-field namedtuple of that shape) to genes `int32[32]`.

  Raises:
    ArchStringError: what is wrong with the genotype.
  """
  if isinstance(genotype, tuple) and hasattr(genotype, "_fields"):
    fields = dict(zip(genotype._fields, genotype))
    unknown = [f for f in fields if f not in Genotype._fields]
    if unknown:
      raise ArchStringError(f"unknown Genotype field(s) {', '.join(unknown)}")
  else:
    raise ArchStringError(f"expected a DARTS Genotype, got {type(genotype).__name__}")
  return _genes_of_fields(fields)


def to_native(genes: Any) -> Genotype:
  """Genes `int[32]` to a `Genotype` with lists of (str, int) pairs and list concats."""
  g = parsing.integer_genes(genes, "DARTS")
  cards = DartsSpace.gene_cardinalities
  if len(g) != len(cards) or not all(0 <= x < c for x, c in zip(g, cards)):
    raise ArchStringError(f"DARTS genes must be {len(cards)} ints in range, got {g}")
  cells = []
  for c in range(len(CELLS)):
    ops = g[2 * c * NUM_PAIRS:(2 * c + 1) * NUM_PAIRS]
    inputs = g[(2 * c + 1) * NUM_PAIRS:(2 * c + 2) * NUM_PAIRS]
    cells.append([(PRIMITIVES[o], i) for o, i in zip(ops, inputs)])
  return Genotype(normal=cells[0], normal_concat=list(CONCAT), reduce=cells[1],
                  reduce_concat=list(CONCAT))


# ---- the space --------------------------------------------------------------------


def _split(genes: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(ops, inputs), each `[..., 2 cells, 8 pairs]`."""
  g = genes.reshape(genes.shape[:-1] + (len(CELLS), 2, NUM_PAIRS))
  return g[..., 0, :], g[..., 1, :]


def _join(ops: jax.Array, inputs: jax.Array) -> jax.Array:
  g = jnp.stack([ops, inputs], axis=-2)  # [..., 2 cells, 2, 8]
  return g.reshape(g.shape[:-3] + (-1,)).astype(jnp.int32)


class DartsSpace(base.SearchSpace):
  """DARTS (Liu et al., ICLR 2019) normal + reduce cells, concat fixed to [2, 3, 4, 5]."""

  name = "darts"
  num_nodes = NUM_NODES
  node_ops = ("input", "output", "input_prev") + PRIMITIVES
  input_ops = (_INPUT,)
  output_op = _OUTPUT
  gene_cardinalities = ((len(PRIMITIVES),) * NUM_PAIRS + (NUM_INPUTS,) * NUM_PAIRS) * 2
  # Most edges of a valid arch: every op node reading an intermediate node has 2
  # in-edges, plus one edge per op node into the output.
  edge_budget = 2 * len(CELLS) * NUM_PAIRS + len(CELLS) * NUM_PAIRS
  fixed_adjacency = False

  # ---- sizes ----------------------------------------------------------------

  def size(self) -> int:
    """Valid ordered genotypes: per node k, ordered distinct inputs and 7 ops each."""
    ops = len(PRIMITIVES) - 1
    per_cell = math.prod(k * (k - 1) * ops * ops for k in range(2, 2 + NUM_STEPS))
    return per_cell ** len(CELLS)

  # ---- native format ----------------------------------------------------------

  def from_string(self, s: str) -> np.ndarray:
    """Parses `repr(Genotype(...))`; also accepts `range(2, 6)` concats and "-quotes.

    An input index in 0..5 that is not earlier than its node parses: it is a
    structurally invalid genotype, which `strict_valid` rejects.
    """
    if not isinstance(s, str):
      raise ArchStringError(f"DARTS genotype string must be a str, got {type(s).__name__}")
    return _genes_of_fields(_parse_genotype(s))

  def to_string(self, genes) -> str:
    return repr(to_native(genes))

  def to_native(self, genes) -> Genotype:
    return to_native(genes)

  def from_native(self, genotype) -> np.ndarray:
    return from_native(genotype)

  # ---- vectorised ---------------------------------------------------------------

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """Uniform over valid genotypes: per node k, ordered distinct inputs in 0..k-1."""
    k_ops, k_first, k_second = jax.random.split(key, 3)
    steps = jnp.arange(2, 2 + NUM_STEPS)  # node k has k possible inputs
    shape = (n, len(CELLS), NUM_STEPS)
    ops = jax.random.randint(k_ops, (n, len(CELLS), NUM_PAIRS), 1, len(PRIMITIVES))
    first = jax.random.randint(k_first, shape, 0, steps)
    # Uniform over the k-1 values other than `first`: draw from 0..k-2, skip `first`.
    second = jax.random.randint(k_second, shape, 0, steps - 1)
    second = second + (second >= first)
    inputs = jnp.stack([first, second], axis=-1).reshape(n, len(CELLS), NUM_PAIRS)
    return _join(ops, inputs)

  def encode(self, genes: jax.Array) -> tuple[jax.Array, jax.Array]:
    genes = jnp.asarray(genes, jnp.int32)
    batch = genes.shape[:-1]
    op_genes, in_genes = _split(genes)
    ops = jnp.concatenate([
        jnp.full(batch + (1,), _INPUT, jnp.int32),
        jnp.full(batch + (1,), _INPUT_PREV, jnp.int32),
        op_genes.reshape(batch + (-1,)) + _OP0,
        jnp.full(batch + (1,), _OUTPUT, jnp.int32),
    ], axis=-1)
    # Input gene per dense node; -2 on non-op nodes never matches the table.
    node_in = jnp.concatenate([
        jnp.full(batch + (2,), -2, jnp.int32), in_genes.reshape(batch + (-1,)),
        jnp.full(batch + (1,), -2, jnp.int32)
    ], axis=-1)
    table = jnp.asarray(EDGE_INPUT)
    adj = (node_in[..., None, :] == table) & (table >= 0)
    return ops, adj | jnp.asarray(_OUTPUT_EDGES)

  def decode(self, ops: jax.Array, adj: jax.Array) -> jax.Array:
    ops = jnp.asarray(ops)
    adj = jnp.asarray(adj, bool)
    op_genes = jnp.clip(ops[..., 2:_OUT] - _OP0, 0, len(PRIMITIVES) - 1)
    # Input i is read iff the predecessor column is exactly i's pattern; patterns of
    # the inputs a node may read are distinct and non-empty, so at most one matches.
    in_genes = jnp.zeros(adj.shape[:-2] + (NUM_NODES,), jnp.int32)
    for i in range(NUM_INPUTS):
      match = jnp.all(adj == _PATTERNS[i], axis=-2) & _PATTERN_OK[i]
      in_genes = in_genes + i * match.astype(jnp.int32)
    in_genes = in_genes[..., 2:_OUT]
    shape = op_genes.shape[:-1] + (len(CELLS), NUM_PAIRS)
    return _join(op_genes.reshape(shape), in_genes.reshape(shape))

  def constrained_decode(self, op_logits, adj_logits, op_mask, adj_mask, adj_fixed):
    """Ops under the mask; each op node reads the input whose edge pattern scores best.

    Choosing input i for op node j sets column j to pattern i exactly, so the column's
    log-likelihood is, up to a constant, the sum of the adjacency logits on the
    pattern's rows. The two pairs of a node must read distinct inputs: if both prefer
    the same one, the better of (best, second) and (second, best) wins. The result is
    a genotype, re-encoded, so it is strictly valid whenever no op is `none`.
    """
    del adj_mask, adj_fixed
    ops = jnp.argmax(jnp.where(op_mask, op_logits, -jnp.inf), -1).astype(jnp.int32)
    patterns = jnp.asarray(_PATTERNS)                               # [I, N, N]
    scores = jnp.sum(jnp.where(patterns, adj_logits[None], 0.0), axis=1)  # [I, N]
    scores = jnp.where(jnp.asarray(_PATTERN_OK), scores, -jnp.inf)
    scores = scores[:, 2:_OUT].T.reshape(len(CELLS), NUM_STEPS, 2, NUM_INPUTS)
    a, b = scores[..., 0, :], scores[..., 1, :]
    best_a, best_b = jnp.argmax(a, -1), jnp.argmax(b, -1)
    second = lambda x, best: jnp.argmax(                              # noqa: E731
        jnp.where(jnp.arange(NUM_INPUTS) == best[..., None], -jnp.inf, x), -1)
    sec_a, sec_b = second(a, best_a), second(b, best_b)
    take = lambda x, i: jnp.take_along_axis(x, i[..., None], -1)[..., 0]  # noqa: E731
    keep_a = take(a, best_a) + take(b, sec_b) >= take(a, sec_a) + take(b, best_b)
    clash = best_a == best_b
    in_a = jnp.where(clash & ~keep_a, sec_a, best_a)
    in_b = jnp.where(clash & keep_a, sec_b, best_b)
    inputs = jnp.stack([in_a, in_b], axis=-1).reshape(len(CELLS), NUM_PAIRS)
    op_genes = jnp.clip(ops[2:_OUT] - _OP0, 0, len(PRIMITIVES) - 1).reshape(
        len(CELLS), NUM_PAIRS)
    return self.encode(_join(op_genes, inputs))

  def format_valid(self, ops: jax.Array, adj: jax.Array) -> jax.Array:
    del adj  # DiffusionNAG's format rules look at ops only
    ops = jnp.asarray(ops)
    return (base.io_format_valid(ops, self.num_ops, self.input_ops, self.output_op) &
            (ops[..., 1] == _INPUT_PREV) & jnp.all(ops[..., 2:_OUT] >= _OP0, axis=-1))

  def strict_valid(self, ops: jax.Array, adj: jax.Array) -> jax.Array:
    ops = jnp.asarray(ops)
    adj = jnp.asarray(adj, bool)
    genes = self.decode(ops, adj)
    # Every edge must be one the decoded genotype explains, and nothing else.
    explained = jnp.all(adj == self.encode(genes)[1], axis=(-2, -1))
    # An op node reading a node that is not earlier than its own has no edge at all.
    has_source = jnp.all(jnp.any(adj[..., :, 2:_OUT], axis=-2), axis=-1)
    _, inputs = _split(genes)
    distinct = jnp.all(inputs[..., 0::2] != inputs[..., 1::2], axis=(-2, -1))
    no_none = jnp.all(ops[..., 2:_OUT] != _NONE, axis=-1)
    alive = ops != _NONE
    return (self.format_valid(ops, adj) & no_none & explained & has_source & distinct &
            base.path_exists(adj, alive))

  def canonicalize(self, genes: jax.Array) -> jax.Array:
    """Orders the two pairs of each intermediate node by (input, op).

    A node sums its two ops, so their order is irrelevant. Relabelling intermediate
    nodes (e.g. swapping two nodes that do not read each other) is not merged.
    """
    genes = jnp.asarray(genes, jnp.int32)
    ops, inputs = _split(genes)
    shape = ops.shape[:-1] + (NUM_STEPS, 2)
    ops, inputs = ops.reshape(shape), inputs.reshape(shape)
    sort_key = inputs * len(PRIMITIVES) + ops
    swap = (sort_key[..., 0] > sort_key[..., 1])[..., None]
    ops = jnp.where(swap, ops[..., ::-1], ops)
    inputs = jnp.where(swap, inputs[..., ::-1], inputs)
    flat = ops.shape[:-2] + (NUM_PAIRS,)
    return _join(ops.reshape(flat), inputs.reshape(flat))
