"""Table 5's measured cells: each objective and seed draws its own, reproducibly; the
robustness columns it needs are checked before any output."""

import shutil

import numpy as np
import pytest

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import objectives


def test_each_objective_and_seed_measures_its_own_cells():
  draws = {(s, o): objectives.measured_rows(15625, s, o, 50)
           for s in (0, 1) for o in objectives.OBJECTIVES}
  for rows in draws.values():
    assert len(np.unique(rows)) == 50 and 0 <= rows.min() and rows.max() < 15625
  keys = list(draws)
  for i, a in enumerate(keys):
    for b in keys[i + 1:]:
      # Two uniform draws of 50 of 15,625 share about 0.16 cells; equal ones share 50.
      assert len(np.intersect1d(draws[a], draws[b])) < 5, (a, b)
  np.testing.assert_array_equal(objectives.measured_rows(15625, 0, "apgd", 50),
                                draws[0, "apgd"])


def test_tables_without_the_robustness_columns_are_refused_before_any_output(
    tmp_path, data_dir, pnag_main):
  # The accuracy table alone is a valid data directory; objectives reads robustness.
  (tmp_path / "nb201").mkdir()
  shutil.copy(data_dir / "nb201" / "nb201_accuracy.csv", tmp_path / "nb201")
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", "objectives", "--data-dir", tmp_path, "--preset", "test",
                           "--out", out)
  assert code == 2 and err == ("pnag: error: pnag eval objectives needs the NB201 robustness "
                               "columns rob_cifar10_clean, rob_cifar10_apgd_eps1, "
                               "rob_cifar10_fgsm_eps1 (nb201/nb201_robustness.csv)\n"), err
  assert not out.exists()


def test_each_dataset_names_its_own_columns_and_excludes_itself(data_dir):
  tasks = tasks_lib.builtin_tasks("nb201", data_dir)
  for dataset in objectives.DATASETS:
    named = objectives.objectives_for(dataset)
    kept, excluded = tasks_lib.select_tasks(tasks, objectives.exclusion_for(dataset))
    # The surrogate never reads an objective it is scored on, and reads every other
    # dataset's columns.
    assert set(named.values()) <= set(excluded)
    assert all(t.startswith((f"rob_{dataset}_", f"{dataset}_")) for t in excluded), dataset
    assert all(f"rob_{d}_clean" in kept for d in objectives.DATASETS if d != dataset)
  assert objectives.OBJECTIVES["fgsm"] == "rob_cifar10_fgsm_eps1"
  with pytest.raises(PnagError, match="unknown dataset 'cifar1'; datasets: cifar10, "):
    objectives.objectives_for("cifar1")
