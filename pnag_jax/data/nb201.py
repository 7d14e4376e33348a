"""NAS-Bench-201 tables, aligned with the NB201 space's cell code.

The data never ships with the package. It is read from a directory given on the
command line or in `PNAG_DATA_DIR`, laid out as `../shared/data` is:

  DIR/nb201/nb201_accuracy.csv        one row per cell (required)
  DIR/nb201/nb201_latency_help.csv    one row per cell (optional)
  DIR/nb201/nb201_naslib_zc_subset.csv  a subset, per dataset (optional)
  DIR/nb201/nb201_robustness.csv      one row per cell (optional)

Every metric comes back as `float32[15625]` indexed by `NB201Space.code(genes)`,
so scoring a million generated cells is one gather on the device.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import DataError
from pnag_jax.spaces import get_space, nb201 as nb201_space

ENV_VAR = "PNAG_DATA_DIR"
ACCURACY_FILE = "nb201_accuracy.csv"
LATENCY_FILE = "nb201_latency_help.csv"
ZC_FILE = "nb201_naslib_zc_subset.csv"
ROBUSTNESS_FILE = "nb201_robustness.csv"

ACCURACY_COLUMNS = ("cifar10_test_acc", "cifar100_test_acc", "imagenet16_120_test_acc")
ZC_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
_OP_COLUMNS = tuple(f"op_e{i}{j}" for i, j in nb201_space.EDGES)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
  """The `nb201/` directory from `data_dir`, else `$PNAG_DATA_DIR`.

  Either the parent holding `nb201/` (as `../shared/data`) or `nb201/` itself.

  Raises:
    DataError: nothing given, or no `nb201_accuracy.csv` where it should be.
  """
  given = data_dir if data_dir is not None else os.environ.get(ENV_VAR)
  if not given:
    raise DataError(
        f"no NB201 data directory: pass --data-dir or set {ENV_VAR} "
        f"(a directory holding nb201/{ACCURACY_FILE})")
  root = Path(given).expanduser()
  if not root.is_dir():
    raise DataError(f"NB201 data directory {str(root)!r} "
                    + ("is a file, not a directory" if root.exists() else "does not exist"))
  for cand in (root / "nb201", root):
    if (cand / ACCURACY_FILE).is_file():
      return cand
  raise DataError(f"no {ACCURACY_FILE} in {str(root)!r} or {str(root / 'nb201')!r}")


def _read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
  if not path.is_file():
    raise DataError(f"missing NB201 data file {str(path)!r}")
  try:
    # utf-8-sig: a spreadsheet's byte-order mark would hide the first column's name.
    with path.open(newline="", encoding="utf-8-sig") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"cannot read {str(path)!r}: {e}") from None
  if not rows:
    raise DataError(f"{str(path)!r} is empty")
  # A blank line (a trailing newline too many) is no row.
  header, body = rows[0], [r for r in rows[1:] if r]
  missing = [c for c in required if c not in header]
  if missing:
    raise DataError(f"{path.name} lacks column(s) {', '.join(missing)}")
  twice = sorted({c for c in header if header.count(c) > 1})
  if twice:
    raise DataError(f"{path.name} has column {twice[0]!r} twice")
  for r, row in enumerate(body):
    # A field too many or too few shifts every value after it into the next column.
    if len(row) != len(header):
      raise DataError(f"{path.name}, data row {r + 1}: {len(row)} field(s), the header "
                      f"has {len(header)}")
  return header, body


def _float_column(path: Path, header, body, name: str, *, finite: bool = True) -> np.ndarray:
  """Column `name` as float64; with `finite`, NaN and infinities are refused (a score
  of inf would be every task's optimum)."""
  j = header.index(name)
  values = np.empty(len(body), np.float64)
  for r, row in enumerate(body):
    try:
      values[r] = float(row[j])
    except ValueError:
      raise DataError(f"{path.name}, data row {r + 1}: column {name} is {row[j]!r}, not a "
                      "number") from None
  if finite and not np.isfinite(values).all():
    r = int(np.flatnonzero(~np.isfinite(values))[0])
    raise DataError(f"{path.name}, data row {r + 1}: column {name} is {body[r][j]!r}, "
                    "not a finite number")
  return values


def _codes_of_rows(path: Path, header, body) -> tuple[np.ndarray, np.ndarray]:
  """(cell code, official nb201_index) of each row, checked against each other."""
  space = get_space("nb201")
  i_idx, i_arch = header.index("nb201_index"), header.index("arch_str")
  codes, index = np.empty(len(body), np.int32), np.empty(len(body), np.int32)
  for r, row in enumerate(body):
    try:
      index[r] = int(row[i_idx])
      codes[r] = nb201_space.code_of_genes(space.from_string(row[i_arch]))
    except (ValueError, IndexError) as e:
      raise DataError(f"{path.name}, data row {r + 1}: {e}") from None
  return codes, index


def _check_index(path: Path, codes: np.ndarray, index: np.ndarray,
                 nb201_index: np.ndarray) -> None:
  """Each row's nb201_index must be its arch_str's, as the accuracy file pairs them:
  else a row's values are another index's, with no error."""
  wrong = np.flatnonzero(index != nb201_index[codes])
  if wrong.size:
    r = int(wrong[0])
    raise DataError(f"{path.name}, data row {r + 1}: nb201_index {index[r]}, but its arch_str "
                    f"is index {nb201_index[codes[r]]} in {ACCURACY_FILE}")


def _check_full(path: Path, codes: np.ndarray, index: np.ndarray) -> None:
  n = nb201_space.NUM_CELLS
  if codes.size != n or np.unique(codes).size != n:
    raise DataError(f"{path.name} must have one row per NB201 cell ({n}), "
                    f"has {codes.size} rows over {np.unique(codes).size} cells")
  if np.unique(index).size != n or index.min() != 0 or index.max() != n - 1:
    raise DataError(f"{path.name}: nb201_index must be a permutation of 0..{n - 1}")


@dataclasses.dataclass(frozen=True)
class NB201Data:
  """Loader over one data directory. Tables load on first use and are cached."""

  root: Path

  #: What a file of generated archs gets from these tables, per arch.
  FILE_COLUMNS: ClassVar[tuple[str, ...]] = ("nb201_index", *ACCURACY_COLUMNS)

  @classmethod
  def from_dir(cls, data_dir: str | os.PathLike | None = None) -> "NB201Data":
    return cls(resolve_data_dir(data_dir))

  @functools.cached_property
  def _accuracy(self) -> dict[str, np.ndarray]:
    path = self.root / ACCURACY_FILE
    required = ("nb201_index", "arch_str") + _OP_COLUMNS + ACCURACY_COLUMNS
    header, body = _read_csv(path, required)
    codes, index = _codes_of_rows(path, header, body)
    _check_full(path, codes, index)
    ops = np.stack([_float_column(path, header, body, c) for c in _OP_COLUMNS], -1)
    if not np.array_equal(ops.astype(np.int32), nb201_space.genes_of_code(codes)):
      raise DataError(f"{path.name}: op_e* columns disagree with arch_str")
    out = {"nb201_index": np.empty_like(index)}
    out["nb201_index"][codes] = index
    for c in ACCURACY_COLUMNS:
      col = np.empty(codes.size, np.float32)
      col[codes] = _float_column(path, header, body, c)
      out[c] = col
    return out

  def _full_table(self, file: str, prefix: str) -> dict[str, np.ndarray]:
    """Every `prefix*` column of a one-row-per-cell file, per cell code."""
    path = self.root / file
    header, body = _read_csv(path, ("nb201_index", "arch_str"))
    codes, index = _codes_of_rows(path, header, body)
    _check_full(path, codes, index)
    _check_index(path, codes, index, self.nb201_index)
    out = {}
    for c in header:
      if c.startswith(prefix):
        col = np.empty(codes.size, np.float32)
        col[codes] = _float_column(path, header, body, c)
        out[c] = col
    if not out:
      raise DataError(f"{path.name} has no {prefix}* columns")
    return out

  @functools.cached_property
  def _latency(self) -> dict[str, np.ndarray]:
    return self._full_table(LATENCY_FILE, "lat_")

  @functools.cached_property
  def _robustness(self) -> dict[str, np.ndarray]:
    """`rob_*` columns (accuracy under attack, Jung et al. 2023) per cell code."""
    return self._full_table(ROBUSTNESS_FILE, "rob_")

  @functools.cached_property
  def _zc_subset(self) -> dict[str, np.ndarray]:
    """`<dataset>/<column>` -> float32[15625], NaN where the subset has no row."""
    path = self.root / ZC_FILE
    header, body = _read_csv(path, ("dataset", "nb201_index", "arch_str", "params", "flops"))
    codes, index = _codes_of_rows(path, header, body)
    _check_index(path, codes, index, self.nb201_index)
    datasets = np.array([r[header.index("dataset")] for r in body])
    unknown = sorted(set(datasets.tolist()) - set(ZC_DATASETS))
    if unknown:
      raise DataError(f"{path.name}: unknown dataset {unknown[0]!r} (known: "
                      f"{', '.join(ZC_DATASETS)})")
    pairs = {}
    for r, pair in enumerate(zip(datasets.tolist(), codes.tolist())):
      if pair in pairs:
        raise DataError(f"{path.name}, data rows {pairs[pair] + 1} and {r + 1}: the same "
                        f"cell twice for {pair[0]}")
      pairs[pair] = r
    out = {}
    keys = ("dataset", "nb201_index", "arch_str")
    for c in (c for c in header if c not in keys):
      # Zero-cost proxies are raw scores, where NASLib has -inf (nwot of one cell).
      values = _float_column(path, header, body, c, finite=not c.startswith("zc_"))
      for ds in ZC_DATASETS:
        col = np.full(nb201_space.NUM_CELLS, np.nan, np.float32)
        sel = datasets == ds
        col[codes[sel]] = values[sel]
        out[f"{ds}/{c}"] = col
    return out

  def checked(self) -> "NB201Data":
    """Itself, once the required table is read and checked (else on first use)."""
    self._accuracy  # pylint: disable=pointless-statement  # a cached property: loads it
    return self

  @property
  def nb201_index(self) -> np.ndarray:
    """Official NB201 / NATS-Bench index of each cell code, int32[15625]."""
    return self._accuracy["nb201_index"]

  @functools.cached_property
  def code_of_index(self) -> np.ndarray:
    """Cell code of each official index (inverse of `nb201_index`)."""
    inv = np.empty_like(self.nb201_index)
    inv[self.nb201_index] = np.arange(inv.size, dtype=inv.dtype)
    return inv

  def metric_names(self, include_optional: bool = True) -> list[str]:
    names = list(ACCURACY_COLUMNS)
    if include_optional:
      for table in ("_latency", "_robustness", "_zc_subset"):
        try:
          names += list(getattr(self, table))
        except DataError:
          pass
    return names

  def metric(self, name: str) -> np.ndarray:
    """The metric `name` as float32[15625], indexed by cell code.

    Names: the accuracy columns, the `lat_*` and `rob_*` columns, and
    `<dataset>/<column>` of the NASLib subset (e.g. `cifar10/params`).

    Raises:
      DataError: unknown name, or its file is missing or malformed.
    """
    if name in ACCURACY_COLUMNS:
      return self._accuracy[name]
    if name.startswith("lat_"):
      table = self._latency
    elif name.startswith("rob_"):
      table = self._robustness
    elif "/" in name:
      table = self._zc_subset
    else:
      table = {}
    if name not in table:
      raise DataError(f"unknown NB201 metric {name!r}; e.g. {', '.join(ACCURACY_COLUMNS)}, "
                      "lat_<device>, rob_cifar10_clean, cifar10/params")
    return table[name]

  def best(self, name: str) -> tuple[int, float]:
    """(cell code, value) of the best cell for `name`.

    Ties go to the lowest official index: the source has exact ties (CIFAR-10's best,
    94.3733, is shared by indices 6111 and 13714), and a deterministic winner keeps
    reports comparable with NB201's.
    """
    values = self.metric(name)
    top = np.flatnonzero(values == np.nanmax(values))
    code = int(top[np.argmin(self.nb201_index[top])])
    return code, float(values[code])

  def file_values(self, genes: np.ndarray) -> list[list]:
    """Per column of `FILE_COLUMNS`, each arch's value (host lists, accuracies to 4 dp)."""
    codes = np.asarray(nb201_space.code_of_genes(np.asarray(genes)))
    return [self.nb201_index[codes].tolist()] + [
        np.round(self.metric(c)[codes].astype(np.float64), 4).tolist()
        for c in ACCURACY_COLUMNS]

  def lookup(self, name: str, genes) -> jax.Array:
    """`name` of each cell in `genes int[..., 6]`: one gather, jit-able in `genes`."""
    return jnp.asarray(self.metric(name))[nb201_space.code_of_genes(jnp.asarray(genes))]
