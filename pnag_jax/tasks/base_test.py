"""Tests for tasks' data checks and for selection by name."""

from __future__ import annotations

import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.tasks import Task, TaskData, select_tasks


def _never_loaded(name: str) -> Task:
  def load():
    raise AssertionError(f"selection loaded {name}")
  return Task(name, "test_acc", False, "nb201", "x.csv", load)


def _tasks(*names: str) -> dict[str, Task]:
  return {n: _never_loaded(n) for n in names}


def test_selection_never_loads_and_keeps_order():
  tasks = _tasks("cifar10_test_acc", "cifar100_test_acc", "rob_cifar10_clean",
                 "lat_pixel3", "cifar10_val_acc")
  kept, excluded = select_tasks(tasks, [r"cifar10(?!0)"])
  assert list(kept) == ["cifar100_test_acc", "lat_pixel3"]
  assert list(excluded) == ["cifar10_test_acc", "rob_cifar10_clean", "cifar10_val_acc"]
  kept, excluded = select_tasks(tasks, [])
  assert list(kept) == list(tasks) and not excluded
  kept, _ = select_tasks(tasks, ["^lat_", "cifar"])
  assert not kept


@pytest.mark.parametrize("pattern,match", [("cifar1O", "matches no task"),
                                           ("cifar10(", "not a valid regex"),
                                           ("[", "not a valid regex")])
def test_bad_patterns_are_one_line_errors(pattern, match):
  with pytest.raises(PnagError, match=match) as e:
    select_tasks(_tasks("cifar10_test_acc", "lat_pixel3"), ["lat", pattern])
  assert "\n" not in str(e.value) and repr(pattern) in str(e.value)
  assert "pnag tasks --space nb201" in str(e.value) or "regex" in str(e.value)


def test_task_data_is_checked_and_cached():
  calls = []

  def load():
    calls.append(1)
    return TaskData(np.array([[0, 1], [1, 0]], np.int64), [1, 2])

  task = Task("t", "user", True, "nb201", "f.csv", load)
  assert calls == []
  d = task.data()
  assert task.data() is d and calls == [1]
  assert d.genes.dtype == np.int32 and d.scores.dtype == np.float64 and len(d) == 2
  with pytest.raises(ValueError):
    d.scores[0] = 5.0
  with pytest.raises(ValueError, match="finite"):
    TaskData(np.zeros((2, 3), np.int32), [1.0, np.nan])
  with pytest.raises(ValueError, match="scores"):
    TaskData(np.zeros((2, 3), np.int32), [1.0])
  with pytest.raises(ValueError, match="genes"):
    TaskData(np.zeros(3, np.int32), [1.0, 2.0, 3.0])
