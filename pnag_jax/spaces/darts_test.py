"""Tests for the DARTS search space."""

import functools

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import ArchStringError
from pnag_jax.errors import PnagError
from pnag_jax.spaces import darts
from pnag_jax.spaces import get_space

SPACE = darts.DartsSpace()
V2 = repr(darts.DARTS_V2)

_encode = jax.jit(SPACE.encode)
_decode = jax.jit(SPACE.decode)
_strict = jax.jit(SPACE.strict_valid)
_format = jax.jit(SPACE.format_valid)
_canon = jax.jit(SPACE.canonicalize)
_iso = jax.jit(SPACE.iso_key)
_exact = jax.jit(SPACE.exact_key)


def _strict_genes(genes) -> np.ndarray:
  return np.asarray(_strict(*_encode(jnp.asarray(genes))))


@functools.lru_cache(maxsize=1)
def _sampled() -> np.ndarray:
  return np.asarray(jax.jit(SPACE.sample, static_argnums=1)(jax.random.PRNGKey(0), 2000))


def test_registry_and_attributes():
  space = get_space("darts")
  assert isinstance(space, darts.DartsSpace)
  assert space.num_nodes == 19 and space.num_genes == 32
  assert space.node_ops[:3] == ("input", "output", "input_prev")
  assert space.node_ops[3:] == darts.PRIMITIVES
  assert space.edge_budget == 48 and not space.fixed_adjacency
  assert space.size() == (2 * 6 * 12 * 20 * 7**8) ** 2
  with pytest.raises(PnagError):
    space.enumerate()


def test_darts_v2_string_round_trip():
  genes = SPACE.from_string(V2)
  assert genes.dtype == np.int32 and genes.shape == (32,)
  assert SPACE.to_string(genes) == V2
  assert darts.to_native(genes) == darts.DARTS_V2
  np.testing.assert_array_equal(darts.from_native(darts.DARTS_V2), genes)
  np.testing.assert_array_equal(darts.from_native(darts.to_native(genes)), genes)


def test_from_string_accepts_range_and_double_quotes():
  s = V2.replace("[2, 3, 4, 5]", "range(2, 6)").replace("'", '"')
  np.testing.assert_array_equal(SPACE.from_string(s), SPACE.from_string(V2))
  spaced = "  " + V2.replace(", ", " ,  ") + "\n"
  np.testing.assert_array_equal(SPACE.from_string(spaced), SPACE.from_string(V2))


def test_darts_v2_dense():
  ops, adj = _encode(jnp.asarray(SPACE.from_string(V2)))
  ops, adj = np.asarray(ops), np.asarray(adj)
  assert bool(_strict(ops, adj))
  assert SPACE.node_ops[ops[0]] == "input" and SPACE.node_ops[ops[1]] == "input_prev"
  assert SPACE.node_ops[ops[18]] == "output"
  assert SPACE.node_ops[ops[9]] == "dil_conv_3x3"  # normal node 5, second pair
  # (dil_conv_3x3, 2): both op nodes of normal node 2 feed it, nothing else does.
  assert set(np.flatnonzero(adj[:, 9])) == {2, 3}
  assert set(np.flatnonzero(adj[:, 2])) == {0}  # (sep_conv_3x3, 0)
  assert set(np.flatnonzero(adj[:, 3])) == {1}  # (sep_conv_3x3, 1)
  # Reduce node 3, first pair (skip_connect, 2) reads reduce node 2 = dense 10, 11.
  assert set(np.flatnonzero(adj[:, 12])) == {10, 11}
  assert adj[2:18, 18].all() and not adj[:2, 18].any()
  assert not np.tril(adj).any()
  assert adj.sum() == 16 + 16 + 4  # one per pair and output, +1 per intermediate input
  np.testing.assert_array_equal(np.asarray(_decode(ops, adj)), SPACE.from_string(V2))


def _v2_with(cell: int, pair: int, op: int | None = None, src: int | None = None):
  genes = SPACE.from_string(V2).copy()
  if op is not None:
    genes[cell * 16 + pair] = op
  if src is not None:
    genes[cell * 16 + 8 + pair] = src
  return genes


