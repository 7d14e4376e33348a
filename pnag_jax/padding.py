"""Padding batches to a few sizes, so that a handful of compiles serve every call.

A jitted function compiles once per input shape. Callers whose batch sizes vary (the
candidates of a search round, the references of a task) pad to the next power of two
and drop the padded rows' outputs.
"""

from __future__ import annotations

import numpy as np


def pow2_at_least(n: int) -> int:
  """The least power of two >= n."""
  return 1 << max(0, n - 1).bit_length()


def pad_rows(rows: np.ndarray, minimum: int = 1) -> np.ndarray:
  """`rows` with zero rows appended up to a power of two of at least `minimum`.

  Zero is a valid gene index in every space, so padded gene rows score like any arch.
  """
  rows = np.asarray(rows)
  size = max(minimum, pow2_at_least(len(rows)))
  return np.concatenate([rows, np.zeros((size - len(rows), *rows.shape[1:]), rows.dtype)])
