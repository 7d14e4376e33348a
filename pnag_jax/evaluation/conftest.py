"""Fixtures of the evaluation protocols' tests (the suite's shared ones are in ../../conftest.py)."""

import pytest


@pytest.fixture(scope="session")
def mbv3_r_workdir(untrained_run, stage1_saver, tmp_path_factory):
  """A workdir holding an untrained mbv3_r run as its stage-1 checkpoint (step 0): what
  `pnag eval ofa` takes, and what the NB201 protocols must refuse."""
  workdir = tmp_path_factory.mktemp("mbv3_r_workdir")
  return stage1_saver(untrained_run("mbv3_r", workdir), workdir)
