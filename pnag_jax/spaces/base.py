"""The interface every search space implements.

Three forms of one architecture (DESIGN §2):

* **native string**: what users paste into other tools (NB201 arch strings, OFA
  dicts, DARTS Genotypes, AutoFormer configs). Host-side only.
* **genes** `int32[..., G]`: a compact, lossless integer form of the native string;
  gene `i` lies in `[0, gene_cardinalities[i])`. `to_string(from_string(s)) == s`
  goes through genes.
* **dense** `ops int32[..., N]`, `adj bool[..., N, N]`: operations on nodes, nodes in
  topological order, node 0 the input, node N-1 the output, `adj` strictly upper
  triangular. This is what the models see and what the decoder emits.

Everything past the native string is vectorised over arbitrary leading axes and is
jit-able: a batch is just a leading axis, and one architecture is the same call
without it.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import PnagError

Array = jax.Array


def bits_for(cardinality: int) -> int:
  """Bits that hold the values 0 .. cardinality-1 (at least one)."""
  return max(1, math.ceil(math.log2(cardinality)))


@functools.lru_cache(maxsize=None)
def key_layout(cardinalities: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], int]:
  """Packs genes into uint32 words without splitting a gene across two words.

  Returns (word index per gene, bit shift per gene, number of words).
  """
  words, shifts = [], []
  word, used = 0, 0
  for card in cardinalities:
    b = bits_for(card)
    if b > 32:
      raise ValueError(f"gene cardinality {card} does not fit a 32-bit word")
    if used + b > 32:
      word, used = word + 1, 0
    words.append(word)
    shifts.append(used)
    used += b
  return tuple(words), tuple(shifts), word + 1


def pack_genes(genes: Array, cardinalities: tuple[int, ...]) -> Array:
  """Packs `genes int[..., G]` into an exact key `uint32[..., W]`.

  Bit fields never overlap, so summing the shifted fields of a word equals OR-ing
  them; the sum lowers to one reduction per word. NumPy in, NumPy out (host-side
  bookkeeping of streamed chunks); jax in, jax out.
  """
  xp = np if isinstance(genes, np.ndarray) else jnp
  word_of, shift_of, num_words = key_layout(tuple(cardinalities))
  fields = genes.astype(xp.uint32) << xp.asarray(shift_of, xp.uint32)
  out = []
  for w in range(num_words):
    sel = np.flatnonzero(np.asarray(word_of) == w)
    out.append(xp.sum(fields[..., sel], axis=-1, dtype=xp.uint32))
  return xp.stack(out, axis=-1)


def strict_upper_mask(n: int) -> np.ndarray:
  return np.triu(np.ones((n, n), dtype=bool), k=1)


def path_exists(adj: Array, alive: Array) -> Array:
  """Whether node N-1 is reachable from node 0 through `alive` nodes only.

  Nodes are in topological order, so one forward sweep settles reachability: node j
  is reached iff it is alive and some reached earlier node points to it.

  Args:
    adj: bool[..., N, N], strictly upper triangular.
    alive: bool[..., N]; a dead node (e.g. a `none` op) passes nothing on.

  Returns:
    bool[...].
  """
  n = adj.shape[-1]
  reached = [alive[..., 0]]
  for j in range(1, n):
    prev = jnp.stack(reached, axis=-1)  # [..., j]
    reached.append(alive[..., j] & jnp.any(prev & adj[..., :j, j], axis=-1))
  return reached[-1]


def io_format_valid(ops: Array, num_ops: int, input_ops: Sequence[int],
                    output_op: int) -> Array:
  """DiffusionNAG's format rules: ops in range, input first, output last, neither in between."""
  in_range = jnp.all((ops >= 0) & (ops < num_ops), axis=-1)
  is_input = jnp.isin(ops, jnp.asarray(input_ops))
  is_output = ops == output_op
  ends_ok = is_input[..., 0] & is_output[..., -1]
  middle_ok = ~jnp.any(is_input[..., 1:-1] | is_output[..., 1:-1], axis=-1)
  return in_range & ends_ok & middle_ok


