"""The feedback walk: one pick at a time, each handed back as a reference."""

import functools
import itertools

import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.guidance import feedback, rank
from pnag_jax.spaces import get_space

SPACE = get_space("nb201")
GENES = SPACE.enumerate()
# A task with a known ranking: the number of 3x3 convs, then 1x1s, then the index.
TRUTH = ((GENES == 3).sum(1) * 100 + (GENES == 2).sum(1) * 10
         + np.arange(len(GENES)) / len(GENES)).astype(np.float64)


class _Scored:

  def __init__(self, fn):
    self.fn = fn

  def scores(self, genes):
    return self.fn(np.asarray(genes))


class _Recorder:
  """A binder that is wrong until it is fed back: it records what each bind was given.

  Bound to the first 3 references it predicts the reverse of the truth; bound to more
  (a pick handed back), the truth. That is the behaviour feedback exists for.
  """

  def __init__(self):
    self.calls = []

  def __call__(self, genes, scores):
    self.calls.append((np.array(genes), np.array(scores)))
    learned = len(genes) > 3

    def fn(g):
      t = _truth(g)
      return t if learned else -t
    return _Scored(fn)


@functools.cache
def _valid():
  """Strictly valid cells, one per isomorphism class: what `rank.candidates` expects.

  Built on first use, not at import: every xdist worker collects this module.
  """
  every = rank.enumerate_pool(SPACE)[0]
  return every[rank.first_of_each_class(SPACE, every)]


def _truth(genes):
  return TRUTH[np.asarray(SPACE.index(genes))]


def _measure(g):
  return float(_truth(g[None])[0])


def test_each_pick_is_handed_back_before_the_next_is_chosen():
  pool = _valid()[np.random.default_rng(0).choice(len(_valid()), 400, replace=False)]
  refs = _valid()[:3]
  bind = _Recorder()
  w = feedback.walk(SPACE, bind, pool, ref_genes=refs, ref_scores=_truth(refs),
                    measure=_measure, budget=4)
  assert len(w.genes) == 4 and len(bind.calls) == 4
  for i, (genes, scores) in enumerate(bind.calls):
    # The references, then every earlier pick with what it measured.
    np.testing.assert_array_equal(genes, np.concatenate([refs, w.genes[:i]]))
    np.testing.assert_array_equal(scores, np.concatenate([_truth(refs), w.measured[:i]]))
  np.testing.assert_array_equal(w.measured, [_measure(g) for g in w.genes])
  cand, _ = rank.candidates(SPACE, pool, ref_genes=refs)
  truth = _truth(cand)
  # The first bind (3 refs) believes the reverse; from the second on (>3), the table.
  assert w.measured[0] == truth.min()
  assert list(w.measured[1:]) == sorted(truth, reverse=True)[:3]
  # One per class, none a reference's class, all from the pool's candidates.
  keys = [tuple(k) for k in rank.iso_keys(SPACE, w.genes).tolist()]
  cand_keys = {tuple(k) for k in rank.iso_keys(SPACE, cand).tolist()}
  assert len(set(keys)) == 4 and set(keys) <= cand_keys
  assert w.candidates == len(cand)


def test_first_pick_is_the_one_shot_rankings_and_minimize_flips_it():
  pool = _valid()[::37]
  refs = _valid()[1:6]
  def nan_at_the_ends(g):
    # A score with a NaN where either direction's best would be: never picked first.
    t = _truth(g)
    return np.where((t == _truth(pool).max()) | (t == _truth(pool).min()), np.nan, t)

  cand, _ = rank.candidates(SPACE, pool, ref_genes=refs)
  firsts = {}
  for minimize, fn in itertools.product((False, True), (_truth, nan_at_the_ends)):
    bind = lambda g, s, fn=fn: _Scored(fn)  # noqa: E731
    w = feedback.walk(SPACE, bind, pool, ref_genes=refs, ref_scores=_truth(refs),
                      measure=_measure, budget=1, minimize=minimize)
    one_shot = rank.guided(SPACE, bind(refs, None), pool, len(pool), k=1,
                           minimize=minimize, ref_genes=refs)
    np.testing.assert_array_equal(w.genes, one_shot.genes)
    np.testing.assert_allclose(w.predicted, one_shot.scores)
    # Agreeing is not enough: both could ignore the direction. The known scorer's
    # best by the task's direction, NaN never best.
    scores = fn(cand)
    best = np.nanargmin(scores) if minimize else np.nanargmax(scores)
    np.testing.assert_array_equal(w.genes, cand[best][None])
    firsts[minimize, fn] = tuple(w.genes[0])
  for fn in (_truth, nan_at_the_ends):
    assert firsts[False, fn] != firsts[True, fn]


def test_stop_budget_and_an_exhausted_pool_end_the_walk():
  pool, ref = _valid()[1::200], _valid()[:1]
  bind = lambda g, s: _Scored(_truth)  # noqa: E731
  target = np.sort(_truth(pool))[-3]
  w = feedback.walk(SPACE, bind, pool, ref_genes=ref, ref_scores=_truth(ref),
                    measure=_measure, budget=50, stop=lambda v: v == target)
  assert len(w.genes) == 3 and w.measured[-1] == target
  w = feedback.walk(SPACE, bind, pool, ref_genes=ref, ref_scores=_truth(ref),
                    measure=_measure, budget=0)
  assert w.genes.shape == (0, SPACE.num_genes)
  # Every candidate trained once, best first, and then the walk stops on its own.
  w = feedback.walk(SPACE, bind, pool, ref_genes=ref, ref_scores=_truth(ref),
                    measure=_measure, budget=10_000)
  assert len(w.genes) == w.candidates == len(pool)
  np.testing.assert_array_equal(w.measured, np.sort(_truth(pool))[::-1])


def test_bad_budget_and_non_finite_measurements_are_one_line_errors():
  bind = lambda g, s: _Scored(lambda q: np.zeros(len(q)))  # noqa: E731
  with pytest.raises(PnagError, match="budget must be >= 0"):
    feedback.walk(SPACE, bind, _valid()[1:10], ref_genes=_valid()[:1], ref_scores=[1.0],
                  measure=_measure, budget=-1)
  with pytest.raises(PnagError, match=r"measuring \|.*\| gave nan; a reference needs a "
                                      "finite score"):
    feedback.walk(SPACE, bind, _valid()[100:110], ref_genes=_valid()[:1], ref_scores=[1.0],
                  measure=lambda g: float("nan"), budget=3)