def test_strict_valid_rejects_structural_errors():
  assert _strict_genes(SPACE.from_string(V2))
  # Normal node 4 reads c_{k-1} twice.
  same_pred = _v2_with(0, 5, src=1)
  assert same_pred[8 + 4] == same_pred[8 + 5] == 1
  assert not _strict_genes(same_pred)
  # Normal node 2 reads node 3 (later) or itself.
  assert not _strict_genes(_v2_with(0, 0, src=3))
  assert not _strict_genes(_v2_with(0, 1, src=2))
  # Reduce node 3 reads node 3.
  assert not _strict_genes(_v2_with(1, 2, src=3))
  # The `none` op.
  none_op = _v2_with(1, 7, op=darts.PRIMITIVES.index("none"))
  assert not _strict_genes(none_op)
  assert _format(*_encode(none_op))  # `none` is a format-valid token


def test_strict_valid_rejects_dense_corruptions():
  ops, adj = (np.asarray(x) for x in _encode(jnp.asarray(SPACE.from_string(V2))))
  extra = adj.copy()
  extra[4, 9] = True  # normal node 5 would read a third op node
  assert not _strict(ops, extra)
  extra = adj.copy()
  extra[0, 12] = True  # reduce op node reads c_{k-2} and node 2
  assert not _strict(ops, extra)
  missing = adj.copy()
  missing[3, 9] = False  # reads only half of node 2
  assert not _strict(ops, missing)
  no_out = adj.copy()
  no_out[5, 18] = False
  assert not _strict(ops, no_out)
  for node, token in ((0, 2), (1, 0), (18, 3), (5, 1), (5, 2), (7, 11)):
    bad = ops.copy()
    bad[node] = token
    assert not _format(bad, adj) and not _strict(bad, adj)


def test_string_errors():
  bad = {
      "": "parse",
      "Genotype(": "parse",
      "Foo(" + V2[len("Genotype("):]: "Genotype",
      V2.replace("normal=", "abnormal=", 1): "unknown",
      V2.replace("reduce_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4, 5]"): "duplicate",
      V2.replace(", reduce_concat=[2, 3, 4, 5]", ""): "missing",
      V2.replace("('dil_conv_3x3', 2)]", "('dil_conv_3x3', 2), ('skip_connect', 0)]"): "8",
      V2.replace("('dil_conv_3x3', 2)", "'dil_conv_3x3'"): "pair",
      V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', True)"): "pair",
      V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 2.0)"): "pair",
      V2.replace("('dil_conv_3x3', 2)", "(2, 'dil_conv_3x3')"): "pair",
      V2.replace("dil_conv_3x3", "conv_7x7"): "unknown op",
      V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 6)"): "out of range",
      V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', -1)"): "out of range",
      V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4]"): "concat",
      V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(0, 6)"): "concat",
      V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 0x" + "f" * 5000 + ")"): "range",
      V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', __import__('os'))"): "unsupported",
      "[" * 500 + "]" * 500: "parse",
      "\x00": "parse",
  }
  for s, words in bad.items():
    with pytest.raises(ArchStringError, match=words):
      SPACE.from_string(s)
  with pytest.raises(ArchStringError):
    darts.from_native(("normal", [], "reduce", []))
  with pytest.raises(ArchStringError, match="concat"):
    darts.from_native(darts.DARTS_V2._replace(reduce_concat=[2, 3, 4]))


def test_later_input_parses_but_is_invalid():
  s = V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)")
  genes = SPACE.from_string(s)
  assert SPACE.to_string(genes) == s
  assert not _strict_genes(genes)


