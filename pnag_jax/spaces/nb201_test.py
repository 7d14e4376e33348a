"""NB201 space: literature counts, round trips, canonical keys, validity."""

import collections

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import ArchStringError
from pnag_jax.spaces import get_space, nb201

BEST_C10 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def space():
  return get_space("nb201")


def test_enumerate_gives_all_15625_distinct_cells(space):
  genes = space.enumerate()
  assert genes.shape == (15625, 6)
  keys = np.asarray(jax.jit(space.exact_key)(jnp.asarray(genes)))
  assert np.unique(keys, axis=0).shape[0] == 15625
  assert space.size() == 15625


def test_iso_key_gives_6466_classes_matching_nats_bench(space, nb201_rows):
  genes = space.from_strings([r["arch_str"] for r in nb201_rows])
  iso = np.asarray(jax.jit(space.iso_key)(jnp.asarray(genes)))[:, 0]
  assert np.unique(iso).size == 6466
  # Same partition as NATS-Bench's get_unique_str: a bijection between the labels.
  pairs = set(zip(iso.tolist(), (r["iso_unique_str"] for r in nb201_rows)))
  assert len(pairs) == 6466
  assert all(nb201.unique_str(g) == r["iso_unique_str"] for g, r in zip(genes, nb201_rows))


def test_string_round_trip_for_all_cells(space, nb201_rows):
  for r in nb201_rows:
    assert space.to_string(space.from_string(r["arch_str"])) == r["arch_str"]
  strings = space.to_strings(space.enumerate())
  assert len(set(strings)) == 15625
  assert set(strings) == {r["arch_str"] for r in nb201_rows}


def test_encode_decode_round_trip_jitted(space):
  genes = jnp.asarray(space.enumerate())
  ops, adj = jax.jit(space.encode)(genes)
  assert ops.shape == (15625, 8) and adj.shape == (15625, 8, 8)
  np.testing.assert_array_equal(jax.jit(space.decode)(ops, adj), genes)
  # One arch is the same call without the batch axis.
  o1, a1 = space.encode(genes[123])
  np.testing.assert_array_equal(o1, ops[123])
  np.testing.assert_array_equal(a1, adj[123])


def test_adjacency_is_the_correct_op_node_dag():
  adj = nb201.ADJACENCY
  assert not np.tril(adj).any()
  expected = {(0, 1), (0, 2), (0, 4),   # input feeds e01, e02, e03
              (1, 3), (1, 5),           # e01 -> e12, e13
              (2, 6), (3, 6),           # e02, e12 -> e23
              (4, 7), (5, 7), (6, 7)}   # edges into cell node 3 feed output
  assert set(zip(*np.nonzero(adj))) == expected


def test_validity(space):
  genes = jnp.asarray(space.enumerate())
  ops, adj = space.encode(genes)
  strict = np.asarray(jax.jit(space.strict_valid)(ops, adj))
  fmt = np.asarray(jax.jit(space.format_valid)(ops, adj))
  assert fmt.all()
  assert (~strict).sum() == 341  # cells with no input->output path (SOURCE.md)
  assert space.num_connected() == 15625 - 341
  none_cell = space.from_string(ALL_NONE)
  assert not space.strict_valid(*space.encode(none_cell))
  best = space.from_string(BEST_C10)
  o, a = space.encode(best)
  assert space.strict_valid(o, a)
  assert not space.strict_valid(o, a.at[0, 3].set(True))  # extra edge
  assert not space.format_valid(o.at[3].set(0), a)  # input op in the middle
  assert not space.format_valid(o.at[7].set(4), a)  # output replaced by an op
  assert not space.format_valid(o.at[2].set(7), a)  # op id out of range


