"""Tests for the OFA MobileNetV3 subnet builder."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pnag_jax.networks import mbv3
from pnag_jax.spaces import get_space

LARGEST = {"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5}
SMALLEST = {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5}


def _rngs(seed: int = 0) -> nnx.Rngs:
  # rbg keys compile far faster than threefry on CPU, and these tests are dominated
  # by compiling the per-shape initialisers.
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _param_count(model: nnx.Module) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _abstract(config, num_classes=1000) -> mbv3.MobileNetV3Subnet:
  return nnx.eval_shape(
      lambda: mbv3.MobileNetV3Subnet(config, num_classes=num_classes, rngs=nnx.Rngs(0)))


@functools.lru_cache(maxsize=None)
def _abstract_largest() -> mbv3.MobileNetV3Subnet:
  return _abstract(LARGEST)


# ---- an independent closed-form count ---------------------------------------------
#
# Written from the layer specification of OFA's `OFAMobileNetV3(width_mult=1.0)` and
# `get_active_subnet` (mit-han-lab/once-for-all, ofa_mbv3.py, ofa/utils/layers.py,
# ofa/utils/pytorch_modules.py), not from the module under test. PyTorch counts a
# BatchNorm as 2 * channels parameters (weight, bias); running stats are buffers.


def _round8(v: float) -> int:
  """TF-slim channel rounding: nearest multiple of 8, >= 8, never more than 10% down."""
  r = max(8, int(v + 4) // 8 * 8)
  return r + 8 if r < 0.9 * v else r


def _bn(c: int) -> int:
  return 2 * c


def _mbconv(c_in: int, c_out: int, k: int, e: int, se: bool) -> int:
  mid = _round8(c_in * e)
  n = c_in * mid + _bn(mid)  # 1x1 expand
  n += k * k * mid + _bn(mid)  # depthwise
  if se:
    s = _round8(mid // 4)
    n += mid * s + s + s * mid + mid  # reduce and expand 1x1 convs, both with bias
  return n + mid * c_out + _bn(c_out)  # 1x1 project


def _expected_params(config, num_classes: int = 1000) -> int:
  n = 3 * 3 * 3 * 16 + _bn(16)  # first conv
  n += 3 * 3 * 16 + _bn(16) + 16 * 16 + _bn(16)  # first block: expand 1, no SE
  c = 16
  widths, se = (24, 40, 80, 112, 160), (False, True, False, True, True)
  for s in range(5):
    for i in range(config["d"][s]):
      j = 4 * s + i
      n += _mbconv(c, widths[s], config["ks"][j], config["e"][j], se[s])
      c = widths[s]
  n += c * 960 + _bn(960)  # final expand
  n += 960 * 1280  # feature mix: no BN, no bias
  return n + 1280 * num_classes + num_classes  # classifier


def test_make_divisible_matches_ofa_rounding():
  # 18 rounds to 16, which loses more than 10%, so OFA bumps it to 24.
  assert [mbv3.make_divisible(v) for v in (18, 24, 30, 36, 60, 120, 144)] == [
      24, 24, 32, 40, 64, 120, 144]
  assert mbv3.make_divisible(3) == 8


@pytest.mark.parametrize(("config", "expected"), [
    # The largest subnet holds every weight of the OFA MBV3 w1.0 supernet, whose size
    # is usually quoted as "7.7M"; we found no exact published figure, so the exact
    # value is the independent count above.
    (LARGEST, 7_664_760),
    (SMALLEST, 3_410_792),
])
def test_param_count_of_largest_and_smallest_subnets(config, expected):
  assert _expected_params(config) == expected
  model = _abstract_largest() if config is LARGEST else _abstract(config)
  assert _param_count(model) == expected


def test_largest_subnet_is_about_the_quoted_supernet_size():
  assert round(_param_count(_abstract_largest()) / 1e6, 1) == 7.7


def test_structure_follows_ofa():
  model = _abstract_largest()
  blocks = list(model.blocks)
  assert len(blocks) == 1 + 20
  assert blocks[0].expand is None and blocks[0].residual and blocks[0].se is None
  strides = [b.stride for b in blocks[1:]]
  assert strides == [2, 1, 1, 1] * 3 + [1] * 4 + [2, 1, 1, 1]
  # Residual exactly where the stride is 1 and the width is kept: all but stage heads
  # (stage 4 starts at stride 1 but widens 80 -> 112).
  assert [b.residual for b in blocks[1:]] == [False, True, True, True] * 5
  assert [b.se is not None for b in blocks[1::4]] == [False, True, False, True, True]
  # SE widths: stage 2 head (in 24, mid 144) -> 40, the next (in 40, mid 240) -> 64,
  # stage 5 after its head (in 160, mid 960) -> 240.
  assert blocks[5].se.reduce.kernel.shape == (1, 1, 144, 40)
  assert blocks[6].se.reduce.kernel.shape == (1, 1, 240, 64)
  assert blocks[18].se.reduce.kernel.shape == (1, 1, 960, 240)
  assert model.feature_mix.bias is None
  assert model.classifier.kernel.shape == (1280, 1000)


def test_forward_small_subnet_in_train_and_eval_mode():
  genes = get_space("mbv3").from_native(SMALLEST)
  model = mbv3.build(jnp.asarray(genes), input_shape=(32, 32, 3), num_classes=10,
                     rngs=_rngs())
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  forward = nnx.jit(lambda m, x: m(x))
  before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
  logits = forward(model, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))
  # Train mode normalises with batch statistics and updates the running ones.
  after = nnx.state(model, nnx.BatchStat)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before),
                                                   jax.tree.leaves(after)))
  model.eval()
  logits = forward(model, x)
  assert np.all(np.isfinite(logits))
  np.testing.assert_allclose(logits, forward(model, x))  # no dropout, running stats


def test_sampled_subnets_build_run_and_count():
  # On CPU every distinct network costs tens of seconds of XLA compilation, so the
  # sampled subnets (uniform sampling mostly draws depth 4) are built and run
  # abstractly, which traces every layer and checks every shape; the test above runs
  # a network for real.
  genes = np.asarray(get_space("mbv3").sample(jax.random.key(0), 3))
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  for g in genes:
    model = nnx.eval_shape(lambda g=g: mbv3.build(g, input_shape=(32, 32, 3),
                                                  num_classes=10, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    out = jax.eval_shape(lambda s, x, graphdef=graphdef: nnx.merge(graphdef, s)(x), state, x)
    assert out.shape == (2, 10) and out.dtype == jnp.float32
    config = get_space("mbv3").to_native(g)
    assert _param_count(model) == _expected_params(config, num_classes=10)


def test_build_rejects_small_inputs_and_bad_genes():
  genes = np.zeros(45, np.int32)
  with pytest.raises(ValueError, match="at least 32x32"):
    mbv3.build(genes, input_shape=(16, 16, 3), num_classes=10, rngs=_rngs())
  with pytest.raises(ValueError):
    mbv3.build(np.zeros(44, np.int32), input_shape=(32, 32, 3), num_classes=10,
               rngs=_rngs())
