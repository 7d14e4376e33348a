"""Tests for `pnag tasks`."""

from __future__ import annotations


def test_lists_every_nb201_task(pnag_main, data_dir):
  code, out, err = pnag_main("tasks", "--space", "nb201", "--data-dir", data_dir)
  assert code == 0, err
  lines = out.splitlines()
  assert lines[0].split() == ["name", "family", "direction", "archs", "source"]
  rows = [line.split() for line in lines[1:]]
  assert len(rows) == 84
  by_name = {r[0]: r for r in rows}
  assert by_name["cifar10_test_acc"][1:] == ["test_acc", "maximize", "15625",
                                             "nb201_accuracy.csv"]
  assert by_name["lat_pixel3"][1:3] == ["latency", "minimize"]
  assert by_name["flops"][1:5] == ["flops", "minimize", "function", "count:"]
  assert 700 < int(by_name["cifar10_val_acc"][3]) < 750


def test_exclude_previews_the_selection(pnag_main, data_dir):
  code, out, _ = pnag_main("tasks", "--data-dir", data_dir, "--exclude", "^(lat|rob)_")
  assert code == 0
  assert [line.split()[0] for line in out.splitlines()[1:-1]] == [
      "cifar10_test_acc", "cifar100_test_acc", "imagenet16_120_test_acc",
      "cifar10_val_acc", "cifar100_val_acc", "imagenet16_120_val_acc", "params", "flops"]
  assert out.splitlines()[-1].startswith("# excluded 76:")
  code, out, err = pnag_main("tasks", "--data-dir", data_dir, "--exclude", "cifar1O")
  assert code == 2 and not out and len(err.strip().splitlines()) == 1
  assert "matches no task" in err


def test_unknown_space_and_bad_data_dir_are_one_line(pnag_main, tmp_path):
  code, out, err = pnag_main("tasks", "--space", "nope")
  assert code == 2 and not out
  assert len(err.strip().splitlines()) == 1 and "unknown search space 'nope'" in err
  code, _, err = pnag_main("tasks", "--space", "nb201", "--data-dir", tmp_path)
  assert code == 2 and len(err.strip().splitlines()) == 1 and "nb201_accuracy.csv" in err


def test_other_spaces_list_their_formulas(pnag_main):
  code, out, err = pnag_main("tasks", "--space", "mbv3_r")
  assert code == 0, err
  assert [line.split()[:4] for line in out.splitlines()[1:]] == [
      ["ofa_acc", "accuracy", "maximize", "function"],
      ["note10_latency", "latency", "minimize", "function"],
      ["params", "params", "minimize", "function"], ["flops", "flops", "minimize", "function"]]
  # The counts name their network, which is not the one OFA's predictor scores.
  assert out.splitlines()[-1].endswith(
      "count: OFA MobileNetV3 width 1.0, 10 classes, at its resolution "
      "(ofa_acc and note10_latency: width 1.2, 1,000 classes)")


def test_exclude_without_the_tables_names_the_missing_tables(pnag_main, monkeypatch):
  monkeypatch.delenv("PNAG_DATA_DIR", raising=False)
  code, out, err = pnag_main("tasks", "--space", "nb201", "--exclude", "cifar")
  assert code == 2 and not out and len(err.strip().splitlines()) == 1
  assert "needs the NB201 tables" in err, err
  # A pattern that matches a formula task needs no table.
  code, out, _ = pnag_main("tasks", "--space", "nb201", "--exclude", "^params$")
  assert code == 0 and out.splitlines()[-1] == "# excluded 1: params"


def test_a_data_dir_variable_without_the_data_is_named(pnag_main, monkeypatch, tmp_path):
  # A typo in $PNAG_DATA_DIR is no error (the variable is a default), but it shows.
  monkeypatch.setenv("PNAG_DATA_DIR", str(tmp_path / "dta"))
  for space in ("nb201", "mbv3_r"):
    code, out, err = pnag_main("tasks", "--space", space)
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["params", "flops"]
    assert err.strip() == (f"pnag: note: $PNAG_DATA_DIR={str(tmp_path / 'dta')!r} holds no "
                           f"{space} data, so only the counts are listed")
  monkeypatch.delenv("PNAG_DATA_DIR")
  code, _, err = pnag_main("tasks", "--space", "nb201")
  assert code == 0 and "no data directory (--data-dir or $PNAG_DATA_DIR)" in err
  code, _, err = pnag_main("tasks", "--space", "darts")  # nothing to find: no note
  assert code == 0 and not err.strip()
