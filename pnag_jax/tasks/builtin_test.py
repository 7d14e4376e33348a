"""Tests for the built-in tasks: NB201's table columns, and every space's formulas."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pnag_jax.data import NB201Data
from pnag_jax.errors import DataError, PnagError
from pnag_jax.spaces import get_space
from pnag_jax.tasks import builtin_tasks, require_tables, select_tasks
from pnag_jax.tasks import costs

_BEST_C10 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
             "|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")


@pytest.fixture(scope="module")
def tasks(data_dir):
  return builtin_tasks("nb201", data_dir)


def test_names_families_and_directions(tasks):
  names = list(tasks)
  assert len(names) == 84 and names[-2:] == ["params", "flops"]
  table = [t for t in tasks.values() if not t.is_function]
  assert len(table) == 3 + 19 + 57 + 3 == 82
  assert names[:3] == ["cifar10_test_acc", "cifar100_test_acc", "imagenet16_120_test_acc"]
  assert names[-5:-2] == ["cifar10_val_acc", "cifar100_val_acc", "imagenet16_120_val_acc"]
  lat = [t for t in tasks.values() if t.name.startswith("lat_")]
  assert len(lat) == 19 and all(t.family == "latency" and t.minimize for t in lat)
  rob = [t for t in tasks.values() if t.name.startswith("rob_")]
  assert len(rob) == 57 and not any(t.minimize for t in rob)
  families = {t.family for t in rob}
  assert families == {"clean", "fgsm", "pgd", "apgd"}
  assert tasks["rob_cifar10_apgd_eps1"].family == "apgd"
  assert tasks["rob_cifar100_pgd_eps0.5"].family == "pgd"
  assert all(t.family == "test_acc" and not t.minimize for t in list(tasks.values())[:3])
  assert tasks["params"].minimize and tasks["flops"].source == costs.COUNTED_NETWORKS["nb201"]
  assert {t.space for t in tasks.values()} == {"nb201"}


def test_cifar10_exclusion_is_exact(tasks):
  kept, excluded = select_tasks(tasks, [r"cifar10(?!0)"])
  assert set(excluded) == ({"cifar10_test_acc", "cifar10_val_acc"}
                           | {n for n in tasks if n.startswith("rob_cifar10_")})
  assert len(excluded) == 2 + 24  # 24 robustness columns of CIFAR-10 (57 = 24 + 22 + 11)
  assert not any("cifar100" in n for n in excluded)
  assert all("cifar10_" not in n for n in kept)


def test_known_values(tasks, data_dir):
  space = get_space("nb201")
  d = tasks["cifar10_test_acc"].data()
  assert d.genes.shape == (15625, 6) and np.unique(space.index(d.genes)).size == 15625
  best = int(np.argmax(d.scores))
  assert d.scores[best] == pytest.approx(94.3733, abs=1e-4)
  top = d.genes[d.scores == d.scores[best]]
  assert any((g == space.from_string(_BEST_C10)).all() for g in top)
  # Clean accuracy of the robustness dataset is the same benchmark's test accuracy.
  clean = tasks["rob_cifar10_clean"].data()
  np.testing.assert_array_equal(clean.genes, d.genes)
  assert np.corrcoef(clean.scores, d.scores)[0, 1] > 0.99
  # Val accuracies: only the zero-cost subset's archs, and below the test accuracy.
  for name in ("cifar10_val_acc", "cifar100_val_acc", "imagenet16_120_val_acc"):
    v = tasks[name].data()
    assert 700 <= len(v) <= 750, name
    assert len(np.unique(space.index(v.genes))) == len(v)
  v = tasks["cifar10_val_acc"].data()
  assert v.scores.max() == pytest.approx(91.36, abs=0.01)
  # The tables' own metric API has the robustness columns too.
  rob = NB201Data.from_dir(data_dir).metric("rob_cifar10_clean")
  assert rob.shape == (15625,) and np.isfinite(rob).all()


def test_params_task_covers_every_cell(tasks):
  d = tasks["params"].data()
  assert d.genes.shape == (15625, 6)
  assert d.scores.min() == 73306 and d.scores.max() == 1_531_546
  np.testing.assert_array_equal(tasks["params"].score_fn(d.genes[:10]), d.scores[:10])


def test_missing_optional_files_and_no_data_dir(tmp_path, data_dir, monkeypatch):
  (tmp_path / "nb201").mkdir()
  shutil.copy(data_dir / "nb201" / "nb201_accuracy.csv", tmp_path / "nb201")
  assert list(builtin_tasks("nb201", tmp_path)) == [
      "cifar10_test_acc", "cifar100_test_acc", "imagenet16_120_test_acc", "params", "flops"]
  monkeypatch.delenv("PNAG_DATA_DIR")
  assert list(builtin_tasks("nb201")) == ["params", "flops"]
  with pytest.raises(DataError, match="does not exist"):
    builtin_tasks("nb201", tmp_path / "nb201" / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="nb201_accuracy.csv"):
    builtin_tasks("nb201", tmp_path / "empty")
  # An optional file that is there but no CSV: its tasks went missing without a word.
  (tmp_path / "nb201" / "nb201_robustness.csv").write_text("")
  with pytest.raises(DataError, match="nb201_robustness.csv' is empty"):
    builtin_tasks("nb201", tmp_path)
  (tmp_path / "nb201" / "nb201_robustness.csv").unlink()
  (tmp_path / "nb201" / "nb201_robustness.csv").mkdir()
  with pytest.raises(DataError, match="nb201_robustness.csv' is not a file"):
    builtin_tasks("nb201", tmp_path)


def test_non_nb201_function_tasks_have_no_table():
  tasks = builtin_tasks("mbv3")
  assert list(tasks) == ["ofa_acc", "note10_latency", "params", "flops"]
  for name in ("params", "ofa_acc"):
    with pytest.raises(PnagError, match=f"task '{name}' of space 'mbv3' is a function; "
                                        "it has no table"):
      tasks[name].data()
  with pytest.raises(PnagError, match="unknown search space"):
    builtin_tasks("nope")


def test_require_tables_names_what_needs_them(tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv("PNAG_DATA_DIR", str(tmp_path))  # set, but holding no nb201/
  bare = builtin_tasks("nb201")
  assert list(bare) == ["params", "flops"]
  with pytest.raises(PnagError) as e:
    require_tables(bare, "pnag eval x")
  assert str(e.value) == ("pnag eval x needs the NB201 tables: a data directory holding "
                          "nb201/ (--data-dir or $PNAG_DATA_DIR); $PNAG_DATA_DIR is "
                          f"{str(tmp_path)!r}, which holds none")
  monkeypatch.delenv("PNAG_DATA_DIR")  # not set: nothing to name
  with pytest.raises(PnagError, match=r"\(--data-dir or \$PNAG_DATA_DIR\)$"):
    require_tables(builtin_tasks("nb201"), "pnag eval x")
  require_tables(builtin_tasks("nb201", data_dir), "pnag eval x")
  # Spaces without benchmark tables need none; OFA's files are a function task's.
  require_tables(builtin_tasks("darts"), "pnag eval x")
  require_tables(builtin_tasks("mbv3_r"), "pnag eval x")
