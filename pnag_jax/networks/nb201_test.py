"""Tests for the NAS-Bench-201 network builder."""

from __future__ import annotations

import csv
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pnag_jax.networks import nb201
from pnag_jax.spaces import get_space

_SPACE = get_space("nb201")
_ALL_3X3 = np.full(6, nb201.nb201_space.OPS.index("nor_conv_3x3"), np.int32)


def _num_params(model: nnx.Module) -> int:
  # PyTorch's `parameters()`: conv / linear weights, biases and BN scale / bias;
  # BN running statistics are buffers there and `nnx.BatchStat` here.
  return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def _zc_rows(data_dir, dataset: str) -> list[dict[str, str]]:
  with open(data_dir / "nb201" / "nb201_naslib_zc_subset.csv", newline="") as f:
    return [r for r in csv.DictReader(f) if r["dataset"] == dataset]


def _conv_key(genes: np.ndarray) -> tuple[int, int]:
  return (int((genes == nb201.nb201_space.OPS.index("nor_conv_1x1")).sum()),
          int((genes == nb201.nb201_space.OPS.index("nor_conv_3x3")).sum()))


def _images(key: int, batch: int = 2, size: int = 32) -> jax.Array:
  return jax.random.normal(jax.random.key(key), (batch, size, size, 3), jnp.float32)


def test_param_counts_match_nb201_table_for_every_cifar10_row(data_dir):
  rows = _zc_rows(data_dir, "cifar10")
  assert len(rows) > 700
  genes = [_SPACE.from_string(r["arch_str"]) for r in rows]
  # Building all ~724 networks takes minutes on a small CPU, so one network is built
  # per (#conv1x1, #conv3x3) -- the only edge ops with parameters -- and each row is
  # checked against the built network of its key. The table agrees: rows sharing a
  # key share one `params` value.
  table = {}
  for g, r in zip(genes, rows):
    table.setdefault(_conv_key(g), set()).add(r["params"])
  assert all(len(v) == 1 for v in table.values()), table
  start = time.perf_counter()
  counts = {}
  for g in genes:
    key = _conv_key(g)
    if key not in counts:
      model = nb201.build(g, input_shape=(32, 32, 3), num_classes=10, rngs=nnx.Rngs(0))
      counts[key] = _num_params(model)
  errors = [abs(counts[_conv_key(g)] / 1e6 - float(r["params"])) / float(r["params"])
            for g, r in zip(genes, rows)]
  print(f"{len(rows)} cifar10 rows, {len(counts)} networks built in "
        f"{time.perf_counter() - start:.1f} s, max relative error {max(errors):.2e}")
  assert max(errors) < 0.01
  # The largest cell, exactly: NB201 reports 1.531546 MB for it on CIFAR-10.
  model = nb201.build(_ALL_3X3, input_shape=(32, 32, 3), num_classes=10, rngs=nnx.Rngs(0))
  assert _num_params(model) == 1_531_546


@pytest.mark.parametrize("dataset,num_classes,size", [("cifar100", 100, 32),
                                                       ("ImageNet16-120", 120, 16)])
def test_param_counts_match_other_datasets(data_dir, dataset, num_classes, size):
  for r in _zc_rows(data_dir, dataset)[:4]:
    model = nb201.build(_SPACE.from_string(r["arch_str"]), input_shape=(size, size, 3),
                        num_classes=num_classes, rngs=nnx.Rngs(0))
    assert _num_params(model) / 1e6 == pytest.approx(float(r["params"]), rel=1e-6)


def test_forward_gives_finite_logits():
  model = nb201.build(_ALL_3X3, input_shape=(32, 32, 3), num_classes=10, rngs=nnx.Rngs(0))
  x = _images(0)
  logits = model(x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert jnp.isfinite(logits).all()
  model.eval()
  assert jnp.isfinite(model(x)).all()


def test_all_none_cell_ignores_the_input():
  # Every cell outputs zero, so everything before the last cell is cut off: the
  # logits are the classifier applied to ReLU(BN(0)), whatever the image (the
  # reduction blocks only ever see zeros). NB201 still trains such cells.
  model = nb201.build(np.zeros(6, np.int32), input_shape=(32, 32, 3), num_classes=10,
                      rngs=nnx.Rngs(0))
  assert all(len(layer.ops) == 0 for layer in model.layers if isinstance(layer, nb201.Cell))
  for mode in (model.train, model.eval):
    mode()
    a, b = model(_images(1)), model(_images(2) * 5.0)
    assert a.shape == (2, 10) and jnp.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a[0], a[1], atol=1e-6)


