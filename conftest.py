"""Test-wide setup: 8 fake CPU devices, so sharding code runs as on a real mesh.

This must run before JAX initialises its backend, hence the root conftest.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


import csv  # pylint: disable=g-import-not-at-top,wrong-import-position
from pathlib import Path  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="session")
def data_dir() -> Path:
  """`$PNAG_DATA_DIR` (CI: ../shared/data); tests that need it fail loudly without it."""
  d = os.environ.get("PNAG_DATA_DIR")
  if not d:
    pytest.fail("PNAG_DATA_DIR is not set; point it at a directory holding nb201/")
  return Path(d)


@pytest.fixture(scope="session")
def nb201_rows(data_dir):
  with open(data_dir / "nb201" / "nb201_accuracy.csv", newline="") as f:
    return list(csv.DictReader(f))
