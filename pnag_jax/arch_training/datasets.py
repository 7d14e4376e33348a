"""Image classification datasets for `pnag train-arch`, as host NumPy arrays.

* `digits`: scikit-learn's 8x8 handwritten digits (1,797 real images, shipped with the
  library), split 80/20, stratified, with a fixed seed;
* `npz:PATH`: a NumPy archive with `x_train, y_train, x_test, y_test`;
* `cifar10:DIR`: the standard `cifar-10-batches-py` pickles (`data_batch_1..5`,
  `test_batch`), DIR being that folder or its parent.

Images come back as float32 NHWC, standardised per channel with the training set's
statistics, and are zero-padded up to the network's minimum input size (padding keeps
the digits' pixels exact; resizing would blur 8x8 strokes).
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import numpy as np

from pnag_jax.errors import DataError, PnagError

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  x_train: np.ndarray   # float32[N, H, W, C]
  y_train: np.ndarray   # int32[N]
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _digits() -> tuple[np.ndarray, ...]:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  d = load_digits()
  x = d.images.astype(np.float32)[..., None] / 16.0
  y = d.target.astype(np.int32)
  return tuple(train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, stratify=y,
                                random_state=DIGITS_SPLIT_SEED))  # x_tr, x_te, y_tr, y_te


def _npz(path: Path) -> tuple[np.ndarray, ...]:
  if not path.is_file():
    raise DataError(f"npz dataset {path} does not exist")
  try:
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
      # A .npy loads as one bare array: there are no named splits to read.
      raise DataError(f"npz dataset {path} is a single array (.npy), not an .npz archive "
                      "of x_train, y_train, x_test, y_test")
    with z:
      missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
      if missing:
        raise DataError(f"npz dataset {path} lacks {', '.join(missing)}")
      x_tr, y_tr, x_te, y_te = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
  except DataError:
    raise
  # zipfile's own errors: a truncated or bit-flipped archive (BadZipFile, a member's
  # CRC), or header bytes that read as a compression or version it lacks; and a member
  # header claiming a shape larger than memory.
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError,
          MemoryError) as e:
    raise DataError(f"cannot read npz dataset {path}: {type(e).__name__}") from e
  return x_tr, x_te, y_tr, y_te


def _cifar10(root: Path) -> tuple[np.ndarray, ...]:
  d = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
  names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
  missing = [n for n in names if not (d / n).is_file()]
  if missing:
    raise DataError(f"cifar10 directory {d} lacks {', '.join(missing)} "
                    "(expected the cifar-10-batches-py pickles)")
  parts = []
  for n in names:
    try:
      with open(d / n, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
      data = np.asarray(batch[b"data"], np.uint8)
      labels = np.asarray(batch[b"labels"], np.int64)
    # A corrupt pickle is a program of arbitrary opcodes: besides UnpicklingError it
    # raises what the opcodes it reads do (an overflowing frame length, a global that
    # no module has, a huge allocation), so every error reading it is the file's.
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise DataError(f"corrupt CIFAR-10 batch {d / n}: {type(e).__name__}") from e
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
      raise DataError(f"CIFAR-10 batch {d / n}: data {data.shape} and labels "
                      f"{labels.shape} do not fit N x 3072 and N")
    # Rows are channel-major 3x32x32 (the format's definition); to NHWC.
    parts.append((data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels))
  x_tr = np.concatenate([p[0] for p in parts[:-1]])
  y_tr = np.concatenate([p[1] for p in parts[:-1]])
  return x_tr, parts[-1][0], y_tr, parts[-1][1]


#: The largest class id: a classifier of more classes would not fit in memory anyway.
MAX_LABEL = 1_000_000


def _checked(name, x_tr, x_te, y_tr, y_te) -> tuple[np.ndarray, ...]:
  x_tr, x_te = np.asarray(x_tr), np.asarray(x_te)
  y_tr, y_te = np.asarray(y_tr), np.asarray(y_te)
  if x_tr.ndim == 3:
    x_tr, x_te = x_tr[..., None], x_te[..., None]
  if x_tr.ndim != 4 or x_te.ndim != 4 or x_tr.shape[1:] != x_te.shape[1:]:
    raise DataError(f"{name}: images must be [N, H, W] or [N, H, W, C] with equal H, W, C "
                    f"in train and test, got {x_tr.shape} and {x_te.shape}")
  if 0 in x_tr.shape[1:]:
    raise DataError(f"{name}: images have no pixels (H, W, C = {x_tr.shape[1:]})")
  if y_tr.ndim != 1 or y_te.ndim != 1 or len(y_tr) != len(x_tr) or len(y_te) != len(x_te):
    raise DataError(f"{name}: labels must be [N] matching the images, got {y_tr.shape} for "
                    f"{x_tr.shape[0]} train and {y_te.shape} for {x_te.shape[0]} test images")
  if not (np.issubdtype(y_tr.dtype, np.integer) and np.issubdtype(y_te.dtype, np.integer)):
    raise DataError(f"{name}: labels must be integers, got {y_tr.dtype}/{y_te.dtype}")
  if len(y_tr) == 0 or len(y_te) == 0:
    raise DataError(f"{name}: empty train or test split")
  if min(y_tr.min(), y_te.min()) < 0:
    raise DataError(f"{name}: negative labels")
  # A class id is a row of the classifier: past int32 it would wrap into another class.
  if max(y_tr.max(), y_te.max()) > MAX_LABEL:
    raise DataError(f"{name}: labels must be class ids up to {MAX_LABEL:,}, got "
                    f"{max(y_tr.max(), y_te.max()):,}")
  # Kinds b, i, u, f: what standardising can read (not complex, strings or objects).
  if x_tr.dtype.kind not in "biuf" or x_te.dtype.kind not in "biuf":
    raise DataError(f"{name}: images must be real numbers, got {x_tr.dtype}/{x_te.dtype}")
  if not (np.isfinite(x_tr).all() and np.isfinite(x_te).all()):
    raise DataError(f"{name}: images hold NaN or infinite values")
  return x_tr, x_te, y_tr.astype(np.int32), y_te.astype(np.int32)


def _pad_to(x: np.ndarray, size: int) -> np.ndarray:
  h, w = x.shape[1:3]
  if h >= size and w >= size:
    return x
  ph, pw = max(size - h, 0), max(size - w, 0)
  return np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def load_dataset(spec: str, *, min_size: int = 1) -> Dataset:
  """Loads `digits`, `npz:PATH` or `cifar10:DIR` (see the module docstring).

  Raises:
    PnagError: an unknown dataset name.
    DataError: a missing or malformed file.
  """
  kind, _, arg = spec.partition(":")
  if kind == "digits" and not arg:
    raw = _digits()
  elif kind == "npz" and arg:
    raw = _npz(Path(arg))
  elif kind == "cifar10" and arg:
    raw = _cifar10(Path(arg))
  else:
    raise PnagError(f"unknown dataset {spec!r}; use digits, npz:PATH or cifar10:DIR")
  x_tr, x_te, y_tr, y_te = _checked(spec, *raw)
  x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
  mean = x_tr.mean(axis=(0, 1, 2), keepdims=True)
  std = x_tr.std(axis=(0, 1, 2), keepdims=True) + 1e-6
  x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
  x_tr, x_te = _pad_to(x_tr, min_size), _pad_to(x_te, min_size)
  num_classes = int(max(y_tr.max(), y_te.max())) + 1
  return Dataset(spec, x_tr, y_tr, x_te, y_te, num_classes)


def write_cifar10_batches(directory: str | Path, x_train: np.ndarray, y_train: np.ndarray,
                          x_test: np.ndarray, y_test: np.ndarray) -> Path:
  """Writes arrays in the exact `cifar-10-batches-py` pickle format (for tests and tools).

  `x_*` are uint8 NHWC [N, 32, 32, 3]; training rows are spread over the 5 batches.
  """
  d = Path(directory) / "cifar-10-batches-py"
  d.mkdir(parents=True, exist_ok=True)
  def dump(name, x, y):
    rows = np.asarray(x, np.uint8).transpose(0, 3, 1, 2).reshape(len(x), 3072)
    with open(d / name, "wb") as f:
      pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                   b"data": rows, b"filenames": [b"img%d.png" % i for i in range(len(x))]}, f)
  for i, (xs, ys) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5))):
    dump(f"data_batch_{i + 1}", xs, ys)
  dump("test_batch", x_test, y_test)
  return d