def test_avg_pool_averages_only_real_pixels():
  # Only e03 = avg_pool_3x3 is live, so the cell is that pool: on a constant map,
  # count_include_pad=False keeps the borders at the constant (True would give 4/9
  # in the corners).
  genes = np.zeros(6, np.int32)
  genes[3] = nb201.nb201_space.OPS.index("avg_pool_3x3")
  cell = nb201.Cell(nb201.op_names_of_genes(genes), 4, rngs=nnx.Rngs(0))
  x = jnp.full((1, 5, 5, 4), 3.0)
  np.testing.assert_allclose(cell(x), x, rtol=1e-6)


def test_skip_cell_is_identity_and_sums_edges():
  genes = np.zeros(6, np.int32)
  genes[[0, 3, 4]] = nb201.nb201_space.OPS.index("skip_connect")  # e01, e03, e13
  cell = nb201.Cell(nb201.op_names_of_genes(genes), 4, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 6, 6, 4))
  np.testing.assert_allclose(cell(x), 2 * x, rtol=1e-6)  # node 3 = x + node 1 = 2x


def test_jit_and_split_merge_match_eager():
  model = nb201.build(_ALL_3X3 - 1, input_shape=(32, 32, 3), num_classes=10,
                      rngs=nnx.Rngs(0), cells_per_stage=1)
  x = _images(3)
  # Train mode under nnx.jit updates the BN running statistics in place.
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.BatchStat))
  logits = nnx.jit(lambda m, x: m(x))(model, x)
  assert logits.shape == (2, 10) and jnp.isfinite(logits).all()
  after = nnx.state(model, nnx.BatchStat)
  assert any(not np.allclose(u, v) for u, v in zip(jax.tree.leaves(before),
                                                     jax.tree.leaves(after)))
  model.eval()
  eager = model(x)
  graphdef, state = nnx.split(model)
  jitted = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


def test_gradients_are_finite():
  model = nb201.build(np.array([3, 2, 4, 1, 3, 0]), input_shape=(32, 32, 3),
                      num_classes=10, rngs=nnx.Rngs(0), cells_per_stage=1)
  x, y = _images(4), jnp.array([1, 7])

  def loss(m):
    logp = jax.nn.log_softmax(m(x))
    return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

  grads = nnx.jit(nnx.grad(loss))(model)
  leaves = jax.tree.leaves(grads)
  assert leaves and all(jnp.isfinite(g).all() for g in leaves)


@pytest.mark.parametrize("size", [nb201.MIN_INPUT_SIZE, 7])
def test_small_and_odd_inputs_run(size):
  # Odd sizes would break the reference's shortcut (floor-mode pool vs. strided conv).
  model = nb201.build(_ALL_3X3, input_shape=(size, size, 1), num_classes=3,
                      rngs=nnx.Rngs(0), cells_per_stage=1)
  logits = nnx.jit(lambda m, x: m(x))(model, jnp.ones((2, size, size, 1)))
  assert logits.shape == (2, 3) and jnp.isfinite(logits).all()


def test_build_rejects_bad_input():
  with pytest.raises(ValueError, match="at least"):
    nb201.build(_ALL_3X3, input_shape=(nb201.MIN_INPUT_SIZE - 1,) * 2 + (3,),
                num_classes=10, rngs=nnx.Rngs(0))
  for bad in (np.zeros(5, np.int32), np.full(6, 5), np.full(6, -1)):
    with pytest.raises(ValueError, match="NB201 genes"):
      nb201.build(bad, input_shape=(32, 32, 3), num_classes=10, rngs=nnx.Rngs(0))


def test_accepts_jax_genes():
  genes = _SPACE.sample(jax.random.key(0), 1)[0]
  model = nb201.build(genes, input_shape=(8, 8, 3), num_classes=10, rngs=nnx.Rngs(0),
                      cells_per_stage=1)
  assert model.op_names == nb201.op_names_of_genes(np.asarray(genes))