class SearchSpace(abc.ABC):
  """One architecture search space. Subclasses set the class attributes below."""

  #: Registry name, e.g. "nb201".
  name: str
  #: Number of nodes N of the dense form.
  num_nodes: int
  #: Node-op vocabulary of the dense form; `ops` values index into it.
  node_ops: tuple[str, ...]
  #: Vocabulary ids a node 0 may carry (usually just `input`).
  input_ops: tuple[int, ...] = (0,)
  #: Vocabulary id of node N-1.
  output_op: int = 1
  #: Cardinality of each gene; fixes G and the exact-key layout.
  gene_cardinalities: tuple[int, ...]
  #: Edges reserved per graph in `graphs_tuple` (the most a valid arch has).
  edge_budget: int
  #: Whether all valid archs share one adjacency (then only ops are generated).
  fixed_adjacency: bool = True
  #: Whether every format-valid graph decodes to itself (`encode(decode(g)) == g`), so
  #: that format validity alone makes it a member network. AutoFormer's ops also carry
  #: the depth (trailing skips): a format-valid sequence with a hole, or with a depth
  #: outside the choices, decodes to a neighbouring config, so only its strictly valid
  #: graphs are members.
  format_valid_decodes_exactly: bool = True
  #: Whether `enumerate()` lists the whole space (small, finite spaces such as NB201).
  enumerable: bool = False
  #: Groups of genes whose slots are alike: the same choices, applied to tensors of the
  #: same shape, so that a choice costs the same in any slot of its group. The linear
  #: prior's tied hypothesis (`models/linear_prior.py`) shares one weight per choice
  #: within a group. Empty where no two slots are alike.
  alike_genes: tuple[tuple[int, ...], ...] = ()

  # ---- sizes --------------------------------------------------------------

  @property
  def num_ops(self) -> int:
    return len(self.node_ops)

  @property
  def num_genes(self) -> int:
    return len(self.gene_cardinalities)

  @property
  def key_words(self) -> int:
    return key_layout(tuple(self.gene_cardinalities))[2]

  @abc.abstractmethod
  def size(self) -> int:
    """Exact number of architectures in the space (a Python int; may be huge)."""

  def enumerate(self) -> np.ndarray:
    """All architectures as genes `int32[size, G]`, where that is feasible."""
    raise PnagError(
        f"space {self.name!r} has {self.size():.3e} architectures; only finite, "
        "small spaces (nb201) can be enumerated")

  def index(self, genes: Array) -> Array:
    """Row of each arch in `enumerate()`, int32[...]; enumerable spaces only."""
    raise PnagError(f"space {self.name!r} is not enumerable")

  # ---- native format (host) -------------------------------------------------

  @abc.abstractmethod
  def from_string(self, s: str) -> np.ndarray:
    """Parses one native string to genes `int32[G]`.

    Raises:
      ArchStringError (a ValueError) naming what is wrong.
    """

  @abc.abstractmethod
  def to_string(self, genes: np.ndarray) -> str:
    """Formats genes `int[G]` as the native string."""

  def from_strings(self, strings: Sequence[str]) -> np.ndarray:
    if not strings:
      return np.zeros((0, self.num_genes), np.int32)
    return np.stack([self.from_string(s) for s in strings]).astype(np.int32)

  def to_strings(self, genes: np.ndarray) -> list[str]:
    genes = np.asarray(genes)
    return [self.to_string(g) for g in genes.reshape(-1, self.num_genes)]

  # ---- vectorised, jit-able -------------------------------------------------

  @abc.abstractmethod
  def sample(self, key: Array, n: int) -> Array:
    """`n` architectures uniformly over the valid ones, as genes `int32[n, G]`."""

  @abc.abstractmethod
  def encode(self, genes: Array) -> tuple[Array, Array]:
    """Genes `int[..., G]` to dense `(ops int32[..., N], adj bool[..., N, N])`."""

  @abc.abstractmethod
  def decode(self, ops: Array, adj: Array) -> Array:
    """Dense to genes `int32[..., G]`.

    Exact inverse of `encode` on valid archs. On invalid input it still returns genes
    in range; pair it with `strict_valid`.
    """

  @abc.abstractmethod
  def format_valid(self, ops: Array, adj: Array) -> Array:
    """DiffusionNAG-style format validity, `bool[...]`."""

  @abc.abstractmethod
  def strict_valid(self, ops: Array, adj: Array) -> Array:
    """Format validity plus connectivity and the space's structural rules, `bool[...]`."""

  def constrained_decode(self, op_logits: Array, adj_logits: Array, op_mask: Array,
                         adj_mask: Array, adj_fixed: Array) -> tuple[Array, Array]:
    """Hard decode under the grammar: one arch's logits `[N, K]`, `[N, N]` -> (ops, adj).

    The default masks each node's ops to those it may carry, and takes the fixed
    adjacency (fixed-adjacency spaces) or thresholds only admissible edges. Spaces with
    more structure in their edges override it.
    """
    ops = jnp.argmax(jnp.where(op_mask, op_logits, -jnp.inf), -1).astype(jnp.int32)
    if self.fixed_adjacency:
      return ops, adj_fixed
    return ops, adj_mask & (adj_logits > 0)

  def exact_key(self, genes: Array) -> Array:
    """Exact identity of the native string, `uint32[..., key_words]`."""
    return pack_genes(genes, tuple(self.gene_cardinalities))

  def canonicalize(self, genes: Array) -> Array:
    """Maps genes to one representative of their isomorphism class.

    The default is the identity; spaces with known symmetries override it.
    """
    return genes

  def iso_key(self, genes: Array) -> Array:
    """Isomorphism-aware identity, `uint32[..., key_words]`."""
    return self.exact_key(self.canonicalize(genes))

  def graphs_tuple(self, ops: Array, adj: Array):
    """A fixed-shape `jraph.GraphsTuple` for a batch `ops[B, N]`, `adj[B, N, N]`."""
    from pnag_jax.graphs import dense_to_graphs_tuple  # pylint: disable=g-import-not-at-top
    return dense_to_graphs_tuple(ops, adj, self.edge_budget)

  def __repr__(self) -> str:
    return f"<{type(self).__name__} {self.name}: N={self.num_nodes}, {self.num_ops} node ops>"
