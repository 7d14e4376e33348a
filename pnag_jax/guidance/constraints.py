"""`--constraint 'TASK<=X'`: a known task, a comparison and a number.

  lat_pixel3<=5        NB201 cells at most 5 ms on a Pixel 3 (a table task)
  params<=1e6          at most a million parameters (a formula, every space)

A constraint needs the task's value for any arch the generator may return: formula
tasks compute it (`Task.score_fn`), table tasks look it up, which works where the table
covers the whole space (NB201). An arch the table does not cover fails the constraint.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.spaces.base import SearchSpace
from pnag_jax.tasks import costs

_PATTERN = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=)\s*(\S+)\s*$")


@dataclasses.dataclass(frozen=True)
class Constraint:
  task: str
  op: str        # "<=" or ">="
  bound: float

  def __str__(self) -> str:
    # Every digit the user gave (":g" would print params<=1234567 as 1.23457e+06).
    return f"{self.task}{self.op}{self.bound:.15g}"


def parse(text: str, known: dict) -> Constraint:
  """Parses `TASK<=X` / `TASK>=X` against the known tasks (name -> Task).

  Raises:
    PnagError: malformed, an unknown task, a bound that is not a finite number, or
      one that no arch of the space meets (where the task knows its exact extremes).
  """
  m = _PATTERN.match(text)
  if m is None:
    raise PnagError(f"--constraint {text!r}: expected TASK<=NUMBER or TASK>=NUMBER, "
                    "e.g. 'lat_pixel3<=5' or 'params<=1e6'")
  name, op, bound = m.groups()
  tasks_lib.require_known(known, name, f"--constraint {text!r}: task {name!r}",
                          f"--constraint {text!r}: unknown task {name!r} (see pnag tasks)")
  try:
    value = tasks_lib.strict_float(bound)
  except ValueError:
    value = float("nan")
  if not np.isfinite(value):
    raise PnagError(f"--constraint {text!r}: the bound {bound!r} is not a finite number")
  check_bound(known[name], op, value, f"--constraint {text!r}")
  return Constraint(name, op, value)


def check_bound(task, op: str, bound: float, what: str) -> None:
  """A one-line error, led by `what`, where no arch of the space meets `task op bound`.

  Exact where the task knows its extremes (`Task.extremes`); otherwise nothing is
  checked here.

  Raises:
    PnagError: `bound` lies beyond the task's lowest (`<=`) or highest (`>=`) score.
  """
  if task.extremes is None:
    return
  lowest, highest = task.extremes()
  unit = f" {task.unit}" if task.unit else ""
  if op == "<=" and bound < lowest:
    raise PnagError(f"{what}: no {task.space} arch meets it; the smallest achievable "
                    f"{task.name} is {lowest:.6g}{unit}")
  if op == ">=" and bound > highest:
    raise PnagError(f"{what}: no {task.space} arch meets it; the largest achievable "
                    f"{task.name} is {highest:.6g}{unit}")


#: Tasks scored by a predictor's forward pass: each value costs an objective call.
PREDICTORS = ("ofa_acc",)


def check_searchable(c: Constraint, space: SearchSpace, objective: str) -> None:
  """Refuses a constraint that an objective search (`pnag generate --objective`) cannot
  check for free.

  The search checks every constraint on every draw of its pools, thousands a round,
  and counts only the objective's calls on the archs it picks: a constraint must cost
  next to nothing per arch, or it bypasses `--budget` (a predictor, the objective
  itself) or stalls the search (a count that builds a network per arch).

  Raises:
    PnagError: such a constraint.
  """
  if c.task == objective or c.task in PREDICTORS:
    what, instead = (("the objective itself", "another task") if c.task == objective else
                     ("a predictor", "a table or formula task"))
    raise PnagError(f"--constraint {c}: {c.task} is {what}, and constraints are checked on "
                    "every draw of the search's pools, so its calls would go uncounted by "
                    f"--budget; constrain {instead}")
  check_quick(c, space)


def check_quick(c: Constraint, space: SearchSpace) -> None:
  """Refuses a constraint whose value takes a network build per arch (seconds each):
  both searches check constraints on every candidate of their pools, thousands of them,
  and would stall.

  Raises:
    PnagError: such a constraint, naming the counts that are formulas in `space`.
  """
  if c.task in ("params", "flops") and not costs.counted_quickly(space, c.task):
    fast = [k for k in ("params", "flops") if costs.counted_quickly(space, k)]
    raise PnagError(f"--constraint {c}: {space.name}'s {c.task} takes a network build per "
                    "arch (seconds each), and constraints are checked on every candidate "
                    "of the pool (thousands)"
                    + (f"; {' or '.join(fast)} is a formula there" if fast else ""))


def values(task, space: SearchSpace, genes: np.ndarray) -> np.ndarray:
  """float64[n]: the task's value per arch, NaN where it has none."""
  genes = np.asarray(genes, np.int32)
  if task.score_fn is not None:
    return np.asarray(task.score_fn(genes), np.float64)
  if not space.enumerable:
    raise PnagError(f"task {task.name!r} has no value for arbitrary {space.name} archs, "
                    "so it cannot constrain generation")
  return task.by_row()[np.asarray(space.index(genes))]


def satisfied(constraints: list[Constraint], known: dict, space: SearchSpace,
              genes: np.ndarray) -> np.ndarray:
  """bool[n]: every constraint holds (NaN, i.e. no value, fails)."""
  ok = np.ones(genes.shape[0], bool)
  for c in constraints:
    v = values(known[c.task], space, genes)
    with np.errstate(invalid="ignore"):
      ok &= (v <= c.bound) if c.op == "<=" else (v >= c.bound)
  return ok
