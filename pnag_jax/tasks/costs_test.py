"""Tests for the exact params / FLOPs of the project's networks."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space
from pnag_jax.tasks import costs, flops_of, params_of

_SPACE = get_space("nb201")

# Cells chosen for the decomposition's corner cases; conv1x1 stands in for conv3x3
# where only the structure matters (a 3x3 build costs several times more).
_CELLS = {
    "random": [2, 1, 4, 3, 1, 2],
    "dead edges": [2, 2, 0, 2, 0, 0],           # e01 / e02 reach no output
    "add of a folded zero": [0, 0, 1, 2, 1, 0],  # node 3 = conv(x) + skip(zero node)
    "disconnected with an add": [0, 0, 2, 0, 4, 2],  # only the last cell is live
    "all none": [0, 0, 0, 0, 0, 0],
    "disconnected 3x3": [0, 0, 0, 0, 0, 3],      # e23 alone: the last cell's conv on zeros
}


@pytest.mark.parametrize("cell", list(_CELLS))
def test_decomposition_equals_full_builds(cell):
  genes = np.array(_CELLS[cell], np.int32)
  params, macs = costs.built_counts("nb201", genes)
  assert params_of("nb201", genes)[0] == params
  assert flops_of("nb201", genes)[0] == pytest.approx(macs, rel=1e-6)


def test_known_counts():
  # NB201's own table gives 1.531546 M params for the all-3x3 cell (CIFAR-10).
  all3x3 = np.full(6, 3, np.int32)
  assert params_of("nb201", all3x3)[0] == 1_531_546
  best = _SPACE.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                            "|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
  assert params_of("nb201", best)[0] == 1_073_466
  # Checked against a full build. NB201's own counter (convs and the classifier,
  # MACs) gives at most 222.9 M on CIFAR-10; this cell has 4 of the 6 edges at 3x3.
  assert flops_of("nb201", best)[0] == pytest.approx(140_968_737, rel=1e-6)
  assert flops_of("nb201", all3x3)[0] == pytest.approx(201_436_496, rel=1e-6)
  # Parameters depend only on the conv edges; FLOPs also on which edges are live.
  assert params_of("nb201", [2, 0, 0, 0, 0, 0])[0] == params_of("nb201", [0, 0, 0, 2, 0, 0])[0]
  assert flops_of("nb201", [2, 0, 0, 0, 0, 0])[0] < flops_of("nb201", [0, 0, 0, 2, 0, 0])[0]


def test_vectorised_over_the_space():
  genes = _SPACE.enumerate()
  p, f = params_of(_SPACE, genes), flops_of(_SPACE, genes)
  assert p.shape == f.shape == (15625,) and p.dtype == np.float64
  assert 70_000 <= p.min() and p.max() <= 1_600_000 and np.isfinite(f).all() and f.min() > 0
  # Row by row, the same numbers: nothing in the formula mixes archs.
  np.testing.assert_array_equal(params_of(_SPACE, genes[::977]), p[::977])
  np.testing.assert_array_equal(flops_of(_SPACE, genes[::977]), f[::977])


def test_bad_genes():
  with pytest.raises(PnagError, match="genes"):
    params_of("nb201", np.zeros((2, 5), np.int32))
  with pytest.raises(PnagError, match="out of range"):
    flops_of("nb201", np.full((1, 6), 5))


def test_autoformer_params_are_its_closed_form():
  space = get_space("autoformer")
  genes = np.asarray(space.sample(__import__("jax").random.key(0), 2))
  expected = [space.param_count(space.to_native(g), num_classes=10) for g in genes]
  np.testing.assert_array_equal(params_of(space, genes), expected)


def test_mbv3_params_formula_equals_full_builds():
  space = get_space("mbv3")
  genes = np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.key(5), 1))
  # The smallest and the largest subnet, and a sample.
  genes = np.concatenate([np.zeros((1, space.num_genes), np.int32),
                          np.asarray(space.gene_cardinalities, np.int32)[None] - 1, genes])
  built = [costs.built_params(space, g) for g in genes]
  np.testing.assert_array_equal(params_of(space, genes), built)
  assert costs.counted_quickly(space, "params") and not costs.counted_quickly(space, "flops")
