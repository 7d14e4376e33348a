"""Tests for the OFA MobileNetV3 space."""

from __future__ import annotations

import functools
import itertools
import json

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import ArchStringError
from pnag_jax.spaces import get_space
from pnag_jax.spaces import mbv3

SPACE = mbv3.MBV3Space()
# Eager path_exists dispatches (and compiles) op by op; one jitted copy is far cheaper.
_STRICT = jax.jit(SPACE.strict_valid)
_FORMAT = jax.jit(SPACE.format_valid)
_ENCODE = jax.jit(SPACE.encode)
_DECODE = jax.jit(SPACE.decode)
_SAMPLE = jax.jit(SPACE.sample, static_argnums=1)

HAND_DICT = {
    "ks": [3, 5, 7, 3, 5, 7, 3, 5, 7, 7, 7, 7, 3, 3, 3, 3, 5, 5, 5, 5],
    "e": [3, 4, 6, 6, 4, 3, 6, 6, 3, 4, 4, 4, 6, 6, 6, 6, 3, 3, 4, 4],
    "d": [4, 4, 4, 4, 4],
}


@functools.lru_cache(maxsize=None)
def _sampled(n: int = 2000, seed: int = 0) -> np.ndarray:
  return np.asarray(_SAMPLE(jax.random.key(seed), n))


@functools.lru_cache(maxsize=None)
def _valid_strings() -> tuple[str, ...]:
  return tuple(SPACE.to_strings(_sampled()[:50]))


def _dense(layer_ops) -> np.ndarray:
  return np.asarray([0, *layer_ops, 1], np.int32)


def _chain_adj() -> np.ndarray:
  return np.eye(SPACE.num_nodes, k=1, dtype=bool)


def test_registry_and_attributes():
  space = get_space("mbv3")
  assert isinstance(space, mbv3.MBV3Space)
  assert space.num_nodes == 22 and space.num_ops == 12 and space.num_genes == 45
  assert space.edge_budget == 21 and space.fixed_adjacency
  assert space.node_ops[2] == "k3_e3" and space.node_ops[10] == "k7_e6"
  assert space.node_ops[11] == "skip"


def test_sampled_archs_valid_roundtrip_canonical():
  genes = _sampled()
  assert genes.shape == (2000, 45) and genes.dtype == np.int32
  ops, adj = _ENCODE(genes)
  assert ops.shape == (2000, 22) and adj.shape == (2000, 22, 22)
  assert ops.dtype == jnp.int32 and adj.dtype == jnp.bool_
  assert bool(jnp.all(_STRICT(ops, adj)))
  assert bool(jnp.all(_FORMAT(ops, adj)))
  np.testing.assert_array_equal(_DECODE(ops, adj), genes)
  np.testing.assert_array_equal(jax.jit(SPACE.canonicalize)(genes), genes)
  keys = jax.jit(SPACE.exact_key)(genes)
  assert keys.shape == (2000, SPACE.key_words) and keys.dtype == jnp.uint32


def test_encode_decode_arbitrary_leading_axes():
  genes = _sampled()[:24].reshape(2, 3, 4, 45)
  ops, adj = _ENCODE(genes)
  assert ops.shape == (2, 3, 4, 22) and adj.shape == (2, 3, 4, 22, 22)
  np.testing.assert_array_equal(_DECODE(ops, adj), genes)
  assert _STRICT(ops, adj).shape == (2, 3, 4)
  one_ops, one_adj = SPACE.encode(genes[0, 0, 0])
  assert one_ops.shape == (22,) and bool(_STRICT(one_ops, one_adj))


def test_encode_hand_example():
  g = SPACE.from_native({"ks": [7] * 20, "e": [4] * 20, "d": [2, 3, 4, 2, 2]})
  ops, adj = SPACE.encode(g)
  k7_e4 = SPACE.node_ops.index("k7_e4")
  stage_ops = [[k7_e4] * 2 + [11] * 2, [k7_e4] * 3 + [11], [k7_e4] * 4,
               [k7_e4] * 2 + [11] * 2, [k7_e4] * 2 + [11] * 2]
  np.testing.assert_array_equal(ops, _dense(sum(stage_ops, [])))
  np.testing.assert_array_equal(adj, _chain_adj())


def test_depth_distribution():
  # 6000 samples, reusing the compiled n=2000 sampler.
  genes = np.concatenate([_sampled(2000, seed) for seed in (1, 2, 3)])
  depth_idx = genes[:, 40:45].ravel()
  share = np.bincount(depth_idx, minlength=3) / depth_idx.size
  expected = np.asarray([9.0**2, 9.0**3, 9.0**4]) / 7371
  assert 0.86 <= share[2] <= 0.92
  np.testing.assert_allclose(share, expected, atol=0.02)
  # Present layers' ops are uniform over the 9 choices.
  ops, _ = _ENCODE(genes[:2000])
  layer = np.asarray(ops[:, 1:21]).ravel()
  counts = np.bincount(layer[layer != 11], minlength=11)[2:11]
  np.testing.assert_allclose(counts / counts.sum(), 1 / 9, atol=0.015)


