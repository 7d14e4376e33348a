"""Benchmark tables read from a user-given data directory (never shipped).

Which spaces have tables is known here, and only here: generic code asks
`tables_for(space_name, data_dir)` and gets a table object or None.
"""

from __future__ import annotations

import os

from pnag_jax.data.nb201 import ENV_VAR, NB201Data, resolve_data_dir
from pnag_jax.errors import DataError

#: The `--data-dir` option's help, one wording for every command that reads tables.
DATA_DIR_HELP = f"directory holding nb201/ (default: ${ENV_VAR})"

#: Space name -> its tables' loader (`from_dir`, `FILE_COLUMNS`, `file_values`, `lookup`).
_TABLES = {"nb201": NB201Data}


def has_tables(space_name: str) -> bool:
  return space_name in _TABLES


def tables_for(space_name: str, data_dir: str | os.PathLike | None = None):
  """The space's benchmark tables where they can be found, else None.

  With `data_dir=None` the directory comes from `$PNAG_DATA_DIR`, and not finding it
  is not an error (the caller says what is missing). An explicit `data_dir` that does
  not hold the tables is an error.

  Raises:
    DataError: an explicit `data_dir` without the space's tables.
  """
  loader = _TABLES.get(space_name)
  if loader is None:
    return None
  try:
    return loader.from_dir(data_dir)
  except DataError:
    if data_dir is not None:
      raise
    return None


__all__ = ["DATA_DIR_HELP", "ENV_VAR", "NB201Data", "has_tables", "resolve_data_dir",
           "tables_for"]
