import csv
import json
import os

import jax
import numpy as np
import pytest

from pnag_jax import atomic
from pnag_jax.data import NB201Data
from pnag_jax.errors import PnagError
from pnag_jax.generation.sampler import Generated
from pnag_jax.generation.output import ArchWriter, check_output
from pnag_jax.spaces import get_space


def _chunk(space, n, seed):
  genes = np.asarray(space.sample(jax.random.key(seed), n))
  valid = np.arange(n) % 3 != 0
  return Generated(genes, valid, np.ones(n, bool))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_nb201_rows_round_trip_with_benchmark_columns(tmp_path, data_dir, suffix):
  space, data = get_space("nb201"), NB201Data.from_dir(data_dir)
  chunks = [_chunk(space, 50, 0), _chunk(space, 7, 1)]
  path = tmp_path / f"archs{suffix}"
  with ArchWriter(path, space, data) as w:
    for c in chunks:
      w.write(c)
  if suffix == ".csv":
    with path.open(newline="") as f:
      rows = list(csv.DictReader(f))
    parse_bool = {"True": True, "False": False}.__getitem__
  else:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    parse_bool = bool
  genes = np.concatenate([c.genes for c in chunks])
  valid = np.concatenate([c.valid for c in chunks])
  assert len(rows) == 57
  for row, g, v in zip(rows, genes, valid):
    np.testing.assert_array_equal(space.from_string(row["arch"]), g)
    assert parse_bool(row["valid"]) == v
    idx = int(row["nb201_index"])
    code = int(np.flatnonzero(data.nb201_index == idx)[0])
    assert float(row["cifar10_test_acc"]) == pytest.approx(
        float(data.metric("cifar10_test_acc")[code]), abs=1e-4)


def test_other_spaces_write_native_strings(tmp_path):
  space = get_space("mbv3")
  path = tmp_path / "m.jsonl"
  with ArchWriter(path, space) as w:
    w.write(_chunk(space, 5, 0))
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert set(rows[0]) == {"arch", "valid", "format_valid"}
  for row in rows:
    space.from_string(row["arch"])


def test_a_failed_run_leaves_the_old_file_and_a_partial(tmp_path):
  space = get_space("nb201")
  path = tmp_path / "a.csv"
  path.write_text("precious\n")
  with pytest.raises(RuntimeError):
    with ArchWriter(path, space) as w:
      w.write(_chunk(space, 10, 0))
      raise RuntimeError("killed")
  assert path.read_text() == "precious\n"
  assert (tmp_path / "a.csv.partial").exists()


def test_a_second_writer_of_one_file_is_refused_while_the_first_writes(tmp_path):
  space = get_space("nb201")
  path = tmp_path / "a.csv"
  with ArchWriter(path, space) as first:
    first.write(_chunk(space, 10, 0))
    with pytest.raises(PnagError, match=r"another process is writing .*a\.csv \(its "
                                        r"a\.csv\.partial is locked\)"):
      with ArchWriter(path, space) as second:
        second.write(_chunk(space, 3, 1))
    first.write(_chunk(space, 10, 10))
  # The first one's rows only, whole; and a killed writer's partial is free again.
  assert len(path.read_text().splitlines()) == 21
  with pytest.raises(RuntimeError):
    with ArchWriter(path, space) as w:
      w.write(_chunk(space, 10, 0))
      raise RuntimeError("killed")
  with ArchWriter(path, space) as w:
    w.write(_chunk(space, 4, 0))
  assert len(path.read_text().splitlines()) == 5 and not (tmp_path / "a.csv.partial").exists()


def test_a_writer_that_locks_a_file_already_renamed_opens_the_new_one(tmp_path, monkeypatch):
  space = get_space("nb201")
  path = tmp_path / "a.csv"
  first = ArchWriter(path, space).__enter__()
  first.write(_chunk(space, 10, 0))
  flock = atomic.fcntl.flock

  def first_finishes_meanwhile(fd, op):
    # Between the second writer's open and its lock, the first renames F.partial to F
    # and closes it: the file the second one holds is F now, no longer F.partial.
    if not first._file.closed:  # pylint: disable=protected-access
      first.__exit__(None, None, None)
    return flock(fd, op)

  monkeypatch.setattr(atomic.fcntl, "flock", first_finishes_meanwhile)
  with ArchWriter(path, space) as second:
    second.write(_chunk(space, 3, 1))
  assert len(path.read_text().splitlines()) == 4  # whole; not written into the first's F
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_bad_output_paths(tmp_path):
  space = get_space("nb201")
  with pytest.raises(PnagError, match="must end in .jsonl or .csv"):
    ArchWriter(tmp_path / "a.txt", space)
  with pytest.raises(PnagError, match="does not exist"):
    ArchWriter(tmp_path / "nope" / "a.csv", space)
  (tmp_path / "d.csv").mkdir()
  with pytest.raises(PnagError, match="is a directory"):
    ArchWriter(tmp_path / "d.csv", space)
  with pytest.raises(PnagError, match="ends in a slash; give a file name"):
    ArchWriter(f"{tmp_path}/e.csv/", space)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_an_unwritable_directory_is_refused_before_any_work(tmp_path, monkeypatch):
  # Root passes every permission check, so the refusal is simulated; the open below is not.
  real_access = os.access
  monkeypatch.setattr(os, "access", lambda p, mode: p != tmp_path and real_access(p, mode))
  with pytest.raises(PnagError, match="is not writable"):
    check_output(tmp_path / "a.csv")


def test_a_file_that_cannot_be_opened_is_a_one_line_error(tmp_path):
  (tmp_path / "a.csv.partial").mkdir()  # opening it for writing fails, even for root
  with pytest.raises(PnagError, match="cannot write .*a.csv.partial"):
    with ArchWriter(tmp_path / "a.csv", get_space("nb201")):
      pass
  assert not (tmp_path / "a.csv").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("rows", [1, 5000], ids=["at-close", "at-write"])
def test_a_full_disk_is_a_one_line_error_and_leaves_no_partial(tmp_path, rows):
  # Every write to /dev/full fails with ENOSPC: a small chunk fails when the buffer is
  # flushed at the end, a large one as it is written.
  path = tmp_path / "a.csv"
  path.write_text("precious\n")
  (tmp_path / "a.csv.partial").symlink_to("/dev/full")
  space = get_space("nb201")
  with pytest.raises(PnagError, match="cannot write .*a.csv.partial: No space left on device"):
    with ArchWriter(path, space) as w:
      w.write(_chunk(space, rows, 0))
  assert path.read_text() == "precious\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_a_run_failing_before_its_first_row_leaves_no_partial(tmp_path):
  path = tmp_path / "a.csv"
  with pytest.raises(PnagError):
    with ArchWriter(path, get_space("nb201")):
      raise PnagError("refused")
  assert not list(tmp_path.iterdir())


def test_nb201_without_tables_writes_strings_and_validity_only(tmp_path):
  space = get_space("nb201")
  path = tmp_path / "a.csv"
  with ArchWriter(path, space) as w:
    w.write(_chunk(space, 4, 0))
  header, *rows = path.read_text().splitlines()
  assert header == "arch,valid,format_valid" and len(rows) == 4
