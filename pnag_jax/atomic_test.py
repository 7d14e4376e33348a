"""Atomic writes keep the old file, and leave no temporary sibling, when a write fails."""

import json

import numpy as np
import pytest

from pnag_jax import atomic


def test_write_json_round_trips_and_leaves_only_the_target(tmp_path):
  path = atomic.write_json(tmp_path / "report.json", {"a": [1, 2], "b": "x"})
  assert json.loads(path.read_text()) == {"a": [1, 2], "b": "x"}
  assert path.read_text().endswith("}\n")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_write_that_fails_keeps_the_old_file_and_removes_its_temporary(tmp_path):
  path = tmp_path / "report.json"
  atomic.write_json(path, {"old": True})
  with pytest.raises(UnicodeEncodeError):
    atomic.write_text(path, "\ud800")  # a lone surrogate: fails once the file is open
  assert json.loads(path.read_text()) == {"old": True}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_an_error_inside_the_block_leaves_no_target_and_no_temporary(tmp_path):
  with pytest.raises(RuntimeError):
    with atomic.replacing(tmp_path / "priors.npz") as tmp:
      tmp.write_bytes(b"half")
      raise RuntimeError("killed mid-write")
  assert not list(tmp_path.iterdir())


def test_the_temporary_keeps_the_suffix_so_savez_writes_where_it_is_told(tmp_path):
  path = tmp_path / "priors.npz"
  with atomic.replacing(path) as tmp:
    assert tmp.suffix == ".npz" and tmp.parent == tmp_path
    np.savez(tmp, x=np.arange(3))  # would append ".npz" to a name without it
  np.testing.assert_array_equal(np.load(path)["x"], np.arange(3))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["priors.npz"]
