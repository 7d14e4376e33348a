"""Padded batch sizes: powers of two, the rows kept in place, zeros after them."""

import numpy as np
import pytest

from pnag_jax import padding


@pytest.mark.parametrize("n, want", [(0, 1), (1, 1), (2, 2), (3, 4), (1024, 1024),
                                     (1025, 2048)])
def test_pow2_at_least(n, want):
  assert padding.pow2_at_least(n) == want


@pytest.mark.parametrize("n, minimum, want", [(0, 8, 8), (3, 1, 4), (5, 8, 8), (9, 8, 16)])
def test_pad_rows_keeps_the_rows_and_appends_zeros(n, minimum, want):
  rows = np.arange(1, 2 * n + 1, dtype=np.int32).reshape(n, 2)
  padded = padding.pad_rows(rows, minimum)
  assert padded.shape == (want, 2) and padded.dtype == np.int32
  np.testing.assert_array_equal(padded[:n], rows)
  assert not padded[n:].any()
