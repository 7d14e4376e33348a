"""The family study's table oracle reads each allowed table either way up, and only
allowed ones; each device's regex takes exactly its latency columns."""

import types

import numpy as np

from pnag_jax import tasks as tasks_lib
from pnag_jax.evaluation import families, transfer
from pnag_jax.guidance import baselines
from pnag_jax.spaces import get_space


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


def test_a_studys_oracle_reads_only_the_tables_its_surrogate_could(monkeypatch, tmp_path,
                                                                   synthetic_tasks):
  tasks = synthetic_tasks(("acc_a", "acc_b", "lat_x", "lat_y"))
  # Neither the surrogate nor the Spearman sums are checked here: what the oracle is
  # handed for each target is.
  monkeypatch.setattr(transfer, "meta_trained",
                      lambda root, exclude, **kw: types.SimpleNamespace(workdir=root))
  oracles = []

  def record(srun, space, target, oracle_tables, *args):
    del srun, space, target, args
    oracles.append(set(oracle_tables))
    return {}

  monkeypatch.setattr(families, "spearman_by_k", record)
  study = families._study  # pylint: disable=protected-access
  r = study(tmp_path, "lat_y", tasks, preset="test", overrides=(), data_dir=None, ks=(2,),
            seeds=(0,), space=get_space("nb201"), reps=np.arange(10), adapt_steps=0)
  assert list(r["tasks"]) == ["lat_y"]
  assert oracles == [{"acc_a", "-acc_a", "acc_b", "-acc_b", "lat_x", "-lat_x"}]


def test_each_device_regex_takes_exactly_its_latency_columns(data_dir):
  tasks = tasks_lib.builtin_tasks("nb201", data_dir)
  settings = {"1080ti": ("_1", "_32", "_256"), "2080ti": ("_1", "_32", "_256"),
              "titanx": ("_1", "_32", "_256"), "titanxp": ("_1", "_32", "_256"),
              "essential_ph": ("_1",), "gold_6240": ("",), "pixel3": ("",),
              "samsung_a50": ("",), "samsung_s7": ("",), "silver_4114": ("",),
              "silver_4210r": ("",)}
  want = {d: {f"lat_{d}{s}" for s in suffixes} for d, suffixes in settings.items()}
  patterns = families.devices(tasks)
  assert set(patterns) == set(want)
  # As the study uses a pattern: an exclusion. titanx's must not take titanxp's columns.
  taken = {d: set(tasks_lib.select_tasks(tasks, (p,))[1]) for d, p in patterns.items()}
  assert taken == want
  latency = {n for n in tasks if n.startswith("lat_")}
  assert len(latency) == 19 and set().union(*taken.values()) == latency
  assert sum(map(len, taken.values())) == 19  # a partition: no column taken twice


def test_a_family_that_matches_no_task_is_refused_before_any_output(tmp_path, data_dir,
                                                                    pnag_main):
  # Checked up front: it once failed after --out was made and the surrogates of the
  # families before it were meta-trained.
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", "families", "--families", "pgd,nope", "--data-dir",
                           data_dir, "--preset", "test", "--out", out)
  assert code == 2 and "--exclude 'nope' matches no task" in err, err
  assert len(err.strip().splitlines()) == 1 and not out.exists()
  # A family that leaves too few tasks is refused after --out is made: the folders the
  # command made go with it (they were left, empty).
  out = tmp_path / "new" / "out"
  code, _, err = pnag_main("eval", "families", "--families", ".", "--no-devices",
                           "--data-dir", data_dir, "--preset", "test", "--out", out)
  assert code == 2 and "has 0 allowed task(s)" in err, err
  assert list(tmp_path.iterdir()) == []
