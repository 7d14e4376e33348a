"""What a task is, and how a run picks its tasks.

A task scores architectures: a name, a score per arch (possibly of a subset of the
space), and whether lower is better. Stage 3 meta-trains a surrogate over many tasks
and holds some out (`--exclude`), so a task only names where its data lives:
`Task.load` reads it when called, and selection works on names alone, so an excluded
task's scores are never loaded, and a held-out dataset cannot leak into training. (NB201's
built-in tables share their CSV files, so a file may be parsed for another column of it;
an excluded column is never handed out.)
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from pnag_jax.errors import PnagError, one_line
from pnag_jax.spaces import get_space


def strict_float(text: str) -> float:
  """`float(text)`, except that an underscore is refused: Python reads "1_0" as 10,
  where a user most likely made a typo.

  Raises:
    ValueError: not a number.
  """
  if "_" in text:
    raise ValueError(text)
  return float(text)


@dataclasses.dataclass(frozen=True)
class DeviceScore:
  """A score of genes as a pure jax function: `fn(arrays, genes int[..., G]) -> [...]`.

  `fn` is static (hashable) under jit, `arrays` a pytree argument, so a score's
  weights are never baked into the compiled program as constants.
  """

  fn: Callable[[Any, jax.Array], jax.Array]
  arrays: Any = dataclasses.field(compare=False, hash=False)

  def __call__(self, genes: jax.Array) -> jax.Array:
    return self.fn(self.arrays, genes)


@dataclasses.dataclass(frozen=True)
class TaskData:
  """One task's scored archs.

  Attributes:
    genes: int32[n, G] in the space's gene encoding, one row per arch, no duplicates.
    scores: float64[n], all finite, aligned with `genes`.
  """

  genes: np.ndarray
  scores: np.ndarray

  def __post_init__(self):
    genes = np.asarray(self.genes)
    scores = np.asarray(self.scores, np.float64)
    if genes.ndim != 2 or not np.issubdtype(genes.dtype, np.integer):
      raise ValueError(f"TaskData.genes must be int[n, G], got {genes.dtype}{list(genes.shape)}")
    if scores.shape != genes.shape[:1]:
      raise ValueError(f"TaskData.scores must be float[{genes.shape[0]}], got "
                       f"{list(scores.shape)}")
    if not np.isfinite(scores).all():
      raise ValueError("TaskData.scores must all be finite")
    # Frozen: the coerced arrays are set once here, and made read-only so a cached
    # task's data cannot be changed under another user of it.
    genes, scores = genes.astype(np.int32), scores.copy()
    genes.flags.writeable = False
    scores.flags.writeable = False
    object.__setattr__(self, "genes", genes)
    object.__setattr__(self, "scores", scores)

  def __len__(self) -> int:
    return int(self.scores.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """A named score over a space's archs.

  Attributes:
    name: unique within a space; dataset tasks contain the dataset's name (so a regex
      such as `cifar10(?!0)` selects one dataset's tasks).
    family: what kind of score: test_acc, val_acc, latency, clean, fgsm, pgd, apgd,
      params, flops, user.
    minimize: lower scores are better.
    space: the space's name.
    source: the file the scores come from, the network a count describes
      (`costs.COUNTED_NETWORKS`), or the user's CSV path.
    load: reads the data; called only by `data()`.
    score_fn: for formula tasks, `score_fn(genes int[n, G]) -> float64[n]` for any
      archs (e.g. constraints on generated ones); None for table tasks.
    device_score: the same as a pure jax function, where there is one, for searches
      that run on device (`guidance.evolution`).
    unit: the unit of the scores ("ms"), named in output columns; None for none.
    extremes: `() -> (lowest, highest)` score over every arch of the space, exact,
      where the task can say (a bound outside them is unmeetable); None elsewhere.
  """

  name: str
  family: str
  minimize: bool
  space: str
  source: str
  load: Callable[[], TaskData]
  score_fn: Callable[[np.ndarray], np.ndarray] | None = None
  device_score: DeviceScore | None = None
  unit: str | None = None
  extremes: Callable[[], tuple[float, float]] | None = None

  @property
  def column(self) -> str:
    """The task's column in output files: its name, with its unit where it has one."""
    return f"{self.name}_{self.unit}" if self.unit else self.name

  @property
  def is_function(self) -> bool:
    return self.score_fn is not None

  @functools.cached_property
  def _data(self) -> TaskData:
    return self.load()

  def data(self) -> TaskData:
    """The task's archs and scores, loaded on first call and cached.

    Raises:
      PnagError: the data is missing or malformed, or the task is a function without
        a table.
    """
    return self._data

  def by_row(self) -> np.ndarray:
    """float64[size]: the score of every arch of an enumerable space, in `enumerate()`
    order, NaN where the task has none (the tables' layout, for lookups by row)."""
    space = get_space(self.space)
    if not space.enumerable:
      raise PnagError(f"task {self.name!r}: space {space.name!r} is not enumerable, so it "
                      "has no by-row layout")
    data = self.data()
    out = np.full(space.size(), np.nan)
    out[np.asarray(space.index(data.genes))] = data.scores
    return out

  def __repr__(self) -> str:
    direction = "minimize" if self.minimize else "maximize"
    return f"<Task {self.name} ({self.family}, {direction}) of {self.space} from {self.source}>"


def select_tasks(tasks: dict[str, Task], exclude: Sequence[str]
                 ) -> tuple[dict[str, Task], dict[str, Task]]:
  """Splits tasks into (kept, excluded) by name, in the input order; loads nothing.

  Args:
    tasks: name -> task.
    exclude: Python regexes, each used with `re.search` on every name.

  Raises:
    PnagError: a pattern is not a valid regex, or matches no task (a typo would
      otherwise silently exclude nothing and leak a held-out task into training).
  """
  compiled = []
  for pattern in exclude:
    try:
      compiled.append(re.compile(pattern))
    except (re.error, RecursionError, OverflowError) as e:
      raise PnagError(f"--exclude {pattern!r} is not a valid regex: {one_line(e)}") from None
  spaces = sorted({t.space for t in tasks.values()})
  for pattern, regex in zip(exclude, compiled):
    if not any(regex.search(name) for name in tasks):
      hint = (f"see `pnag tasks --space {spaces[0]}` for the names" if len(spaces) == 1
              else "there are no tasks" if not tasks else "see `pnag tasks` for the names")
      raise PnagError(f"--exclude {pattern!r} matches no task; {hint}")
  kept, excluded = {}, {}
  for name, task in tasks.items():
    (excluded if any(r.search(name) for r in compiled) else kept)[name] = task
  return kept, excluded