def test_sample_distinct_keys_differ():
  a, b = _sampled(2000, 0), _sampled(2000, 1)
  assert not np.array_equal(a, b)


def test_native_roundtrip_hand_and_sampled():
  assert SPACE.to_native(SPACE.from_native(HAND_DICT)) == HAND_DICT
  s = json.dumps(HAND_DICT)
  assert SPACE.to_string(SPACE.from_string(s)) == s
  for g in _sampled()[:200]:
    d = SPACE.to_native(g)
    assert all(type(x) is int for v in d.values() for x in v)  # pylint: disable=unidiomatic-typecheck
    np.testing.assert_array_equal(SPACE.from_native(d), g)
    assert SPACE.to_native(SPACE.from_native(d)) == d
    s = SPACE.to_string(g)
    assert s == json.dumps(d)
    assert SPACE.to_string(SPACE.from_string(s)) == s
  np.testing.assert_array_equal(SPACE.from_strings(list(_valid_strings())), _sampled()[:50])


def test_garbage_in_skipped_layers():
  garbage = {"ks": [5, 7, 7, 5] + [3] * 16, "e": [4, 6, 6, 4] + [3] * 16,
             "d": [2, 4, 4, 4, 4]}
  canonical = {"ks": [5, 7, 3, 3] + [3] * 16, "e": [4, 6, 3, 3] + [3] * 16,
               "d": [2, 4, 4, 4, 4]}
  s = json.dumps(garbage)
  g = SPACE.from_string(s)
  assert SPACE.to_string(g) == s
  c = SPACE.from_native(canonical)
  np.testing.assert_array_equal(SPACE.canonicalize(g), c)
  np.testing.assert_array_equal(SPACE.iso_key(g), SPACE.iso_key(c))
  assert not np.array_equal(SPACE.exact_key(g), SPACE.exact_key(c))
  # Same network, so the same dense form; decode gives the canonical genes.
  np.testing.assert_array_equal(SPACE.encode(g)[0], SPACE.encode(c)[0])
  np.testing.assert_array_equal(SPACE.decode(*SPACE.encode(g)), c)


def test_count_archs_against_brute_force():
  # Stage 0 takes every assignment of (9 layer ops + skip) to its 4 layers; the
  # other stages are fixed to a valid config, so validity counts stage-0 assignments.
  assignments = np.asarray(list(itertools.product(range(2, 12), repeat=4)), np.int32)
  assert assignments.shape == (10**4, 4)
  rest = np.full((assignments.shape[0], 16), 2, np.int32)
  ops = np.concatenate([np.zeros((10**4, 1), np.int32), assignments, rest,
                        np.ones((10**4, 1), np.int32)], axis=1)
  adj = np.broadcast_to(_chain_adj(), (10**4, 22, 22))
  num_valid = int(jnp.sum(_FORMAT(ops, adj)))
  assert num_valid == mbv3.count_archs(num_stages=1) == 7371
  assert int(jnp.sum(_STRICT(ops, adj))) == 7371
  assert SPACE.size() == 7371**5 == mbv3.count_archs()
  assert isinstance(SPACE.size(), int)


def test_enumerate_raises():
  with pytest.raises(Exception):
    SPACE.enumerate()


def test_format_and_strict_rejections():
  ops, adj = (np.asarray(x) for x in SPACE.encode(SPACE.from_native(HAND_DICT)))
  assert _STRICT(ops, adj)
  cases = {}
  one_layer = ops.copy()
  one_layer[2:5] = 11  # stage 0: only layer 1 present
  cases["one_layer"] = one_layer
  hole = ops.copy()
  hole[7] = 11  # stage 1: present, present, skip, present
  cases["hole"] = hole
  leading_skip = ops.copy()
  leading_skip[1] = 11
  cases["leading_skip"] = leading_skip
  input_mid = ops.copy()
  input_mid[5] = 0
  cases["input_in_middle"] = input_mid
  output_mid = ops.copy()
  output_mid[10] = 1
  cases["output_in_middle"] = output_mid
  output_not_last = ops.copy()
  output_not_last[21] = 11
  cases["output_not_last"] = output_not_last
  no_input = ops.copy()
  no_input[0] = 2
  cases["input_not_first"] = no_input
  out_of_range = ops.copy()
  out_of_range[3] = 12
  cases["out_of_range"] = out_of_range
  batch = np.stack(list(cases.values()))
  fmt = np.asarray(_FORMAT(batch, np.broadcast_to(adj, batch.shape + (22,))))
  strict = np.asarray(_STRICT(batch, np.broadcast_to(adj, batch.shape + (22,))))
  for name, f, s in zip(cases, fmt, strict):
    assert not f, name
    assert not s, name
  # Non-chain adjacency: format-valid, not strict-valid.
  extra = adj.copy()
  extra[0, 2] = True
  missing = adj.copy()
  missing[5, 6] = False
  for bad in (extra, missing):
    assert _FORMAT(ops, bad)
    assert not _STRICT(ops, bad)


