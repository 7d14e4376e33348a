"""Ranking's pool: one arch per isomorphism class, and the one kept is the first drawn
(the first drawn that meets every constraint)."""

import numpy as np

from pnag_jax import tasks as tasks_lib
from pnag_jax.guidance import constraints, rank
from pnag_jax.spaces import get_space

SPACE = get_space("nb201")
# Node 1 feeds nothing, so the op into it is dead: two gene vectors, one network.
DEAD_CONV3 = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
DEAD_CONV1 = "|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
# Two other classes, every node live.
DENSE = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|"
         "avg_pool_3x3~2|")
SPARSE = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_3x3~2|"


def test_the_first_drawn_member_of_a_class_is_kept():
  pool = SPACE.from_strings([DENSE, DEAD_CONV1, SPARSE, DEAD_CONV3, DENSE])
  keys = rank.iso_keys(SPACE, pool)
  # The premise: rows 1 and 3 differ as genes and are one class; the others are not.
  assert (keys[1] == keys[3]).all() and not (pool[1] == pool[3]).all()
  assert len({tuple(k) for k in keys.tolist()}) == 3
  np.testing.assert_array_equal(rank.first_of_each_class(SPACE, pool), [0, 1, 2])
  cand, unique = rank.candidates(SPACE, pool, ref_genes=pool[:0])
  assert unique == 3 and SPACE.to_strings(cand) == [DENSE, DEAD_CONV1, SPARSE]
  # Drawn the other way round, the other member stands for the class.
  cand, _ = rank.candidates(SPACE, pool[::-1], ref_genes=pool[:0])
  assert SPACE.to_strings(cand) == [DENSE, DEAD_CONV3, SPARSE]


def test_a_class_is_kept_by_its_first_member_that_meets_the_constraints():
  known = tasks_lib.builtin_tasks("nb201", None)  # params: a formula, no tables needed
  pool = SPACE.from_strings([DEAD_CONV3, DENSE, DEAD_CONV1])
  params = constraints.values(known["params"], SPACE, pool)
  # The premise: the dead conv is counted, so the class's members differ in params.
  assert params[0] > params[2]
  budget = constraints.Constraint("params", "<=", float(params[2]))
  cand, unique = rank.candidates(SPACE, pool, ref_genes=pool[:0], constraints=[budget],
                                 known=known)
  assert unique == 2
  expected = [s for s, p in zip([DEAD_CONV3, DENSE, DEAD_CONV1], params) if p <= params[2]]
  assert DEAD_CONV1 in expected and SPACE.to_strings(cand) == expected


def test_first_of_each_class_is_first_seen_over_a_random_pool():
  genes = SPACE.enumerate()
  # Drawn with replacement: repeats and isomorphic copies, in no order.
  pool = genes[np.random.default_rng(0).choice(len(genes), 3000)]
  first_seen = {}
  for row, key in enumerate(map(tuple, rank.iso_keys(SPACE, pool).tolist())):
    first_seen.setdefault(key, row)
  assert len(first_seen) < len(pool)
  np.testing.assert_array_equal(rank.first_of_each_class(SPACE, pool),
                                sorted(first_seen.values()))
