"""Tests for the AutoFormer Tiny and Base spaces."""

import functools
import itertools
import json

import hypothesis
import hypothesis.strategies as st
import jax
import numpy as np
import pytest

from pnag_jax.errors import ArchStringError
from pnag_jax.spaces import autoformer as autoformer_space
from pnag_jax.spaces import get_space
from pnag_jax.spaces.autoformer import (AutoFormerBaseSpace, AutoFormerChoices,
                                        AutoFormerSpace, AutoFormerTinySpace,
                                        param_count)

NAMES = ("autoformer", "autoformer_base")

AUTOFORMER_T, AUTOFORMER_B = autoformer_space.AUTOFORMER_T, autoformer_space.AUTOFORMER_B

HAND_WRITTEN = {
    "autoformer": [
        {"embed_dim": 192, "depth": 12, "mlp_ratio": [3.5] * 12, "num_heads": [3] * 12},
        {"embed_dim": 240, "depth": 14, "mlp_ratio": [4.0, 3.5] * 7,
         "num_heads": [4, 4, 3] * 4 + [3, 4]},
        {"embed_dim": 216, "depth": 13,
         "mlp_ratio": [3.5, 3.5, 4.0, 3.5, 4.0, 4.0, 4.0, 4.0, 3.5, 4.0, 3.5, 4.0, 3.5],
         "num_heads": [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3]},
    ],
    "autoformer_base": [
        AUTOFORMER_B,
        {"embed_dim": 528, "depth": 16, "mlp_ratio": [3.0, 3.5, 4.0, 4.0] * 4,
         "num_heads": [10] * 16},
        {"embed_dim": 624, "depth": 15, "mlp_ratio": [3.0] * 15, "num_heads": [9, 10] * 7 + [9]},
    ],
}


def _autoformer_style(config):
  """AutoFormer's own subnet dict for a canonical config."""
  d = config["depth"]
  return {"layer_num": d, "embed_dim": [config["embed_dim"]] * d,
          "mlp_ratio": list(config["mlp_ratio"]), "num_heads": list(config["num_heads"])}


@functools.lru_cache(maxsize=None)
def _jitted(name):
  space = get_space(name)
  return (jax.jit(space.encode), jax.jit(space.decode), jax.jit(space.strict_valid),
          jax.jit(space.format_valid))


@functools.lru_cache(maxsize=None)
def _sampled(name, n=2000):
  space = get_space(name)
  return np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.PRNGKey(7), n))


# ---- structure ------------------------------------------------------------------


def test_registry_and_choices():
  tiny, base = get_space("autoformer"), get_space("autoformer_base")
  assert isinstance(tiny, AutoFormerTinySpace) and isinstance(base, AutoFormerBaseSpace)
  assert tiny.embed_dim_choices == (192, 216, 240)
  assert tiny.depth_choices == (12, 13, 14)
  assert tiny.mlp_ratio_choices == (3.5, 4.0)
  assert tiny.num_heads_choices == (3, 4)
  assert base.embed_dim_choices == (528, 576, 624)
  assert base.depth_choices == (14, 15, 16)
  assert base.mlp_ratio_choices == (3.0, 3.5, 4.0)
  assert base.num_heads_choices == (9, 10)
  assert (tiny.num_nodes, base.num_nodes) == (16, 18)
  assert tiny.node_ops == ("input_e192", "input_e216", "input_e240", "output",
                           "mlp3.5_h3", "mlp3.5_h4", "mlp4.0_h3", "mlp4.0_h4", "skip")
  assert base.node_ops[:4] == ("input_e528", "input_e576", "input_e624", "output")
  assert base.node_ops[4:] == ("mlp3.0_h9", "mlp3.0_h10", "mlp3.5_h9", "mlp3.5_h10",
                               "mlp4.0_h9", "mlp4.0_h10", "skip")
  for space in (tiny, base):
    assert space.input_ops == (0, 1, 2) and space.output_op == 3
    assert space.fixed_adjacency and space.edge_budget == space.num_nodes - 1
    assert space.num_genes == 2 + 2 * space.max_depth
  assert tiny.gene_cardinalities == (3, 3) + (2,) * 14 + (2,) * 14
  assert base.gene_cardinalities == (3, 3) + (3,) * 16 + (2,) * 16