@pytest.mark.parametrize("bad, fragment", [
    ("", "JSON"),
    ("{", "JSON"),
    ("[1, 2]", "dict"),
    ("null", "dict"),
    ('{"ks": [3], "e": [3]}', "missing"),
    (json.dumps({**HAND_DICT, "w": 1.0}), "unknown"),
    (json.dumps({**HAND_DICT, "ks": HAND_DICT["ks"][:19]}), "20"),
    (json.dumps({**HAND_DICT, "d": [2, 3, 4, 2, 3, 4]}), "5"),
    (json.dumps({**HAND_DICT, "d": "2,3,4,2,3"}), "list"),
    (json.dumps({**HAND_DICT, "ks": [True] + HAND_DICT["ks"][1:]}), "int"),
    (json.dumps({**HAND_DICT, "e": [3.0] + HAND_DICT["e"][1:]}), "int"),
    (json.dumps({**HAND_DICT, "ks": [4] + HAND_DICT["ks"][1:]}), "[3, 5, 7]"),
    (json.dumps({**HAND_DICT, "e": [5] + HAND_DICT["e"][1:]}), "[3, 4, 6]"),
    (json.dumps({**HAND_DICT, "d": [1, 2, 3, 4, 4]}), "[2, 3, 4]"),
    ('{"ks": [], "ks": [], "e": [], "d": []}', "duplicate"),
    ("[" * 100000 + "]" * 100000, "allowed"),
    ("[" * 30000 + "]" * 30000, "JSON"),
    ("NaN", "dict"),
    ('{"d": [' + "9" * 5000 + "]}", "JSON"),
])
def test_parse_errors(bad, fragment):
  with pytest.raises(ArchStringError, match=None) as info:
    SPACE.from_string(bad)
  assert isinstance(info.value, ValueError)
  assert fragment in str(info.value)


def test_from_native_rejects_non_dicts():
  for bad in (None, [HAND_DICT], "x", 3, {1: 2}):
    with pytest.raises(ArchStringError):
      SPACE.from_native(bad)
  with pytest.raises(ArchStringError):
    SPACE.from_string(b"{}")  # type: ignore[arg-type]


def _check_parse(s: str) -> None:
  try:
    g = SPACE.from_string(s)
  except ValueError as e:
    assert isinstance(e, ArchStringError)
    assert str(e)
    return
  assert g.shape == (45,) and g.dtype == np.int32
  np.testing.assert_array_equal(SPACE.from_string(SPACE.to_string(g)), g)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.text())
def test_fuzz_arbitrary_text(s):
  _check_parse(s)


_ALPHABET = '0123456789[]{},:" ksed.-+eEnulltrufasNaI\\\n'
_edit = st.tuples(
    st.sampled_from(("insert", "delete", "replace")),
    st.integers(min_value=0, max_value=10**4),
    st.one_of(st.sampled_from(_ALPHABET), st.characters()),
)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.integers(min_value=0, max_value=49), st.lists(_edit, max_size=6))
def test_fuzz_mutated_valid_strings(index, edits):
  s = list(_valid_strings()[index])
  for kind, pos, ch in edits:
    if kind == "insert":
      s.insert(pos % (len(s) + 1), ch)
    elif s:
      i = pos % len(s)
      if kind == "delete":
        del s[i]
      else:
        s[i] = ch
  _check_parse("".join(s))


# ---- mbv3_r: the resolution as a gene ----------------------------------------------------

SPACE_R = mbv3.MBV3ResolutionSpace()


def test_resolution_space_attributes():
  space = get_space("mbv3_r")
  assert isinstance(space, mbv3.MBV3ResolutionSpace)
  assert space.num_genes == 46 and space.num_ops == 16 and space.num_nodes == 22
  assert space.size() == 5 * mbv3.count_archs()
  # MBV3's ops keep their ids; the inputs name the resolutions, 160 first.
  assert space.node_ops[:12] == ("input_r160",) + SPACE.node_ops[1:]
  assert [space.node_ops[i] for i in space.input_ops] == [
      "input_r160", "input_r176", "input_r192", "input_r208", "input_r224"]


