"""Files users bring: their own task (arch, score) and lists of archs to score.

Both are read eagerly and checked row by row, because a bad row found halfway through
meta-training wastes a run: every problem is one `DataError` line naming the file and
the data row (1-based, the header not counted).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from pnag_jax.errors import DataError, PnagError, one_line
from pnag_jax.spaces import as_space
from pnag_jax.spaces.base import SearchSpace
from pnag_jax.tasks.base import Task, TaskData, strict_float


def _short(value: str, limit: int = 40) -> str:
  return repr(value if len(value) <= limit else value[:limit] + "...")


def _check_file(path: Path) -> None:
  if not path.is_file():
    raise DataError(f"{one_line(str(path), 300)!r} does not exist or is not a file")


def _read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
  """(header, data rows) of a CSV that has the `required` columns; empty rows dropped."""
  _check_file(path)
  try:
    with path.open(newline="", encoding="utf-8-sig") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"cannot read {path.name} as CSV: {one_line(e, 300)}") from None
  while rows and not any(field.strip() for field in rows[0]):
    rows = rows[1:]  # blank lines above the header
  if not rows:
    raise DataError(f"{path.name} is empty (expected a header with column(s) "
                    f"{', '.join(required)})")
  header = [c.strip() for c in rows[0]]
  missing = [c for c in required if c not in header]
  if missing:
    raise DataError(f"{path.name} lacks column(s) {', '.join(missing)}; its header is "
                    f"{one_line(','.join(header), 120)}")
  twice = [c for c in required if header.count(c) > 1]
  if twice:
    raise DataError(f"{path.name} has column {twice[0]!r} twice; which one is meant?")
  for r, row in enumerate(rows[1:], start=1):
    # Fields past the header's, not empty: "85,86" would be read as a score of 85.
    if any(field.strip() for field in row[len(header):]):
      raise DataError(f"{path.name}, data row {r}: {len(row)} fields, the header has "
                      f"{len(header)} (a decimal comma, or an arch string with a comma "
                      "that is not quoted?)")
  return header, rows[1:]


def _cell(path: Path, header: list[str], row: list[str], r: int, column: str) -> str:
  j = header.index(column)
  if j >= len(row):
    raise DataError(f"{path.name}, data row {r}: has {len(row)} field(s), no {column}")
  return row[j]


def _parse_arch(space: SearchSpace, value, where: str) -> np.ndarray:
  try:
    if isinstance(value, dict) and hasattr(space, "from_native"):
      return np.asarray(space.from_native(value), np.int32)
    # Spaces after a CSV comma belong to no native string ("arch, score" files).
    return np.asarray(space.from_string(value.strip() if isinstance(value, str) else value),
                      np.int32)
  except (PnagError, ValueError) as e:
    raise DataError(f"{where}: bad {space.name} arch: {one_line(e, 300)}") from None


def read_task_csv(path: str | os.PathLike, space: SearchSpace | str, *,
                  minimize: bool = False, name: str | None = None) -> Task:
  """A user task from a CSV with columns `arch` (native string) and `score`.

  Other columns are ignored. The same arch twice with the same score is one row; with
  different scores it is an error. "Same" means the same genes: isomorphic archs are
  different rows (their scores are separate measurements).

  Args:
    path: the CSV file.
    space: the archs' space (or its name).
    minimize: lower scores are better.
    name: the task's name; the file's stem by default.

  Raises:
    DataError: one line, naming the file and the data row where it applies.
  """
  space = as_space(space)
  path = Path(path)
  header, body = _read_csv(path, ("arch", "score"))
  first_row: dict[bytes, tuple[int, float]] = {}
  genes, scores = [], []
  for r, row in enumerate(body, start=1):
    if not any(field.strip() for field in row):
      continue
    where = f"{path.name}, data row {r}"
    g = _parse_arch(space, _cell(path, header, row, r, "arch"), where)
    raw = _cell(path, header, row, r, "score")
    try:
      score = strict_float(raw.strip())
    except ValueError:
      raise DataError(f"{where}: score {_short(raw)} is not a number") from None
    if not math.isfinite(score):
      raise DataError(f"{where}: score {_short(raw)} is not finite")
    key = g.tobytes()
    if key in first_row:
      r0, s0 = first_row[key]
      if s0 != score:
        raise DataError(f"{path.name}: data rows {r0} and {r} hold the same arch with "
                        f"different scores ({s0!r} and {score!r})")
      continue
    first_row[key] = (r, score)
    genes.append(g)
    scores.append(score)
  if len(scores) < 2:
    raise DataError(f"{path.name} has {len(scores)} distinct arch(s); a task needs at "
                    "least 2")
  if len(set(scores)) == 1:
    raise DataError(f"{path.name}: all {len(scores)} scores are equal ({scores[0]!r}); "
                    "a task needs scores that differ")
  data = TaskData(np.stack(genes), np.asarray(scores, np.float64))
  return Task(name if name is not None else path.stem, "user", minimize, space.name,
              str(path), lambda: data)


def read_archs(path: str | os.PathLike, space: SearchSpace | str) -> np.ndarray:
  """Archs listed in a file, as genes `int32[n, G]` in the file's order.

  Accepts what `pnag generate` writes: a CSV with an `arch` column (other columns
  ignored), or JSONL (`.jsonl`) whose objects hold `"arch"`, the native string (a
  config dict is accepted too for spaces with native dicts: mbv3, autoformer).

  Raises:
    DataError: one line, naming the file and the data row where it applies.
  """
  space = as_space(space)
  path = Path(path)
  _check_file(path)
  if path.suffix.lower() == ".jsonl":
    genes = _read_jsonl_archs(path, space)
  else:
    header, body = _read_csv(path, ("arch",))
    genes = [_parse_arch(space, _cell(path, header, row, r, "arch"),
                         f"{path.name}, data row {r}")
             for r, row in enumerate(body, start=1) if any(f.strip() for f in row)]
  if not genes:
    raise DataError(f"{path.name} lists no archs")
  return np.stack(genes).astype(np.int32)


def _read_jsonl_archs(path: Path, space: SearchSpace) -> list[np.ndarray]:
  try:
    lines = path.read_text(encoding="utf-8-sig").split("\n")
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"cannot read {path.name}: {one_line(e, 300)}") from None
  genes = []
  for r, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    where = f"{path.name}, data row {r}"
    try:
      obj = json.loads(line)
    except (ValueError, RecursionError) as e:
      raise DataError(f"{where}: not a JSON object: {one_line(e, 120)}") from None
    if not isinstance(obj, dict) or "arch" not in obj:
      raise DataError(f'{where}: expected a JSON object with an "arch" key')
    genes.append(_parse_arch(space, obj["arch"], where))
  return genes
