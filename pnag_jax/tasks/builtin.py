"""The tasks that come with a space: benchmark table columns, and exact params / FLOPs.

Table tasks are listed from the files' headers alone; a task's column is read only by
its `load`. NB201's tables (`pnag_jax.data.NB201Data`) cache whole files, so loading
several tasks of one file reads it once. Optional files that are absent simply
contribute no tasks; one that is there but no CSV (empty, a folder) is an error.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import jax
import numpy as np

from pnag_jax import padding
from pnag_jax.data import nb201 as nb201_data
from pnag_jax.data import ENV_VAR, has_tables, tables_for
from pnag_jax.errors import DataError, PnagError
from pnag_jax.spaces import get_space
from pnag_jax.tasks import costs, ofa
from pnag_jax.tasks.base import DeviceScore, Task, TaskData

#: NASLib's dataset names -> the spelling in task names (as in the accuracy columns).
_DATASET_NAMES = {"cifar10": "cifar10", "cifar100": "cifar100",
                  "ImageNet16-120": "imagenet16_120"}
_ATTACKS = ("clean", "fgsm", "pgd", "apgd")


def _header(path: Path) -> list[str] | None:
  """The CSV header of an optional file, or None when the file is absent.

  Raises:
    DataError: the file is there but no CSV (a folder, empty, unreadable): its tasks
      would be left out without a word.
  """
  if not path.exists():
    return None
  if not path.is_file():
    raise DataError(f"{str(path)!r} is not a file")
  try:
    with path.open(newline="", encoding="utf-8-sig") as f:
      header = next(csv.reader(f), [])
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"cannot read {str(path)!r}: {e}") from None
  if not header:
    raise DataError(f"{str(path)!r} is empty")
  return header


def robustness_family(name: str) -> str:
  """`rob_cifar10_apgd_eps1` -> `apgd`; `rob_cifar10_clean` -> `clean`."""
  for token in name.split("_"):
    if token in _ATTACKS:
      return token
  raise DataError(f"robustness column {name!r} names none of {', '.join(_ATTACKS)}")


def _all_cells(values: np.ndarray) -> TaskData:
  return TaskData(get_space("nb201").enumerate(), values.astype(np.float64))


def _subset(values: np.ndarray) -> TaskData:
  """The cells where a subset table has a value (NaN elsewhere)."""
  codes = np.flatnonzero(np.isfinite(values))
  return TaskData(get_space("nb201").enumerate()[codes], values[codes].astype(np.float64))


def _function_task(space: str, name: str, fn) -> Task:
  score_fn = lambda genes: fn(space, genes)  # noqa: E731

  if get_space(space).enumerable:
    def load() -> TaskData:
      genes = get_space(space).enumerate()
      return TaskData(genes, score_fn(genes))
  else:
    load = _no_table(space, name)
  return Task(name, name, True, space, costs.COUNTED_NETWORKS[space], load, score_fn)


def _no_table(space: str, name: str):
  """The `load` of a function task: it scores any arch, but lists none."""
  def load() -> TaskData:
    raise PnagError(f"task {name!r} of space {space!r} is a function; it has no table")
  return load


def _ofa_tasks(space: str, data_dir) -> dict[str, Task]:
  """`ofa_acc` and `note10_latency` of MBV3 subnets, where OFA's files are found.

  `mbv3` has no resolution gene, so its subnets are scored at 224 px, OFA's full
  resolution; `mbv3_r` subnets at their own.
  """
  root = ofa.find_dir(data_dir)
  if root is None:
    return {}
  models = ofa.OFAModels.from_dir(root)
  with_r = ofa.with_resolution if space == "mbv3" else (lambda g: g)
  resolutions = ofa.RESOLUTIONS[-1:] if space == "mbv3" else ofa.RESOLUTIONS
  acc_fn = jax.jit(ofa.accuracy_of_genes)

  def acc(genes):
    # Candidate counts vary by call (a search round's tail, a constraint's survivors):
    # padded to a power of two, a few compiles serve them all at under twice the rows.
    genes = with_r(np.asarray(genes))
    scores = acc_fn(models.arrays, padding.pad_rows(genes))
    return np.asarray(scores, np.float64)[:len(genes)]

  def latency(genes):
    return models.note10_latency(*ofa.genes_to_values(with_r(np.asarray(genes))))

  def device(fn):
    return DeviceScore(fn if space == "mbv3_r" else ofa.AtFullResolution(fn), models.arrays)

  source = str(root)
  return {
      "ofa_acc": Task("ofa_acc", "accuracy", False, space, source, _no_table(space, "ofa_acc"), acc,
                      device(ofa.accuracy_of_genes)),
      "note10_latency": Task("note10_latency", "latency", True, space, source,
                             _no_table(space, "note10_latency"), latency,
                             device(ofa.latency_of_genes), unit="ms",
                             extremes=functools.partial(models.note10_latency_extremes,
                                                        resolutions)),
  }


def _formula_tasks(space: str) -> dict[str, Task]:
  return {"params": _function_task(space, "params", costs.params_of),
          "flops": _function_task(space, "flops", costs.flops_of)}


def _nb201_table_tasks(data: nb201_data.NB201Data) -> dict[str, Task]:
  tasks: dict[str, Task] = {}

  def add(name: str, family: str, minimize: bool, source: str, load) -> None:
    tasks[name] = Task(name, family, minimize, "nb201", source, load)

  # Bind `column` per task: a closure over the loop variable would read the last one.
  for column in nb201_data.ACCURACY_COLUMNS:
    add(column, "test_acc", False, nb201_data.ACCURACY_FILE,
        lambda c=column: _all_cells(data.metric(c)))
  header = _header(data.root / nb201_data.LATENCY_FILE) or []
  for column in (c for c in header if c.startswith("lat_")):
    add(column, "latency", True, nb201_data.LATENCY_FILE,
        lambda c=column: _all_cells(data.metric(c)))
  header = _header(data.root / nb201_data.ROBUSTNESS_FILE) or []
  for column in (c for c in header if c.startswith("rob_")):
    add(column, robustness_family(column), False, nb201_data.ROBUSTNESS_FILE,
        lambda c=column: _all_cells(data.metric(c)))
  header = _header(data.root / nb201_data.ZC_FILE) or []
  if "val_accuracy" in header:
    for dataset in nb201_data.ZC_DATASETS:
      add(f"{_DATASET_NAMES[dataset]}_val_acc", "val_acc", False, nb201_data.ZC_FILE,
          lambda d=dataset: _subset(data.metric(f"{d}/val_accuracy")))
  return tasks


def builtin_tasks(space: str, data_dir: str | os.PathLike | None = None) -> dict[str, Task]:
  """The space's built-in tasks, name -> task, in a fixed order; reads headers only.

  NB201, with a data directory (`data_dir`, else `$PNAG_DATA_DIR`): test accuracies,
  `lat_*` latencies, `rob_*` robustness accuracies, the zero-cost subset's validation
  accuracies (each group only where its file is present), then `params` and `flops`.
  MBV3 (`mbv3`, `mbv3_r`), where the data directory has OFA's files: `ofa_acc` and
  `note10_latency` (`pnag_jax.tasks.ofa`). Every space has `params` and `flops`
  (`pnag_jax.tasks.costs`).

  Raises:
    UnknownSpaceError: `space` is not registered.
    DataError: an explicit `data_dir` without the space's required table.
  """
  get_space(space)  # the one-line unknown-space error, before anything else
  tasks: dict[str, Task] = {}
  data = tables_for(space, data_dir)
  if isinstance(data, nb201_data.NB201Data):
    tasks.update(_nb201_table_tasks(data))
  if space in ofa.SPACES:
    tasks.update(_ofa_tasks(space, data_dir))
  tasks.update(_formula_tasks(space))
  return tasks



def require_tables(tasks: dict[str, Task], what: str) -> None:
  """A one-line error where `tasks`, a space's built-in ones, came without its tables.

  Without a data directory `builtin_tasks` lists a space's formula tasks alone, and
  not finding one is no error there. A command that reads a table task would then fail
  far from the cause (a KeyError, an `--exclude` that matches no task, an "unknown
  task"): it calls this first, with `what` naming itself or the task it wants.

  Raises:
    PnagError: a space of `tasks` has benchmark tables, but none of its table tasks
      is in `tasks`.
  """
  for space in sorted({t.space for t in tasks.values()}):
    if has_tables(space) and all(t.is_function for t in tasks.values() if t.space == space):
      # A variable that is set is a default, not an error; but a typo in it must show.
      env = os.environ.get(ENV_VAR)
      raise PnagError(f"{what} needs the {space.upper()} tables: a data directory holding "
                      f"{space}/ (--data-dir or ${ENV_VAR})"
                      + (f"; ${ENV_VAR} is {env!r}, which holds none" if env else ""))


def require_known(tasks: dict[str, Task], name: str, what: str, unknown: str) -> Task:
  """`tasks[name]`. Otherwise, as `require_tables`, the tables' message where they are
  missing (without them only formula tasks are known, so a table task's name is no
  typo), else `unknown`, the caller's one-line error."""
  if name not in tasks:
    require_tables(tasks, what)
    raise PnagError(unknown)
  return tasks[name]