def test_resolution_space_native_forms():
  d = {**HAND_DICT, "r": 192}
  genes = SPACE_R.from_string(json.dumps(d))
  assert genes[:45].tolist() == SPACE.from_native(HAND_DICT).tolist() and genes[45] == 2
  assert SPACE_R.to_native(genes) == d
  assert SPACE_R.to_string(genes) == json.dumps(d)
  # OFA's own spelling: the resolution in a one-element list, and `"wid": null`.
  ofa = {"wid": None, **HAND_DICT, "r": [192]}
  assert SPACE_R.from_native(ofa).tolist() == genes.tolist()


def test_mbv3_reads_ofas_spelling_at_its_own_resolution():
  genes = SPACE.from_native(HAND_DICT)
  for extra in ({"wid": None}, {"r": 224}, {"r": [224], "wid": None}):
    assert SPACE.from_native({**HAND_DICT, **extra}).tolist() == genes.tolist()
  with pytest.raises(ArchStringError, match="mbv3 subnets run at 224 px, got 'r' = 192; "
                                            "the mbv3_r space searches the resolution"):
    SPACE.from_native({**HAND_DICT, "r": 192})
  with pytest.raises(ArchStringError, match="'wid' must be null"):
    SPACE.from_native({**HAND_DICT, "wid": 1.0})
  with pytest.raises(ArchStringError, match="'r' = None is not one of"):
    SPACE.from_native({**HAND_DICT, "r": None})


@pytest.mark.parametrize("bad, fragment", [
    ({**HAND_DICT}, "missing key 'r'"),
    ({**HAND_DICT, "r": 200}, "'r' = 200 is not one of [160, 176, 192, 208, 224]"),
    ({**HAND_DICT, "r": [192, 224]}, "'r' = [192, 224] is not one of"),
    ({**HAND_DICT, "r": True}, "'r' = True is not one of"),
    ({**HAND_DICT, "r": None}, "'r' = None is not one of"),
    ({**HAND_DICT, "r": 192, "wid": 1.2}, "'wid' must be null"),
    ({**HAND_DICT, "r": 192, "w": 1}, "unknown keys ['w']"),
    ({"ks": [3] * 19, "e": [3] * 20, "d": [2] * 5, "r": 160}, "'ks' must have 20 entries"),
])
def test_resolution_space_parse_errors(bad, fragment):
  with pytest.raises(ArchStringError) as e:
    SPACE_R.from_native(bad)
  assert fragment in str(e.value) and "\n" not in str(e.value)


def test_resolution_space_dense_roundtrip_and_validity():
  genes = np.asarray(jax.jit(SPACE_R.sample, static_argnums=1)(jax.random.key(3), 500))
  assert sorted(set(genes[:, 45].tolist())) == [0, 1, 2, 3, 4]
  ops, adj = jax.jit(SPACE_R.encode)(genes)
  # Node 0 carries the resolution; the layers are MBV3's.
  np.testing.assert_array_equal(np.asarray(ops)[:, 0], np.asarray(SPACE_R.input_ops)[genes[:, 45]])
  np.testing.assert_array_equal(np.asarray(ops)[:, 1:], np.asarray(_ENCODE(genes[:, :45])[0])[:, 1:])
  np.testing.assert_array_equal(np.asarray(jax.jit(SPACE_R.decode)(ops, adj)), genes)
  assert np.asarray(jax.jit(SPACE_R.strict_valid)(ops, adj)).all()
  # A resolution input anywhere but node 0 is invalid, as a second `input` is in MBV3.
  bad = np.asarray(ops).copy()
  bad[:, 5] = SPACE_R.input_ops[3]
  assert not np.asarray(jax.jit(SPACE_R.format_valid)(bad, adj)).any()
  # Canonical form: skipped layers zeroed, the resolution kept.
  canon = np.asarray(SPACE_R.canonicalize(genes))
  np.testing.assert_array_equal(canon[:, :45], np.asarray(SPACE.canonicalize(genes[:, :45])))
  np.testing.assert_array_equal(canon[:, 45], genes[:, 45])


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.one_of(st.integers(-10, 300), st.lists(st.integers(150, 230), max_size=3),
                            st.text(max_size=4), st.none(), st.floats(allow_nan=True)))
def test_fuzz_resolution_values(r):
  d = {**HAND_DICT, "r": r}
  try:
    genes = SPACE_R.from_native(d)
  except ArchStringError as e:
    assert "\n" not in str(e)
    return
  value = r[0] if isinstance(r, list) else r
  assert value in mbv3.RESOLUTIONS and mbv3.RESOLUTIONS[genes[45]] == value
