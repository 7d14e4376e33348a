"""Tests for the DARTS CIFAR network builder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pnag_jax.networks import darts
from pnag_jax.spaces import darts as darts_space
from pnag_jax.spaces import get_space

_SMALL = dict(init_channels=4, layers=3)  # one normal and two reduction cells


def _num_params(model: nnx.Module) -> int:
  # PyTorch's `parameters()`: conv / linear weights and biases, BN scale and bias;
  # BN running statistics are buffers there and `nnx.BatchStat` here.
  return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def _images(key: int, batch: int = 2, size: int = 32) -> jax.Array:
  return jax.random.normal(jax.random.key(key), (batch, size, size, 3), jnp.float32)


@pytest.fixture(scope="module")
def darts_v2():
  # The full CIFAR-10 network (~10-25 s to build on a small CPU); built once.
  return darts.build(darts_space.DARTS_V2, input_shape=(32, 32, 3), num_classes=10,
                     rngs=nnx.Rngs(0))


def test_darts_v2_has_3_3m_params(darts_v2):
  n = _num_params(darts_v2)
  print(f"DARTS_V2, C=36, 20 layers, 10 classes: {n} parameters")
  assert n == pytest.approx(3.3e6, rel=0.03)  # the paper's 3.3M
  assert n == 3_349_342  # DARTS' count_parameters_in_MB: 3.349342


def test_darts_v2_layout(darts_v2):
  cells = list(darts_v2.cells)
  assert [i for i, c in enumerate(cells) if c.reduction] == [6, 13]
  assert [c.out_channels for c in cells] == [144] * 6 + [288] * 7 + [576] * 7
  # Only the cell right after a reduction reads c_{k-2} through a FactorizedReduce.
  assert [i for i, c in enumerate(cells)
          if isinstance(c.preprocess0, darts.FactorizedReduce)] == [7, 14]
  # DARTS_V2's reduce cell: max pools on inputs 0 / 1 are strided, skips from node 2
  # are identities.
  reduce = cells[6]
  assert [type(op).__name__ for op in reduce.ops] == [
      "Pool3x3", "Pool3x3", "Identity", "Pool3x3", "Pool3x3", "Identity", "Identity",
      "Pool3x3"]
  assert [op.stride for op in reduce.ops if isinstance(op, darts.Pool3x3)] == [2] * 5


def test_genes_and_genotype_build_the_same_network():
  genes = darts_space.from_native(darts_space.DARTS_V2)
  assert darts.genotype_of(genes) == darts.genotype_of(darts_space.DARTS_V2)
  assert darts.genotype_of(jnp.asarray(genes)) == darts.genotype_of(genes)
  a = darts.build(genes, input_shape=(8, 8, 3), num_classes=10, rngs=nnx.Rngs(0), **_SMALL)
  b = darts.build(darts_space.DARTS_V2, input_shape=(8, 8, 3), num_classes=10,
                  rngs=nnx.Rngs(0), **_SMALL)
  assert a.genotype == b.genotype
  assert _num_params(a) == _num_params(b)


def test_forward_gives_finite_logits():
  model = darts.build(darts_space.DARTS_V2, input_shape=(32, 32, 3), num_classes=10,
                      rngs=nnx.Rngs(0), **_SMALL)
  # Eagerly: XLA compiles each small op once (and the cache serves later tests),
  # far faster on CPU than compiling the whole network as one program.
  logits = model(_images(0))
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert jnp.isfinite(logits).all()


def test_sampled_genotypes_build_and_run():
  genes = get_space("darts").sample(jax.random.key(0), 3)
  x = _images(1, size=8)
  for g in genes:
    model = darts.build(g, input_shape=(8, 8, 3), num_classes=10, rngs=nnx.Rngs(0),
                        **_SMALL)
    logits = model(x)  # eager: the ops' compiled kernels are shared across genotypes
    assert logits.shape == (2, 10) and jnp.isfinite(logits).all()


def test_every_op_runs_at_both_strides():
  x = jax.random.normal(jax.random.key(0), (2, 7, 7, 4))  # odd: strides round up
  for name in darts_space.PRIMITIVES:
    for stride, size in ((1, 7), (2, 4)):
      y = darts.make_op(name, 4, stride, rngs=nnx.Rngs(0))(x)
      assert y.shape == (2, size, size, 4), (name, stride)
      assert jnp.isfinite(y).all()


def test_factorized_reduce_matches_the_reference_on_even_sizes():
  # The reference feeds the second conv x[:, 1:, 1:]; our end-padding must not
  # change the pixels it sees on even sizes.
  op = darts.FactorizedReduce(3, 4, rngs=nnx.Rngs(0))
  op.eval()
  x = jax.random.normal(jax.random.key(1), (1, 6, 6, 3))
  relu = jax.nn.relu(x)
  ref = jnp.concatenate([op.conv_1(relu), op.conv_2(relu[:, 1:, 1:])], axis=-1)
  np.testing.assert_allclose(op(x), op.bn(ref), rtol=1e-5, atol=1e-6)


def test_avg_pool_averages_only_real_pixels():
  x = jnp.full((1, 5, 5, 2), 3.0)
  np.testing.assert_allclose(darts.make_op("avg_pool_3x3", 2, 1, rngs=nnx.Rngs(0))(x), x)


def test_auxiliary_head():
  model = darts.build(darts_space.DARTS_V2, input_shape=(32, 32, 3), num_classes=10,
                      rngs=nnx.Rngs(0), auxiliary=True, **_SMALL)
  plain = darts.build(darts_space.DARTS_V2, input_shape=(32, 32, 3), num_classes=10,
                      rngs=nnx.Rngs(0), **_SMALL)
  # AuxiliaryHeadCIFAR on the 64 channels of cell 2: 1x1 conv, BN, 2x2 conv, BN, linear.
  c_aux = model.cells[2].out_channels
  assert c_aux == 64
  assert _num_params(model) - _num_params(plain) == (
      c_aux * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10)
  x = _images(2)
  logits, aux = model.forward_with_aux(x)
  assert logits.shape == aux.shape == (2, 10)
  assert jnp.isfinite(logits).all() and jnp.isfinite(aux).all()
  with pytest.raises(ValueError, match="auxiliary"):
    plain.forward_with_aux(x)
  assert darts.min_input_size(auxiliary=True) == 32
  with pytest.raises(ValueError, match="at least 32x32"):
    darts.build(darts_space.DARTS_V2, input_shape=(16, 16, 3), num_classes=10,
                rngs=nnx.Rngs(0), auxiliary=True)


def test_drop_path_is_random_in_training_only_and_rate_needs_no_recompile():
  model = darts.build(darts_space.DARTS_V2, input_shape=(8, 8, 3), num_classes=10,
                      rngs=nnx.Rngs(0), drop_path_prob=0.5, **_SMALL)
  traces = []

  @nnx.jit
  def forward(m, x):
    traces.append(1)
    return m(x)

  x = _images(3, batch=8, size=8)
  model.eval()
  eval_logits = forward(model, x)
  np.testing.assert_allclose(eval_logits, forward(model, x))
  graphdef, state = nnx.split(model)
  merged = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
  np.testing.assert_allclose(merged, eval_logits, rtol=1e-5, atol=1e-6)
  model.train()
  a, b = forward(model, x), forward(model, x)
  assert not np.allclose(a, b)  # a fresh mask per call
  num_traces = len(traces)
  model.set_drop_path_prob(0.0)
  c = forward(model, x)
  assert len(traces) == num_traces  # the rate is state, not a static attribute
  # With rate 0, training mode differs from eval only through batch statistics.
  np.testing.assert_allclose(c, forward(model, x), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="drop_path_prob"):
    model.set_drop_path_prob(1.0)


def test_gradients_are_finite():
  model = darts.build(get_space("darts").sample(jax.random.key(1), 1)[0],
                      input_shape=(8, 8, 3), num_classes=10, rngs=nnx.Rngs(0),
                      drop_path_prob=0.2, init_channels=4, layers=2)  # both cells reduce
  x, y = _images(4, size=8), jnp.array([1, 7])

  def loss(m):
    logp = jax.nn.log_softmax(m(x))
    return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

  leaves = jax.tree.leaves(nnx.jit(nnx.grad(loss))(model))
  assert leaves and all(jnp.isfinite(g).all() for g in leaves)


@pytest.mark.parametrize("size", [darts.MIN_INPUT_SIZE, 7])
def test_small_and_odd_inputs_run(size):
  model = darts.build(darts_space.DARTS_V2, input_shape=(size, size, 1), num_classes=3,
                      rngs=nnx.Rngs(0), **_SMALL)
  logits = model(jnp.ones((2, size, size, 1)))
  assert logits.shape == (2, 3) and jnp.isfinite(logits).all()


def test_build_rejects_bad_input():
  with pytest.raises(ValueError, match="at least"):
    darts.build(darts_space.DARTS_V2, input_shape=(3, 3, 3), num_classes=10,
                rngs=nnx.Rngs(0))
  genes = darts_space.from_native(darts_space.DARTS_V2)
  bad = genes.copy()
  bad[8] = 2  # normal pair 0 (node 2) reads node 2, itself
  with pytest.raises(ValueError, match="reads state 2"):
    darts.build(bad, input_shape=(8, 8, 3), num_classes=10, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError):
    darts.build(genes[:-1], input_shape=(8, 8, 3), num_classes=10, rngs=nnx.Rngs(0))
  weird = darts_space.DARTS_V2._replace(
      normal=[("sep_conv_7x7", 0)] + list(darts_space.DARTS_V2.normal[1:]))
  with pytest.raises(ValueError, match="unknown DARTS op"):
    darts.build(weird, input_shape=(8, 8, 3), num_classes=10, rngs=nnx.Rngs(0))