# ---- native format ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_hand_written_round_trip(name):
  space = get_space(name)
  for config in HAND_WRITTEN[name]:
    genes = space.from_native(config)
    assert genes.dtype == np.int32 and genes.shape == (space.num_genes,)
    assert space.to_native(genes) == config
    s = json.dumps(config)
    assert space.to_string(space.from_string(s)) == s
    np.testing.assert_array_equal(space.from_native(_autoformer_style(config)), genes)
    np.testing.assert_array_equal(space.from_string(json.dumps(_autoformer_style(config))),
                                  genes)
    # Integral ratios and any JSON spelling parse to the same genes.
    ints = dict(config, mlp_ratio=[int(r) if r == int(r) else r for r in config["mlp_ratio"]])
    np.testing.assert_array_equal(space.from_native(ints), genes)
    np.testing.assert_array_equal(space.from_string(json.dumps(config, indent=2)), genes)
    np.testing.assert_array_equal(space.from_strings([s, s]), np.stack([genes, genes]))
    # Entries past the depth are canonical zeros.
    depth = config["depth"]
    assert not genes[2 + depth:2 + space.max_depth].any()
    assert not genes[2 + space.max_depth + depth:].any()


def test_published_base_subnet_is_in_base_space():
  space = get_space("autoformer_base")
  assert space.to_native(space.from_native(AUTOFORMER_B)) == AUTOFORMER_B


@pytest.mark.parametrize(("config_update", "field"), [
    ({"depth": 11, "mlp_ratio": [3.5] * 11, "num_heads": [3] * 11}, "depth"),
    ({"mlp_ratio": [3.5, 3.5, 3.0] + [3.5] * 9}, r"mlp_ratio\[2\]"),
    ({"num_heads": [3] * 11 + [5]}, r"num_heads\[11\]"),
    ({"embed_dim": 200}, "embed_dim"),
])
def test_from_string_rejects_values_outside_tiny(config_update, field):
  space = get_space("autoformer")
  config = dict(HAND_WRITTEN["autoformer"][0], **config_update)
  with pytest.raises(ValueError, match=field + r" = .* is not one of .* for autoformer"):
    space.from_string(json.dumps(config))


def test_rejection_message_names_the_field_and_choices():
  space = get_space("autoformer")
  config = dict(HAND_WRITTEN["autoformer"][0], mlp_ratio=[3.5] * 3 + [5.0] + [3.5] * 8)
  with pytest.raises(ArchStringError) as info:
    space.from_native(config)
  assert str(info.value) == "mlp_ratio[3] = 5.0 is not one of (3.5, 4.0) for autoformer"


