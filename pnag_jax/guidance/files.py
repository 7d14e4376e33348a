"""Files of scored architectures (`pnag predict`, guided `pnag generate`).

Files are written atomically (`atomic.replacing`), so a failed run leaves no output
file behind and never clobbers an existing one. Columns: `arch` (the native
string, which `tasks.read_archs` reads back), `predicted_score`, then any extra
columns (NB201: the index and the test accuracies when a data directory is given).
Objective-guided search (`write_records`) writes `arch` and its own columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from pnag_jax import atomic
from pnag_jax.generation.output import check_output


def write_scored(path: str | Path, strings: Sequence[str], scores: np.ndarray,
                 extra: dict[str, Sequence] | None = None) -> Path:
  """Writes rows (arch, predicted_score, *extra) to `path` (.csv or .jsonl), atomically."""
  path = check_output(path)
  extra = extra or {}
  columns = ["arch", "predicted_score", *extra]
  values = [list(strings), [float(s) for s in np.asarray(scores, np.float64)],
            *[list(v) for v in extra.values()]]
  _write_rows(path, columns, values)
  return path


def write_records(path: str | Path, space, genes: np.ndarray,
                  columns: dict[str, Sequence]) -> Path:
  """Writes rows (arch, *columns) to `path` (.csv or .jsonl), atomically.

  In JSONL, a space whose native form is a dict (MBV3's OFA dict, AutoFormer's
  config) writes `arch` as that object; other spaces, and every CSV, write the native
  string.
  """
  path = check_output(path)
  genes = np.asarray(genes)
  names = ["arch", *columns]
  jsonl = path.suffix.lower() != ".csv"
  archs = []
  for g in genes:
    native = space.to_native(g) if jsonl and hasattr(space, "to_native") else None
    archs.append(native if isinstance(native, dict) else space.to_string(g))
  values = [archs, *[[v.item() if isinstance(v, np.generic) else v for v in col]
                     for col in columns.values()]]
  _write_rows(path, names, values)
  return path


def _write_rows(path: Path, names: list[str], values: list[list]) -> None:
  """Columns `values` under `names` to `path` (.csv, else .jsonl), atomically."""
  with atomic.open_replacing(path, newline="") as f:
    if path.suffix.lower() == ".csv":
      w = csv.writer(f, lineterminator="\n")
      w.writerow(names)
      w.writerows(zip(*values))
    else:
      for row in zip(*values):
        f.write(json.dumps(dict(zip(names, row))) + "\n")
