"""Stage 2's condition vectors: the task vector (one function for training banks and
users' references) and the budget vector."""

import re

import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2
from pnag_jax.stages import surrogate as surrogate_stage


def test_the_task_vector_reads_higher_is_better(nb201_surrogate):
  srun = surrogate_stage.load(nb201_surrogate[0])
  genes = get_space("nb201").enumerate()[:7]
  lat = np.linspace(1.0, 2.0, 7)
  minimized = stage2.task_condition(srun, genes, lat, minimize=True, target=0.9)
  # A minimized latency is the maximized negative latency: one and the same task.
  np.testing.assert_allclose(
      minimized, stage2.task_condition(srun, genes, -lat, minimize=False, target=0.9))
  assert minimized.shape == (srun.cfg.task_dim + 1,) and minimized[-1] == np.float32(0.9)
  with pytest.raises(PnagError, match="--target must be a quantile"):
    stage2.task_condition(srun, genes, lat, minimize=True, target=1.5)


_RANGE = {"params": [1e5, 1e6], "flops": [1e7, 1e9]}


def test_the_budget_vector_is_a_scaled_log_and_a_given_flag_per_count():
  keys = ("params", "flops")
  # Flags (params, flops), then scaled logs (params, flops).
  np.testing.assert_allclose(stage2.budget_condition(_RANGE, keys, params=1e5),
                             [1, 0, 0, 0], atol=1e-6)
  np.testing.assert_allclose(stage2.budget_condition(_RANGE, keys, params=1e6, flops=1e8),
                             [1, 1, 1, 0.5], atol=1e-6)
  np.testing.assert_allclose(stage2.budget_condition(_RANGE, keys, flops=1e9),
                             [0, 1, 0, 1], atol=1e-6)


@pytest.mark.parametrize("keys, kw, fragment", [
    (("params", "flops"), {}, "needs --params or --flops"),
    (("params", "flops"), {"params": 2e6},
     "--params 2e+06 is outside the range stage 2 was trained on: 100000 to 1000000"),
    (("params", "flops"), {"params": float("nan")}, "outside the range"),
    (("params",), {"flops": 1e8}, "trained on the budgets params, not --flops"),
    (("params",), {"latency": 3.0}, "unknown budget 'latency'"),
])
def test_bad_budgets_are_one_line_errors(keys, kw, fragment):
  with pytest.raises(PnagError, match=re.escape(fragment)):
    stage2.budget_condition(_RANGE, keys, **kw)


def test_budget_config_is_checked():
  assert stage2.make_config("test", overrides=["budgets=flops"]).budget_keys == ("flops",)
  with pytest.raises(PnagError, match="budgets must be distinct names from params, flops"):
    stage2.make_config("test", overrides=["budgets=params,latency"])
  # Only a budget-conditioned run is bound to its budgets on resume.
  assert "budgets" not in stage2.make_config("test").frozen()
  assert stage2.make_config("test", overrides=["condition=budget"]).frozen()["budgets"] == (
      "params,flops")
  assert stage2.make_config("test", overrides=["condition=budget", "budgets=params, flops"]
                            ).frozen()["budgets"] == "params,flops"
