"""Stage 2's task vector: one function for training banks and users' references."""

import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2
from pnag_jax.stages import surrogate as surrogate_stage


def test_the_task_vector_reads_higher_is_better(nb201_surrogate):
  srun = surrogate_stage.load(nb201_surrogate[0])
  genes = get_space("nb201").enumerate()[:7]
  lat = np.linspace(1.0, 2.0, 7)
  minimized = stage2.task_condition(srun, genes, lat, minimize=True, target=0.9)
  # A minimized latency is the maximized negative latency: one and the same task.
  np.testing.assert_allclose(
      minimized, stage2.task_condition(srun, genes, -lat, minimize=False, target=0.9))
  assert minimized.shape == (srun.cfg.task_dim + 1,) and minimized[-1] == np.float32(0.9)
  with pytest.raises(PnagError, match="--target must be a quantile"):
    stage2.task_condition(srun, genes, lat, minimize=True, target=1.5)
