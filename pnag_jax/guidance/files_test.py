"""Scored-arch files are written whole or not at all."""

import os

import pytest

from pnag_jax import atomic
from pnag_jax.errors import PnagError
from pnag_jax.guidance import files


class _Unprintable:
  """A cell value whose writing fails, so a writer stops after its first row."""

  def __str__(self):
    raise RuntimeError("cannot print this cell")


@pytest.mark.parametrize("name", ["top.csv", "top.jsonl"])
def test_a_write_that_fails_partway_keeps_the_old_file_and_leaves_no_partial(tmp_path, name):
  out = tmp_path / name
  out.write_bytes(b"the previous run's picks\n")
  # Row 1 writes; row 2 fails (JSON cannot encode the object; CSV cannot print it).
  with pytest.raises((TypeError, RuntimeError)):
    files.write_scored(out, ["a", "b"], [1.0, 2.0], {"note": ["fine", _Unprintable()]})
  assert out.read_bytes() == b"the previous run's picks\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == [name]
  # The same call with printable cells replaces it.
  files.write_scored(out, ["a", "b"], [1.0, 2.0], {"note": ["fine", "also"]})
  assert b"also" in out.read_bytes() and sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_an_os_error_while_writing_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
  out = tmp_path / "top.csv"
  out.write_bytes(b"the previous run's picks\n")
  # The temporary's name made predictable, and a directory put there: the open fails.
  monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "f" * 2 * n)
  (tmp_path / f"top.tmp{os.getpid()}-ffffffff.csv").mkdir()
  with pytest.raises(PnagError, match=r"^cannot write .*top\.csv: Is a directory$"):
    files.write_scored(out, ["a"], [1.0], {})
  assert out.read_bytes() == b"the previous run's picks\n"