@pytest.mark.parametrize(("text", "pattern"), [
    ("", "not valid JSON"),
    ("{", "not valid JSON"),
    ("[" * 50000, "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('"x"', "JSON object"),
    ('{"embed_dim": 192, "depth": 12, "mlp_ratio": []}', "missing key"),
    ('{"embed_dim": 192, "depth": 12, "mlp_ratio": [], "num_heads": [], "x": 1}',
     "unknown key"),
    ('{"embed_dim": 192, "embed_dim": 192, "depth": 12, "mlp_ratio": [], "num_heads": []}',
     "duplicate key"),
    ('{"embed_dim": 192, "depth": true, "mlp_ratio": [], "num_heads": []}', "depth"),
    ('{"embed_dim": 192, "depth": 12.0, "mlp_ratio": [], "num_heads": []}', "depth"),
    ('{"embed_dim": "192", "depth": 12, "mlp_ratio": [], "num_heads": []}', "embed_dim"),
    ('{"embed_dim": 192, "depth": 12, "mlp_ratio": [3.5], "num_heads": []}',
     "mlp_ratio has 1 entries"),
    ('{"embed_dim": 192, "depth": 12, "mlp_ratio": 3.5, "num_heads": []}', "mlp_ratio"),
    ('{"embed_dim": 192, "depth": 1, "mlp_ratio": [true], "num_heads": [3]}',
     r"mlp_ratio\[0\]"),
    ('{"embed_dim": 192, "depth": 1, "mlp_ratio": [NaN], "num_heads": [3]}',
     r"mlp_ratio\[0\]"),
    ('{"embed_dim": 192, "depth": 1, "mlp_ratio": ["4"], "num_heads": [3]}',
     r"mlp_ratio\[0\]"),
    ('{"embed_dim": 192, "depth": 1, "mlp_ratio": [4], "num_heads": [3.0]}',
     r"num_heads\[0\]"),
    ('{"embed_dim": 192, "depth": 1, "mlp_ratio": [1' + "0" * 400 + '], "num_heads": [3]}',
     "is not one of"),
    # The depth shortened in the message, as every other value is.
    ('{"embed_dim": 192, "depth": 1' + "0" * 4000 + ', "mlp_ratio": [], "num_heads": []}',
     r"^mlp_ratio has 0 entries but depth is 10{56}\.\.\. for autoformer"),
    ('{"layer_num": 1, "embed_dim": [192, 192], "mlp_ratio": [3.5], "num_heads": [3]}',
     "embed_dim has 2 entries"),
    ('{"layer_num": 12, "embed_dim": 192, "mlp_ratio": [], "num_heads": []}', "embed_dim"),
    ('{"layer_num": 12, "depth": 12, "embed_dim": [], "mlp_ratio": [], "num_heads": []}',
     "unknown key"),
])
def test_from_string_rejects_malformed(text, pattern):
  for name in NAMES:
    with pytest.raises(ArchStringError, match=pattern):
      get_space(name).from_string(text)


def test_autoformer_style_rejects_mixed_embed_dims():
  space = get_space("autoformer")
  config = _autoformer_style(HAND_WRITTEN["autoformer"][0])
  config["embed_dim"][5] = 216
  with pytest.raises(ArchStringError, match="constant"):
    space.from_native(config)
  config = dict(_autoformer_style(HAND_WRITTEN["autoformer"][0]), layer_num=11)
  with pytest.raises(ArchStringError, match="layer_num"):
    space.from_native(config)


def test_to_native_rejects_bad_genes():
  space = get_space("autoformer")
  with pytest.raises(ValueError):
    space.to_native(np.zeros(3, np.int32))
  genes = np.zeros(space.num_genes, np.int32)
  genes[0] = 3
  with pytest.raises(ValueError):
    space.to_native(genes)


# ---- vectorised forms --------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_sampled_archs(name):
  space = get_space(name)
  encode, decode, strict_valid, format_valid = _jitted(name)
  genes = _sampled(name)
  assert genes.shape == (2000, space.num_genes) and genes.dtype == np.int32
  assert np.all((genes >= 0) & (genes < np.asarray(space.gene_cardinalities)))
  ops, adj = encode(genes)
  assert ops.shape == (2000, space.num_nodes) and adj.shape == (2000,) + (space.num_nodes,) * 2
  assert bool(strict_valid(ops, adj).all()) and bool(format_valid(ops, adj).all())
  np.testing.assert_array_equal(decode(ops, adj), genes)
  np.testing.assert_array_equal(jax.jit(space.canonicalize)(genes), genes)
  # Depth d has (n_mlp * n_heads)**d configs: uniform archs weight depths so.
  depths = np.asarray(space.depth_choices)[genes[:, 1]]
  counts = np.array([np.sum(depths == d) for d in space.depth_choices])
  assert np.all(counts > 0)
  weights = np.array([float(space.num_layer_ops)**d for d in space.depth_choices])
  expected = 2000 * weights / weights.sum()
  assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 1)
  # Strings and vectorised parameter counts agree with the host path.
  for g in genes[:100]:
    np.testing.assert_array_equal(space.from_string(space.to_string(g)), g)
  host = [param_count(space.to_native(g)) for g in genes[:50]]
  np.testing.assert_array_equal(jax.jit(space.param_counts)(genes[:50]), host)


def test_arbitrary_leading_axes():
  space = get_space("autoformer")
  encode, decode, strict_valid, _ = _jitted("autoformer")
  genes = _sampled("autoformer")[:6].reshape(2, 3, -1)
  ops, adj = encode(genes)
  assert ops.shape == (2, 3, 16) and adj.shape == (2, 3, 16, 16)
  np.testing.assert_array_equal(decode(ops, adj), genes)
  assert strict_valid(ops, adj).shape == (2, 3) and bool(strict_valid(ops, adj).all())
  one = space.canonicalize(genes[0, 0])
  assert one.shape == (space.num_genes,)
  # Entries past the depth are zeroed.
  noisy = genes[0, 0].copy()
  depth = space.depth_choices[noisy[1]]
  noisy[2 + depth:2 + space.max_depth] = 1
  np.testing.assert_array_equal(space.canonicalize(noisy), genes[0, 0])