def test_sampled_archs():
  genes = _sampled()
  assert genes.shape == (2000, 32) and genes.dtype == np.int32
  assert (genes >= 0).all() and (genes < np.asarray(SPACE.gene_cardinalities)).all()
  ops, adj = _encode(genes)
  assert np.asarray(_strict(ops, adj)).all()
  assert (np.asarray(adj).sum(axis=(-2, -1)) <= SPACE.edge_budget).all()
  np.testing.assert_array_equal(np.asarray(_decode(ops, adj)), genes)
  canon = np.asarray(_canon(genes))
  np.testing.assert_array_equal(np.asarray(_canon(canon)), canon)
  # Swapping the two pairs of normal node 3 (pairs 2, 3) keeps the iso key.
  swapped = genes.copy()
  for off in (0, 8):
    swapped[:, [off + 2, off + 3]] = genes[:, [off + 3, off + 2]]
  np.testing.assert_array_equal(np.asarray(_iso(swapped)), np.asarray(_iso(genes)))
  assert np.asarray(_strict(*_encode(swapped))).all()
  # Inputs of a node are distinct, so the swap always changes the exact key.
  assert (np.asarray(_exact(swapped)) != np.asarray(_exact(genes))).any(axis=-1).all()


def test_sample_is_uniform_enough():
  genes = _sampled()
  ops = genes[:, np.r_[0:8, 16:24]]
  assert ops.min() == 1 and ops.max() == 7  # never `none`
  # Node 5's first input is uniform over 0..4; with 4000 draws each has ~800.
  counts = np.bincount(genes[:, [8 + 6, 24 + 6]].ravel(), minlength=5)
  assert counts.size == 5 and (counts > 650).all()
  # Node 2 reads {0, 1} in both orders.
  assert set(map(tuple, genes[:, 8:10])) == {(0, 1), (1, 0)}


def test_strings_of_samples_round_trip():
  for g in _sampled()[:50]:
    s = SPACE.to_string(g)
    np.testing.assert_array_equal(SPACE.from_string(s), g)
    np.testing.assert_array_equal(darts.from_native(darts.to_native(g)), g)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.text())
def test_fuzz_arbitrary_text(s):
  try:
    genes = SPACE.from_string(s)
  except ValueError as e:
    assert str(e)
    return
  np.testing.assert_array_equal(SPACE.from_string(SPACE.to_string(genes)), genes)


_MUTATION = st.tuples(st.sampled_from(("insert", "delete", "replace")),
                      st.integers(0, 10**6),
                      st.sampled_from(list("()[]',\"0123456789-_ =aeGnrx\\")) | st.characters())


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.integers(0, 49), st.lists(_MUTATION, min_size=1, max_size=4))
def test_fuzz_mutated_strings(index, mutations):
  s = V2 if index == 0 else SPACE.to_string(_sampled()[index])
  for kind, pos, char in mutations:
    pos %= len(s) + 1
    if kind == "insert":
      s = s[:pos] + char + s[pos:]
    elif kind == "delete":
      s = s[:pos] + s[pos + 1:]
    else:
      s = s[:pos] + char + s[pos + 1:]
  try:
    genes = SPACE.from_string(s)
  except ValueError as e:
    assert str(e)
    return
  assert genes.dtype == np.int32 and genes.shape == (32,)
  np.testing.assert_array_equal(SPACE.from_string(SPACE.to_string(genes)), genes)


def test_constrained_decode_is_strictly_valid_and_exact_on_clean_logits():
  from pnag_jax.generation.constraints import grammar_masks  # pylint: disable=g-import-not-at-top
  space = get_space("darts")
  op_mask, adj_mask, fixed = grammar_masks(space)
  decode = jax.jit(jax.vmap(lambda o, a: space.constrained_decode(o, a, op_mask, adj_mask,
                                                                  fixed)))
  k1, k2 = jax.random.split(jax.random.key(0))
  n, k = space.num_nodes, space.num_ops
  ops, adj = decode(jax.random.normal(k1, (500, n, k)), jax.random.normal(k2, (500, n, n)))
  assert bool(jnp.all(space.strict_valid(ops, adj)))
  # Logits that say exactly what an encoded genotype is decode back to it.
  genes = space.sample(jax.random.key(1), 200)
  t_ops, t_adj = space.encode(genes)
  ops, adj = decode(10.0 * jax.nn.one_hot(t_ops, k), jnp.where(t_adj, 5.0, -5.0))
  np.testing.assert_array_equal(np.asarray(space.decode(ops, adj)), np.asarray(genes))
