"""Fixtures for the generation tests: small, untrained stage-1 models.

Untrained weights are enough for everything that is exact algebra or bookkeeping
(fused vs unfused, determinism, sharding, sampling); quality thresholds live in the
end-to-end tests, which train.
"""

from pathlib import Path

import numpy as np
import pytest

from pnag_jax.configs.stage1 import make_config
from pnag_jax.generation.loading import TrainedStage1
from pnag_jax.generation.priors import fit_priors
from pnag_jax.spaces import get_space
from pnag_jax.training import stage1


def untrained(space: str, tmp: Path, **overrides) -> TrainedStage1:
  cfg = make_config("quick", space, 0, [f"{k}={v}" for k, v in overrides.items()])
  m, params = stage1.build_model(get_space(space), cfg)
  return TrainedStage1(m, params, 0, tmp)


@pytest.fixture(scope="module")
def nb201_model(tmp_path_factory):
  return untrained("nb201", tmp_path_factory.mktemp("nb201"))


@pytest.fixture(scope="module")
def nb201_priors(nb201_model):
  genes = np.asarray(nb201_model.space.enumerate()[::7])
  return fit_priors(nb201_model, genes)
