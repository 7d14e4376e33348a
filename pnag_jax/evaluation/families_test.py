"""The family study's table oracle reads each allowed table either way up."""

import numpy as np

from pnag_jax import tasks as tasks_lib
from pnag_jax.evaluation import families
from pnag_jax.guidance import baselines


def _task(name, values, minimize):
  return tasks_lib.Task(name, "synthetic", minimize, "nb201", "test",
                        lambda: tasks_lib.TaskData(np.zeros((len(values), 6), np.int32), values))


def test_a_latency_target_is_ranked_by_another_devices_latency(monkeypatch):
  rng = np.random.default_rng(0)
  target = rng.uniform(1, 10, 500)                       # a device's latency: lower is better
  other = target + rng.normal(0, 0.3, 500)               # another device, much alike
  acc = rng.uniform(50, 90, 500)                         # unrelated accuracy
  kept = {"lat_other": _task("lat_other", other, True), "acc": _task("acc", acc, False)}
  monkeypatch.setattr(tasks_lib.Task, "by_row", lambda self: self.data().scores)
  tables = families.two_way_tables(kept)
  assert set(tables) == {"lat_other", "-lat_other", "acc", "-acc"}
  refs = rng.choice(500, 10, replace=False)
  name, _ = baselines.table_oracle_order(tables, refs, target[refs])
  # The raw latency of the other device, as it is: negated (as a "higher is better"
  # orientation would have it) it would rank the target backwards.
  assert name == "lat_other"
  rho = np.corrcoef(np.argsort(np.argsort(tables[name])), np.argsort(np.argsort(target)))[0, 1]
  assert rho > 0.9
