"""One target of the Table 1 protocol on the suite's meta-trained surrogate."""

import dataclasses
import re

import numpy as np
import pytest

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import transfer
from pnag_jax.guidance import rank
from pnag_jax.stages import surrogate as stage


def _unreadable_but(tasks, exclude, target):
  """`tasks` with every excluded one but the target failing if read: the protocol reads
  the target's scores, and no other excluded table."""
  _, excluded = tasks_lib.select_tasks(tasks, exclude)

  def refuse(name):
    raise AssertionError(f"excluded task {name} was read")

  return {n: t if n == target or n not in excluded
          else dataclasses.replace(t, load=lambda n=n: refuse(n)) for n, t in tasks.items()}


def test_feedback_row_starts_with_ranks_pick_and_counts_to_the_optimum(nb201_surrogate,
                                                                         data_dir):
  srun = stage.load(nb201_surrogate[0])
  tasks = _unreadable_but(tasks_lib.builtin_tasks("nb201", data_dir), srun.cfg.exclude,
                          "cifar10_test_acc")
  pools = {"all": rank.enumerate_pool(srun.space)}
  seeds, k = (0, 1), 5
  pools.update({s: pools["all"] for s in seeds})
  entry = transfer.run_target("cifar10_test_acc", srun, pools, tasks=tasks, seeds=seeds,
                              ks=(k,), scratch_steps=2, guides=("feedback",))
  static, fed = entry["K"][str(k)], entry["guides"]["feedback"]["K"][str(k)]
  # The walk's first bind is the one-shot binding: the same first pick, seed by seed.
  np.testing.assert_array_equal(fed["top1"], static["top1"])
  assert fed["trained_archs"] == k + 1
  # K when a reference is the optimum, else K + the pick that hit it, capped.
  assert all(k <= n <= transfer.CAP for n in fed["to_optimum"])
  assert entry["best"] == float(np.nanmax(tasks["cifar10_test_acc"].by_row()))
  assert set(entry["guides"]) == {"feedback"}
  # The table oracle reads only what the surrogate could (the other CIFAR-10 tables
  # were unreadable above); nor does it pick the target, a perfect oracle.
  oracle = entry["baselines"]["table_oracle"]["K"][str(k)]["tasks"]
  assert "cifar10_test_acc" in entry["excluded_tasks"] and len(oracle) == len(seeds)
  assert not set(oracle) & set(entry["excluded_tasks"]), oracle


def test_a_kept_surrogate_is_reused_only_with_the_settings_asked_for(nb201_surrogate,
                                                                    tmp_path):
  # `--surrogates` as the protocol lays it out: excl_<regex>, here the suite's run.
  (tmp_path / "excl_cifar10_0").symlink_to(nb201_surrogate[0])
  kept = dict(preset="test", seed=0)
  run = transfer.meta_trained(tmp_path, ("cifar10(?!0)",), **kept)
  assert run.cfg.exclude == ("cifar10(?!0)",)
  # What only the report reads may differ; what makes the model may not.
  transfer.meta_trained(tmp_path, ("cifar10(?!0)",), **kept, overrides=("eval_ks=5",))
  for overrides, named in ((("fed_back_refs=0.5",), "fed_back_refs=0.0 (asked: 0.5)"),
                           (("steps=61",), "steps=60 (asked: 61)")):
    with pytest.raises(PnagError, match=re.escape(named)):
      transfer.meta_trained(tmp_path, ("cifar10(?!0)",), **kept, overrides=overrides)
  with pytest.raises(PnagError, match=r"seed=0 \(asked: 1\)"):
    transfer.meta_trained(tmp_path, ("cifar10(?!0)",), preset="test", seed=1)
