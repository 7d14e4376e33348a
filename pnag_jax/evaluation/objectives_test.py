"""Table 5's measured cells: each objective and seed draws its own, reproducibly."""

import numpy as np

from pnag_jax.evaluation import objectives


def test_each_objective_and_seed_measures_its_own_cells():
  draws = {(s, o): objectives.measured_rows(15625, s, o, 50)
           for s in (0, 1) for o in objectives.OBJECTIVES}
  for rows in draws.values():
    assert len(np.unique(rows)) == 50 and 0 <= rows.min() and rows.max() < 15625
  keys = list(draws)
  for i, a in enumerate(keys):
    for b in keys[i + 1:]:
      # Two uniform draws of 50 of 15,625 share about 0.16 cells; equal ones share 50.
      assert len(np.intersect1d(draws[a], draws[b])) < 5, (a, b)
  np.testing.assert_array_equal(objectives.measured_rows(15625, 0, "apgd", 50),
                                draws[0, "apgd"])
