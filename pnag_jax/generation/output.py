"""Streams generated architectures to JSONL or CSV, one native string per row.

Rows are written chunk by chunk, so memory stays flat however many architectures are
asked for. The file appears under its final name only when complete: a run killed
halfway leaves `F.partial` and never clobbers an existing `F`. The writer hashes the
bytes as it writes them (`sha256`), so a part of a multi-process run (`parts.py`) is
checked without reading it back.

Columns: `arch` (the native string), then, for a space with benchmark tables
(`pnag_jax.data.tables_for`), the tables' per-arch columns (NB201: `nb201_index` and the
three test accuracies), then `valid` (strict) and `format_valid` (DiffusionNAG's rules).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import stat
from pathlib import Path

import numpy as np

from pnag_jax import atomic
from pnag_jax.errors import PnagError
from pnag_jax.generation.sampler import Generated
from pnag_jax.spaces.base import SearchSpace

FORMATS = (".jsonl", ".csv")


def output_format(path: str | Path) -> str:
  suffix = Path(path).suffix.lower()
  if suffix not in FORMATS:
    raise PnagError(f"--out must end in .jsonl or .csv, got {str(path)!r}")
  return suffix


def check_not_an_input(out: str | Path, **inputs) -> None:
  """`--out` must not name an input file (`flag=path`): the output replaces its target."""
  for flag, path in inputs.items():
    try:
      same = path is not None and os.path.samefile(out, path)
    except OSError:  # either missing, or not a file name ("a.csv/"): not the same
      same = False
    if same:
      raise PnagError(f"--out {out} is the --{flag} file, which the output would "
                      "replace; give another name")


def check_output(path: str | Path, kind: str | None = None) -> Path:
  """`path` if an output file can go there: .jsonl/.csv (or `kind`, for a name that
  does not say), in an existing directory."""
  if str(path).endswith(("/", os.sep)):  # Path() drops the slash: "a.csv/" would be a file
    raise PnagError(f"output {path} ends in a slash; give a file name")
  path = Path(path)
  if kind is None:
    output_format(path)
  elif kind not in FORMATS:
    raise PnagError(f"output format must be one of {', '.join(FORMATS)}, got {kind!r}")
  if not path.parent.is_dir():
    raise PnagError(f"output directory {path.parent} does not exist")
  if path.is_dir():
    raise PnagError(f"output {path} is a directory; give a file name")
  # Checked before the work, not found out at the end: creating the temporary sibling
  # needs write and search permission on the directory.
  if not os.access(path.parent, os.W_OK | os.X_OK):
    raise PnagError(f"output directory {path.parent} is not writable")
  return path


def columns(tables=None) -> list[str]:
  """A file's columns: `arch`, the tables' per-arch columns if any, the two validities."""
  extra = [] if tables is None else list(tables.FILE_COLUMNS)
  return ["arch", *extra, "valid", "format_valid"]


def _csv_line(values) -> str:
  buf = io.StringIO()
  csv.writer(buf, lineterminator="").writerow(values)
  return buf.getvalue()


class ArchWriter:
  """Context manager writing `Generated` chunks as rows of `path`.

  Args:
    path: F.jsonl or F.csv; written as F.partial, renamed to F when complete.
    space: the archs' space.
    tables: optional benchmark tables with `FILE_COLUMNS` and `file_values(genes)`.
    kind: ".csv" or ".jsonl" for a path whose name does not say (a part file).
    header: write the CSV header (a part after the first has none, so the parts
      concatenate to the whole file).
  """

  def __init__(self, path: str | Path, space: SearchSpace, tables=None, *,
               kind: str | None = None, header: bool = True):
    self.path = check_output(path, kind)
    self.kind = output_format(self.path) if kind is None else kind
    self.header = header
    self.space = space
    self.tables = tables
    self._partial = self.path.with_name(self.path.name + ".partial")
    self.columns = columns(tables)
    # Each row is "<per-arch part><validity part>". The validity part has 4 forms; an
    # enumerable space's per-arch parts are formatted once (NB201: 15,625), so every
    # row is two table look-ups and a join (10M rows in seconds, not minutes).
    self._suffix = [self._format_tail(bool(v), bool(f)) for v in (0, 1) for f in (0, 1)]
    self._heads = None
    if space.enumerable:
      self._heads = np.asarray(self._format_heads(space.enumerate()), dtype=object)
    self.rows = 0
    self.bytes = 0
    self._hash = hashlib.sha256()

  def _format_heads(self, genes: np.ndarray) -> list[str]:
    strings = self.space.to_strings(genes)
    extra = [] if self.tables is None else self.tables.file_values(genes)
    names = self.columns[:1 + len(extra)]
    heads = []
    for values in zip(strings, *extra):
      if self.kind == ".csv":
        heads.append(_csv_line(values) + ",")
      else:
        heads.append(json.dumps(dict(zip(names, values)))[:-1] + ", ")
    return heads

  def _format_tail(self, valid: bool, format_valid: bool) -> str:
    if self.kind == ".csv":
      return f"{valid},{format_valid}\n"
    return f'"valid": {json.dumps(valid)}, "format_valid": {json.dumps(format_valid)}}}\n'

  @property
  def sha256(self) -> str:
    """The hex digest of every byte written so far."""
    return self._hash.hexdigest()

  def _cannot_write(self, e: OSError) -> PnagError:
    self._write_failed = True
    return PnagError(f"cannot write {self._partial}: {e.strerror or e}")

  def _put(self, text: str) -> None:
    data = text.encode()
    try:
      self._file.write(data)
    except OSError as e:  # a full disk, a file size limit, a quota
      raise self._cannot_write(e) from e
    self._hash.update(data)
    self.bytes += len(data)

  def __enter__(self) -> "ArchWriter":
    fd = self._open_locked()
    try:
      self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
      if self._regular:
        os.ftruncate(fd, 0)
    except OSError as e:
      os.close(fd)
      raise PnagError(f"cannot write {self._partial}: {e.strerror or e}") from e
    self._file = os.fdopen(fd, "wb")
    self._write_failed = False
    if self.kind == ".csv" and self.header:
      self._put(_csv_line(self.columns) + "\n")
    return self

  def _open_locked(self) -> int:
    """`F.partial`, opened and locked, not yet truncated: it may be another writer's.

    Two runs with one --out wrote one F.partial together, and one renamed the other's
    rows to F. A killed run's file is free for the rerun (`atomic.lock_or_busy`). A
    file locked after its writer renamed or removed it is no longer F.partial, and is
    let go for the new one.
    """
    for _ in range(10):
      try:
        fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT, 0o666)
      except OSError as e:  # e.g. a read-only filesystem, which os.access does not see
        raise PnagError(f"cannot write {self._partial}: {e.strerror}") from e
      try:
        if self._lock_is_ours(fd):
          return fd
      except BaseException:
        os.close(fd)
        raise
      os.close(fd)
    raise PnagError(f"cannot write {self._partial}: other processes keep replacing it")

  def _lock_is_ours(self, fd: int) -> bool:
    """Locks `fd`; whether it is still F.partial (False: open the new one)."""
    if not atomic.lock_or_busy(fd):
      raise PnagError(f"another process is writing {self.path} (its {self._partial.name} "
                      "is locked): wait for it, or write elsewhere")
    try:
      return os.path.samestat(os.fstat(fd), os.stat(self._partial))
    except FileNotFoundError:
      return False
    except OSError as e:  # e.g. a stale NFS handle
      raise PnagError(f"cannot write {self._partial}: {e.strerror or e}") from e

  def __exit__(self, exc_type, exc, tb) -> None:
    error = None
    try:
      self._file.flush()  # what is buffered: a full disk may show only here
      if self._regular and exc_type is None:
        # Some file systems (NFS) report a failed write only at fsync or close, and
        # the file is renamed into place before it is closed.
        try:
          os.fsync(self._file.fileno())
        except OSError as e:
          if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # no fsync here: nothing to ask
            raise
    except OSError as e:
      if exc_type is None:
        error = self._cannot_write(e)
    # Renamed or removed before the file is closed, which releases its lock.
    try:
      if exc_type is None and error is None:
        try:
          os.replace(self._partial, self.path)
        except OSError as e:
          raise PnagError(f"cannot rename {self._partial} to {self.path.name}: "
                          f"{e.strerror or e}") from e
        return
      # Failed before its first row, or failed to write one: the partial file holds
      # nothing worth keeping (a file cut where the disk filled, on a disk that is full).
      if not self.rows or self._write_failed:
        self._partial.unlink(missing_ok=True)
    finally:
      with contextlib.suppress(OSError):  # a failed flush fails once more here
        self._file.close()
    if error is not None:
      raise error

  def write(self, chunk: Generated) -> None:
    genes = np.asarray(chunk.genes)
    if self._heads is not None:
      heads = self._heads[np.asarray(self.space.index(genes))].tolist()
    else:
      heads = self._format_heads(genes)
    tails = (2 * np.asarray(chunk.valid, np.int64) + np.asarray(chunk.format_valid)).tolist()
    suffix = self._suffix
    self._put("".join([h + suffix[t] for h, t in zip(heads, tails)]))
    self.rows += len(heads)
