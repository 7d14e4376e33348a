"""Atomic writes keep the old file, and leave no temporary sibling, when a write fails."""

import json

import numpy as np
import pytest

from pnag_jax import atomic
from pnag_jax.errors import PnagError


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


def test_temporaries_sit_beside_the_target_keep_its_suffix_and_never_coincide(tmp_path):
  path = tmp_path / "fig.png"
  with atomic.replacing(path) as a, atomic.replacing(path) as b:
    assert a.parent == b.parent == tmp_path and a.suffix == b.suffix == ".png"
    assert a != b  # one pid, two writers: a pid alone would name both the same
    a.write_bytes(b"a")
    b.write_bytes(b"b")
  assert path.read_bytes() == b"a"  # the outer block finishes last
  assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_savez_through_the_open_file_writes_any_target_name(tmp_path):
  path = tmp_path / "priors.bin"  # np.savez would append ".npz" to this name
  with atomic.replacing(path) as tmp, tmp.open("wb") as f:
    np.savez(f, x=np.arange(3))
  np.testing.assert_array_equal(np.load(path)["x"], np.arange(3))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["priors.bin"]


def test_a_refusing_file_system_is_a_one_line_error_and_leaves_no_debris(tmp_path):
  (tmp_path / "report.json").mkdir()  # the rename onto it fails, even for root
  with pytest.raises(PnagError, match=r"^cannot write .*report\.json: Is a directory$"):
    atomic.write_json(tmp_path / "report.json", {"a": 1})
  assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_command_takes_back_the_empty_folders_it_made(tmp_path):
  (tmp_path / "mine").mkdir()
  with pytest.raises(KeyboardInterrupt):
    with atomic.no_empty_dirs_on_failure(tmp_path / "mine" / "a" / "b"):
      (tmp_path / "mine" / "a" / "b").mkdir(parents=True)
      raise KeyboardInterrupt
  assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # it was there before
  # A folder something was written into stays, as does all it holds.
  with pytest.raises(ValueError):
    with atomic.no_empty_dirs_on_failure(tmp_path / "x" / "y"):
      (tmp_path / "x" / "y").mkdir(parents=True)
      (tmp_path / "x" / "kept.txt").write_text("a")
      raise ValueError
  assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["kept.txt"]
  # A command that succeeds keeps what it made, empty or not.
  with atomic.no_empty_dirs_on_failure(tmp_path / "ok"):
    (tmp_path / "ok").mkdir()
  assert (tmp_path / "ok").is_dir()
