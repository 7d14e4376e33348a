"""Constraint strings: parsed exactly, printed as given, refused in one line."""

import pytest

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.guidance import constraints


@pytest.fixture(scope="module")
def known(data_dir):
  return tasks_lib.builtin_tasks("nb201", data_dir)


def test_a_bound_is_printed_with_every_digit_given(known):
  c = constraints.parse("params<=1234567", known)
  assert (c.task, c.op, c.bound) == ("params", "<=", 1234567.0)
  assert str(c) == "params<=1234567"
  assert str(constraints.parse("lat_pixel3>=2.75", known)) == "lat_pixel3>=2.75"


@pytest.mark.parametrize("text, fragment", [
    ("params<=1_0", "is not a finite number"),
    ("params<=nan", "is not a finite number"),
    ("params<=inf", "is not a finite number"),
    ("params<=abc", "is not a finite number"),
    ("params<3", "expected TASK<=NUMBER"),
    ("nope<=3", "unknown task 'nope'"),
])
def test_bad_constraints_are_one_line(known, text, fragment):
  with pytest.raises(PnagError, match=fragment) as e:
    constraints.parse(text, known)
  assert "\n" not in str(e.value)