@pytest.mark.parametrize("name", NAMES)
def test_strict_valid_rejects_bad_dense(name):
  space = get_space(name)
  _, _, strict_valid, format_valid = _jitted(name)
  ops, adj = (np.array(x) for x in space.encode(_sampled(name)[0]))
  layer, skip, n = space.first_layer_op, space.skip_op, space.num_nodes

  def with_layers(tokens):
    o = ops.copy()
    o[1:-1] = skip
    o[1:1 + len(tokens)] = tokens
    return o

  shallow = with_layers([layer] * (space.min_depth - 1))
  hole = with_layers([layer] * space.max_depth)
  hole[3] = skip
  middle_input = ops.copy()
  middle_input[2] = 0
  middle_output = ops.copy()
  middle_output[2] = space.output_op
  output_not_last = ops.copy()
  output_not_last[n - 1], output_not_last[n - 2] = skip, space.output_op
  extra_edge = adj.copy()
  extra_edge[0, 2] = True
  cut = adj.copy()
  cut[4, 5] = False
  bad = [
      ("too shallow", shallow, adj, True),
      ("hole", hole, adj, True),
      ("input in the middle", middle_input, adj, False),
      ("output in the middle", middle_output, adj, False),
      ("output not last", output_not_last, adj, False),
      ("extra edge", ops, extra_edge, True),
      ("broken chain", ops, cut, True),
  ]
  good = [(f"depth {d}", with_layers([layer + i % space.num_layer_ops for i in range(d)]),
           adj, True) for d in space.depth_choices]
  cases = bad + good
  all_ops = np.stack([c[1] for c in cases])
  all_adj = np.stack([c[2] for c in cases])
  strict = np.asarray(strict_valid(all_ops, all_adj))
  fmt = np.asarray(format_valid(all_ops, all_adj))
  for (label, _, _, format_ok), s, f in zip(cases, strict, fmt):
    assert s == label.startswith("depth"), label
    assert f == format_ok, label
  # Decode of invalid input still yields genes in range.
  g = np.asarray(space.decode(all_ops, all_adj))
  assert np.all((g >= 0) & (g < np.asarray(space.gene_cardinalities)))


def test_decode_clips_depth_and_embed():
  space = get_space("autoformer")
  ops = np.full((1, 16), space.skip_op, np.int32)
  ops[0, 0], ops[0, -1] = space.output_op, space.output_op  # no input token
  ops[0, 1:4] = space.first_layer_op + 3
  g = np.asarray(space.decode(ops, np.zeros((1, 16, 16), bool)))[0]
  assert g[0] == 2 and g[1] == 0  # embed clipped to the last, depth 3 -> 12
  assert np.all(g[2:5] == 1) and np.all(g[16:19] == 1)
  assert not g[5:16].any() and not g[19:].any()


# ---- size ----------------------------------------------------------------------


def test_size_formula():
  assert get_space("autoformer").size() == 3 * (4**12 + 4**13 + 4**14)
  assert get_space("autoformer_base").size() == 3 * (6**14 + 6**15 + 6**16)
  with pytest.raises(Exception):
    get_space("autoformer").enumerate()


def test_size_brute_force_on_reduced_space():
  choices = AutoFormerChoices(name="tiny_test", embed_dims=(8, 16), depths=(1, 2),
                              mlp_ratios=(1.0, 2.0), num_heads=(1,))
  space = AutoFormerSpace(choices)
  assert space.num_nodes == 4 and space.num_ops == 2 + 1 + 2 + 1
  assert space.size() == 2 * (2 + 4)
  all_ops = np.array(list(itertools.product(range(space.num_ops), repeat=space.num_nodes)),
                     np.int32)
  chain = np.broadcast_to(np.eye(4, k=1, dtype=bool), (len(all_ops), 4, 4))
  valid = np.asarray(jax.jit(space.strict_valid)(all_ops, chain))
  assert valid.sum() == space.size()
  genes = np.asarray(jax.jit(space.decode)(all_ops, chain))[valid]
  assert len({g.tobytes() for g in genes}) == space.size()
  ops, _ = jax.jit(space.encode)(genes)
  np.testing.assert_array_equal(ops, all_ops[valid])
  sampled = np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.PRNGKey(0), 600))
  assert len({g.tobytes() for g in sampled}) == space.size()


# ---- parameter count ------------------------------------------------------------


