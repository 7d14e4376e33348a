"""Baselines of the transfer protocols, against brute force and known answers."""

import itertools

import numpy as np

from pnag_jax.evaluation import transfer
from pnag_jax.evaluation.families import devices
from pnag_jax.guidance import baselines


def test_random_expected_best_is_exact():
  values = np.array([3.0, 1.0, 2.0, 2.0])
  for n in (1, 2, 3):
    brute = np.mean([max(c) for c in itertools.product(values, repeat=n)])
    assert np.isclose(baselines.random_expected_best(values, n), brute)
    worst_first = np.mean([min(c) for c in itertools.product(values, repeat=n)])
    assert np.isclose(baselines.random_expected_best(values, n, maximize=False), worst_first)


def test_random_median_to_optimum():
  # Half the cells are optimal: the first draw hits with probability 1/2.
  assert baselines.random_median_to_optimum(np.array([1.0, 1.0, 0.0, 0.0])) == 1
  # One optimum in 1,000: median ceil(ln 0.5 / ln 0.999) = 693, capped at 100.
  v = np.zeros(1000)
  v[7] = 1.0
  assert baselines.random_median_to_optimum(v) == 100
  assert baselines.random_median_to_optimum(v, cap=10_000) == 693


def test_table_oracle_picks_the_agreeing_table_and_its_best_rows():
  rng = np.random.default_rng(0)
  target = rng.normal(size=50)
  tables = {"noise": rng.normal(size=50), "same": target * 2 + 1, "reversed": -target,
            "subset": np.where(np.arange(50) < 10, target, np.nan)}
  refs = np.arange(10, 20)
  name, order = baselines.table_oracle_order(tables, refs, target[refs])
  assert name == "same"
  assert list(order[:3]) == list(np.argsort(-target)[:3])
  # Minimising -target ranks the archs as `same` does (its lowest are `same`'s highest).
  name, _ = baselines.table_oracle_order(tables, refs, -target[refs], maximize=False)
  assert name == "same"


def test_walk_counts_trained_archs_to_the_optimum():
  acc = np.array([90.0, 94.0, 92.0, 94.0, 80.0])
  # Picks in order 2, 3, ...: the optimum (94, tied at rows 1 and 3) is the 2nd pick.
  assert transfer._walk(np.array([2, 3, 0]), acc, 5, False) == (92.0, 7)  # pylint: disable=protected-access
  # Not reached within the cap of 100 trained archs.
  assert transfer._walk(np.array([2, 0, 4]), acc, 5, False) == (92.0, 100)  # pylint: disable=protected-access
  # A reference already is optimal: K trained archs.
  assert transfer._walk(np.array([2]), acc, 5, True) == (92.0, 5)  # pylint: disable=protected-access


def test_leave_one_device_out_groups_batch_settings_only():
  names = ["lat_1080ti_1", "lat_1080ti_32", "lat_1080ti_256", "lat_gold_6240",
           "lat_silver_4114", "lat_silver_4210r", "lat_titanx_1", "lat_titanxp_1",
           "lat_essential_ph_1", "cifar10_test_acc"]
  import re  # pylint: disable=g-import-not-at-top
  groups = {d: [n for n in names if re.search(p, n)] for d, p in devices(names).items()}
  assert groups == {
      "1080ti": ["lat_1080ti_1", "lat_1080ti_32", "lat_1080ti_256"],
      "essential_ph": ["lat_essential_ph_1"], "gold_6240": ["lat_gold_6240"],
      "silver_4114": ["lat_silver_4114"], "silver_4210r": ["lat_silver_4210r"],
      "titanx": ["lat_titanx_1"], "titanxp": ["lat_titanxp_1"]}
