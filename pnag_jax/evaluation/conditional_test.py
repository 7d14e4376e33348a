"""`pnag eval conditional`: what it refuses before any output, in one line."""

import types

import pytest

from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2


@pytest.fixture
def task_conditioned(monkeypatch):
  """Makes any workdir load as a task-conditioned NB201 stage 2: the task names are
  checked before the run's models are used, so none is trained here."""
  run2 = types.SimpleNamespace(cfg=types.SimpleNamespace(condition="task"),
                               stage1=types.SimpleNamespace(space=get_space("nb201")),
                               surrogate=None)
  monkeypatch.setattr(stage2, "load", lambda workdir: run2)


def test_a_table_task_without_the_tables_names_them(task_conditioned, tmp_path, pnag_main,
                                                     monkeypatch):
  del task_conditioned
  monkeypatch.setenv("PNAG_DATA_DIR", str(tmp_path))  # set, but holding no nb201/
  out = tmp_path / "out"
  # The default task, cifar10_test_acc, once came back as an "unknown task".
  code, _, err = pnag_main("eval", "conditional", "--workdir", "W", "--out", out)
  assert code == 2 and err == ("pnag: error: task 'cifar10_test_acc' needs the NB201 tables: "
                               "a data directory holding nb201/ (--data-dir or "
                               f"$PNAG_DATA_DIR); $PNAG_DATA_DIR is {str(tmp_path)!r}, which "
                               "holds none\n"), err
  assert not out.exists()


def test_with_the_tables_a_misspelt_task_is_unknown(task_conditioned, tmp_path, pnag_main,
                                                    data_dir):
  del task_conditioned
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", "conditional", "--workdir", "W", "--out", out,
                           "--data-dir", data_dir, "--task", "cifar10_tset_acc")
  assert code == 2 and "unknown task 'cifar10_tset_acc'; see `pnag tasks" in err, err
  assert not out.exists()
  code, _, err = pnag_main("eval", "conditional", "--workdir", "W", "--out", out,
                           "--data-dir", data_dir, "--task", "lat_pixel3_1", "--task",
                           "lat_pixel3_1")
  assert code == 2 and "--task gives a task twice: lat_pixel3_1 lat_pixel3_1" in err, err
  assert not out.exists()


def test_a_task_without_full_coverage_is_refused_before_any_sweep(task_conditioned, tmp_path,
                                                                  pnag_main, data_dir):
  del task_conditioned
  out = tmp_path / "out"
  # The validation accuracies cover the zero-cost subset only; the first task is fine,
  # and its sweep once ran before the second was refused.
  code, _, err = pnag_main("eval", "conditional", "--workdir", "W", "--out", out,
                           "--data-dir", data_dir, "--task", "cifar10_test_acc",
                           "--task", "cifar10_val_acc")
  assert code == 2 and err == ("pnag: error: task 'cifar10_val_acc' has no score for every "
                               "valid arch; choose a table task with full coverage\n"), err
  assert not out.exists()