def test_param_count_hand_computed():
  # embed 8, 1 layer, mlp 2.5, 1 head of 64, 10 classes, 32x32 input, patch 16.
  config = {"embed_dim": 8, "depth": 1, "mlp_ratio": [2.5], "num_heads": [1]}
  stem = 3 * 16 * 16 * 8 + 8 + 8 * (2 + 4) + 2 * 8 + 8 * 10 + 10
  layer = 4 * 8 + (8 * 192 + 192) + (64 * 8 + 8) + (8 * 20 + 20) + (20 * 8 + 8)
  kwargs = dict(num_classes=10, img_size=32, patch_size=16)
  assert param_count(config, relative_position=False, **kwargs) == stem + layer
  assert param_count(config, **kwargs) == stem + layer + 4 * 30 * 64
  assert param_count(_autoformer_style(config), **kwargs) == stem + layer + 4 * 30 * 64


def test_param_count_published_subnets():
  # AutoFormer's get_sampled_params_numel with its training flags (relative
  # position on) gives 5.87M for AutoFormer-T; the paper reports 5.7M, which the
  # count without the relative-position tables matches within 0.1M.
  assert param_count(AUTOFORMER_T) == 5_867_944
  assert param_count(AUTOFORMER_T, relative_position=False) == 5_768_104
  assert abs(param_count(AUTOFORMER_T, relative_position=False) - 5.7e6) <= 0.1e6
  assert param_count(AUTOFORMER_B) == 53_691_688  # published: 53.7M
  assert abs(param_count(AUTOFORMER_B) - 54e6) <= 0.5e6
  # Published (AutoFormer, ICCV 2021, and its model zoo): 5.7M and 53.7M.
  for config, published in ((AUTOFORMER_T, 5.7e6), (AUTOFORMER_B, 53.7e6)):
    for rel in (True, False):
      assert param_count(config, relative_position=rel) == pytest.approx(published, rel=0.03)
  assert get_space("autoformer").param_count(json.dumps(AUTOFORMER_T)) == 5_867_944
  with pytest.raises(ArchStringError):
    param_count({"embed_dim": 192, "depth": 1, "mlp_ratio": [0.0], "num_heads": [3]})


# ---- fuzzing ----------------------------------------------------------------------


def _parses_or_clean_error(space, text):
  try:
    genes = space.from_string(text)
  except ValueError as e:
    assert str(e)
    return
  np.testing.assert_array_equal(space.from_string(space.to_string(genes)), genes)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(name=st.sampled_from(NAMES), text=st.text(max_size=300))
def test_fuzz_arbitrary_text(name, text):
  _parses_or_clean_error(get_space(name), text)


_JSON_CHARS = '0123456789.,-+eE[]{}":  tfnaluN'


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    name=st.sampled_from(NAMES), which=st.integers(0, 49),
    edits=st.lists(st.tuples(st.sampled_from(("insert", "delete", "replace")),
                             st.integers(0, 10**6),
                             st.one_of(st.sampled_from(_JSON_CHARS), st.characters())),
                   min_size=1, max_size=4))
def test_fuzz_mutated_strings(name, which, edits):
  space = get_space(name)
  text = space.to_string(_sampled(name)[which])
  for kind, pos, char in edits:
    pos %= len(text) + 1
    if kind == "insert":
      text = text[:pos] + char + text[pos:]
    elif kind == "delete":
      text = text[:pos] + text[pos + 1:]
    else:
      text = text[:pos] + char + text[pos + 1:]
  _parses_or_clean_error(space, text)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-20, 700) | st.sampled_from([3.0, 3.5, 4.0])
    | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=16)
    | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=20)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    name=st.sampled_from(NAMES),
    config=st.dictionaries(
        st.sampled_from(("embed_dim", "depth", "layer_num", "mlp_ratio", "num_heads", "x")),
        _json_values, max_size=5))
def test_fuzz_native_dicts(name, config):
  space = get_space(name)
  try:
    genes = space.from_native(config)
  except ValueError as e:
    assert str(e)
    return
  np.testing.assert_array_equal(space.from_native(space.to_native(genes)), genes)


def test_param_count_refuses_a_hidden_width_that_does_not_exist():
  # 1e308 is a finite ratio; 192 times it is not, and int() of that overflowed.
  with pytest.raises(ArchStringError, match=r"mlp_ratio\[0\] = 1e\+308 must be a positive"):
    get_space("autoformer").param_count(
        '{"embed_dim": 192, "depth": 1, "mlp_ratio": [1e308], "num_heads": [3]}')