def test_sample_is_uniform_over_connected_cells(space):
  genes = jax.jit(space.sample, static_argnums=1)(jax.random.key(0), 200_000)
  assert genes.shape == (200_000, 6) and genes.dtype == jnp.int32
  assert bool(jnp.all(space.strict_valid(*space.encode(genes))))
  counts = np.bincount(np.asarray(space.code(genes)), minlength=15625)
  connected = counts > 0
  assert connected.sum() == 15284
  # 200k draws over 15,284 cells: about 13.1 each; a skewed sampler would fail this.
  assert 11.0 < counts[connected].mean() < 15.0 and counts.max() < 40
  other = space.sample(jax.random.key(1), 1000)
  assert not np.array_equal(np.asarray(other), np.asarray(genes[:1000]))


def test_iso_examples(space):
  # e01 feeds only e12 and e13, both `none`: its op is a dead branch, so changing it
  # leaves the computed function unchanged.
  a = space.from_string("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
  b = space.from_string("|nor_conv_1x1~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
  assert not np.array_equal(space.exact_key(a), space.exact_key(b))
  np.testing.assert_array_equal(space.iso_key(a), space.iso_key(b))
  c = space.from_string(BEST_C10)
  assert not np.array_equal(space.iso_key(a), space.iso_key(c))


def test_graphs_tuple(space):
  genes = space.sample(jax.random.key(2), 5)
  g = jax.jit(space.graphs_tuple)(*space.encode(genes))
  assert g.nodes.shape == (5 * 8 + 1,)
  assert g.senders.shape == (5 * 10,)
  np.testing.assert_array_equal(g.n_edge, [10] * 5 + [0])


@pytest.mark.parametrize("bad, fragment", [
    ("", "3 '+'-separated blocks"),
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 '+'-separated blocks"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NB201 op"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "source must be ~0"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "exactly 2 edges"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
])
def test_from_string_errors_name_the_problem(space, bad, fragment):
  with pytest.raises(ArchStringError, match=fragment.replace("|", r"\|").replace("+", r"\+")):
    space.from_string(bad)


_VALID = [nb201.NB201Space().to_string(g) for g in nb201.genes_of_code(np.arange(0, 15625, 97))]


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(st.text(alphabet=st.sampled_from(list("|+~0123 nonekip_cvrl13xagp")), max_size=120))
def test_fuzz_random_text(space, s):
  _parse_or_value_error(space, s)


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(st.sampled_from(_VALID), st.lists(
    st.tuples(st.sampled_from(["ins", "del", "rep"]), st.integers(0, 200),
              st.characters(codec="utf-8")), min_size=1, max_size=4))
def test_fuzz_mutated_valid_strings(space, s, edits):
  for kind, pos, ch in edits:
    pos %= len(s) + 1
    if kind == "ins":
      s = s[:pos] + ch + s[pos:]
    elif kind == "del":
      s = s[:pos] + s[pos + 1:]
    else:
      s = s[:pos] + ch + s[pos + 1:]
  _parse_or_value_error(space, s)


def _parse_or_value_error(space, s):
  try:
    g = space.from_string(s)
  except ValueError as e:
    assert str(e)
    return
  assert space.to_string(g) == s  # NB201 strings have one spelling
  np.testing.assert_array_equal(space.from_string(space.to_string(g)), g)


def test_literature_cell_counts_by_op():
  # Every op appears on every edge equally often: 5**5 cells per (edge, op).
  g = nb201.genes_of_code(np.arange(15625))
  for e in range(6):
    assert collections.Counter(g[:, e].tolist()) == {k: 3125 for k in range(5)}


@pytest.mark.parametrize("name", ["nb201", "darts"])
def test_to_string_refuses_genes_that_are_not_integers(name):
  space = get_space(name)
  genes = np.asarray(space.sample(jax.random.key(0), 1))[0]
  for bad in (genes + 0.7, genes.astype(bool)):  # int() used to read 3.7 as 3
    with pytest.raises(ArchStringError, match="must be integers"):
      space.to_string(bad)
  assert space.from_string(space.to_string(genes.astype(np.int64))).tolist() == genes.tolist()
