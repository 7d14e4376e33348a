"""Constraint strings: parsed exactly, printed as given, refused in one line."""

import numpy as np
import pytest

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.guidance import constraints
from pnag_jax.guidance import run as guidance_run
from pnag_jax.spaces import get_space


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


def test_a_table_task_without_the_tables_names_them_not_a_typo(tmp_path, monkeypatch):
  monkeypatch.setenv("PNAG_DATA_DIR", str(tmp_path))  # set, but holding no nb201/
  bare = tasks_lib.builtin_tasks("nb201")
  with pytest.raises(PnagError) as e:
    constraints.parse("lat_pixel3<=5", bare)
  assert str(e.value) == ("--constraint 'lat_pixel3<=5': task 'lat_pixel3' needs the NB201 "
                          "tables: a data directory holding nb201/ (--data-dir or "
                          f"$PNAG_DATA_DIR); $PNAG_DATA_DIR is {str(tmp_path)!r}, which holds "
                          "none")
  assert constraints.parse("params<=1e6", bare).bound == 1e6  # formulas need no tables
  # The same for `pnag generate --objective`.
  with pytest.raises(PnagError, match=r"^--objective 'lat_pixel3' needs the NB201 tables"):
    guidance_run.function_task(bare, "lat_pixel3", get_space("nb201"), "--objective")
  assert guidance_run.function_task(bare, "params", get_space("nb201"), "--objective").is_function


def test_each_operator_keeps_exactly_its_side_of_the_bound_and_nan_fails_both():
  space = get_space("nb201")
  genes = space.enumerate()[:40]
  # A table over the first 30 cells only (values 0..29): the last 10 have no value.
  table = tasks_lib.Task("tab", "synthetic", False, "nb201", "test",
                         lambda: tasks_lib.TaskData(genes[:30], np.arange(30.0)))
  known = {"tab": table}
  values = constraints.values(table, space, genes)
  assert np.isnan(values[30:]).all()
  for op, side in (("<=", np.less_equal), (">=", np.greater_equal)):
    c = constraints.parse(f"tab{op}12", known)
    ok = constraints.satisfied([c], known, space, genes)
    # The bound itself meets both; a cell without a value meets neither.
    np.testing.assert_array_equal(ok, np.concatenate([side(np.arange(30.0), 12),
                                                      np.zeros(10, bool)]))
  both = [constraints.parse("tab>=5", known), constraints.parse("tab<=7", known)]
  np.testing.assert_array_equal(np.flatnonzero(constraints.satisfied(both, known, space,
                                                                     genes)), [5, 6, 7])


@pytest.fixture(scope="module")
def mbv3_r_workdir(untrained_run, stage1_saver, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("mbv3_r")
  return stage1_saver(untrained_run("mbv3_r", workdir), workdir)


@pytest.mark.parametrize("objective, constraint, fragment", [
    # Checked on every draw of every pool: thousands of uncounted predictor calls.
    ("note10_latency", "ofa_acc>=0.78", "ofa_acc is a predictor, .* uncounted by --budget"),
    ("ofa_acc", "ofa_acc>=0.78", "ofa_acc is the objective itself"),
    ("note10_latency", "note10_latency<=25", "note10_latency is the objective itself"),
    # An abstract network build per draw (1.6 s each): the search would never end.
    ("ofa_acc", "flops<=3e8", "mbv3_r's flops takes a network build per arch .* params is "
                              "a formula there"),
])
def test_an_objective_search_refuses_constraints_that_are_not_free(
    mbv3_r_workdir, data_dir, tmp_path, objective, constraint, fragment):
  out = tmp_path / "top.csv"
  with pytest.raises(PnagError, match=fragment) as e:
    guidance_run.search_to_file(mbv3_r_workdir, objective=objective, out=out, num=3,
                                budget=100, constraints=[constraint], data_dir=data_dir)
  assert "\n" not in str(e.value) and not out.exists()


def test_counts_that_build_a_network_per_arch_are_refused_in_either_search():
  # Guided generation (--refs) checks constraints on every unique candidate too.
  darts = get_space("darts")
  known = tasks_lib.builtin_tasks("darts", None)
  for text in ("params<=1e6", "flops<=1e9"):
    with pytest.raises(PnagError, match=f"darts's {text[:-5]} takes a network build per arch"):
      constraints.check_quick(constraints.parse(text, known), darts)
  nb201 = get_space("nb201")
  for text in ("params<=1e6", "flops<=1e9"):  # formulas there
    constraints.check_quick(constraints.parse(text, tasks_lib.builtin_tasks("nb201", None)),
                            nb201)
