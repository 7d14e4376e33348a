"""The linear prior: padding invariance, transfer of an additive cost, evidence, the jitted path."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from pnag_jax.guidance.rank import first_of_each_class
from pnag_jax.models import linear_prior as linear_lib
from pnag_jax.spaces import get_space
from pnag_jax.stages import surrogate as stage

SPACE = get_space("nb201")
GENES = SPACE.enumerate()


# Built on first use, not at import: every xdist worker collects this module.
@functools.cache
def _reps():
  return first_of_each_class(SPACE, GENES)


@functools.cache
def _feats():
  return np.asarray(linear_lib.features(SPACE, GENES))


def _cost_family(seed: int, n: int) -> list[np.ndarray]:
  """n additive costs that share structure, as devices do: a common per-op cost, three
  directions of variation between tasks, and small measurement noise."""
  rng = np.random.default_rng(seed)
  base = rng.normal(size=_feats().shape[1])
  basis = rng.normal(size=(3, _feats().shape[1]))
  return [_feats() @ (base + rng.normal(size=3) @ basis) + rng.normal(scale=0.3, size=len(GENES))
          for _ in range(n)]


def test_features_are_a_bias_and_one_hots():
  assert _feats().shape == (15625, linear_lib.num_features(SPACE)) == (15625, 31)
  assert (_feats()[:, 0] == 1).all() and (_feats()[:, 1:].sum(1) == SPACE.num_genes).all()


def _tied_family(seed: int, n: int) -> list[np.ndarray]:
  """n costs in which an op costs the same on every edge (as NB201's latencies do):
  shared per-op costs, two directions of variation between tasks, and noise."""
  rng = np.random.default_rng(seed)
  counts = _feats() @ linear_lib.tie_map(SPACE)
  base, basis = rng.normal(size=counts.shape[1]), rng.normal(size=(2, counts.shape[1]))
  return [counts @ (base + rng.normal(size=2) @ basis) + rng.normal(scale=0.3, size=len(GENES))
          for _ in range(n)]


def test_the_tie_map_turns_one_hots_into_op_counts():
  m = linear_lib.tie_map(SPACE)
  assert m.shape == (31, 6)
  counts = _feats() @ m
  assert (counts[:, 0] == 1).all()
  np.testing.assert_array_equal(counts[:, 1:], np.stack([(GENES == o).sum(1) for o in range(5)], 1))


@pytest.mark.parametrize("tied_wins", [True, False])
def test_the_evidence_weighs_the_tied_hypothesis(tied_wins):
  # Seen tasks of both kinds, more of them untied, as NB201's accuracy and robustness
  # columns outnumber its latencies; the target is a new one of either kind.
  *tied_seen, tied_target = _tied_family(9, 7)
  *untied_seen, untied_target = _cost_family(10, 13)
  prior = linear_lib.fit_prior(SPACE, [(GENES, s) for s in tied_seen + untied_seen])
  target = tied_target if tied_wins else untied_target
  untied = {k: prior[k] for k in ("mean", "cov", "tasks")}
  shares, rho, rho_untied = [], [], []
  reps = _reps()
  for s in range(4):
    refs = np.random.default_rng([s, 11]).choice(len(GENES), 10, replace=False)
    both = stage.linear_predictor(SPACE, prior, GENES[refs], target[refs])
    alone = stage.linear_predictor(SPACE, untied, GENES[refs], target[refs])
    assert alone.tied == 0.0
    shares.append(both.tied)
    rho.append(scipy.stats.spearmanr(both.scores(GENES[reps]), target[reps]).statistic)
    rho_untied.append(scipy.stats.spearmanr(alone.scores(GENES[reps]), target[reps]).statistic)
  print(f"tied share {np.round(shares, 3)}, Spearman {np.mean(rho):.3f} (untied alone "
        f"{np.mean(rho_untied):.3f})")
  if tied_wins:
    # 6 weights that 10 references pin down, against 31 that they cannot.
    assert min(shares) > 0.5 and np.mean(rho) > np.mean(rho_untied)
  else:
    assert max(shares) < 0.1 and np.mean(rho) > np.mean(rho_untied) - 0.01


def test_posterior_is_the_same_for_any_padding():
  prior = {k: jnp.asarray(v) for k, v in linear_lib.fit_prior(
      SPACE, [(GENES, s) for s in _cost_family(0, 6)]).items() if k != "tasks"}
  refs = np.random.default_rng(1).choice(len(GENES), 7, replace=False)
  z = jnp.asarray(np.random.default_rng(2).normal(size=7), jnp.float32)
  w, noise, tied = linear_lib.posterior(prior, _feats()[refs], z, jnp.ones(7, bool))
  junk = np.random.default_rng(3).choice(len(GENES), 5, replace=False)
  padded_feats = np.concatenate([_feats()[refs], _feats()[junk]])
  padded_z = jnp.concatenate([z, jnp.full((5,), 9.0)])
  w2, noise2, tied2 = linear_lib.posterior(prior, padded_feats, padded_z,
                                           jnp.arange(12) < 7)
  np.testing.assert_allclose(w2, w, rtol=1e-4, atol=1e-5)
  assert float(noise2) == float(noise)
  np.testing.assert_allclose(tied2, tied, rtol=1e-4, atol=1e-6)


def test_the_learned_prior_ranks_an_unseen_cost_from_10_references():
  *seen, target = _cost_family(4, 21)
  prior = linear_lib.fit_prior(SPACE, [(GENES, s) for s in seen])
  assert int(prior["tasks"]) == 20
  # A prior that knows nothing of the seen tasks: zero mean, isotropic.
  flat = {"mean": np.zeros(31, np.float32), "cov": np.eye(31, dtype=np.float32),
          "tasks": prior["tasks"]}
  rho, rho_flat = [], []
  reps = _reps()
  for s in range(3):
    refs = np.random.default_rng([s, 10]).choice(len(GENES), 10, replace=False)
    for p, out in ((prior, rho), (flat, rho_flat)):
      pred = stage.linear_predictor(SPACE, p, GENES[refs], target[refs]).scores(GENES[reps])
      out.append(scipy.stats.spearmanr(pred, target[reps]).statistic)
  print(f"Spearman, K=10: learned prior {np.mean(rho):.3f}, flat prior {np.mean(rho_flat):.3f}")
  assert np.mean(rho) > 0.9, rho
  assert np.mean(rho) > np.mean(rho_flat) + 0.1, (rho, rho_flat)


def test_the_evidence_chooses_the_noise():
  *seen, exact = _cost_family(5, 9)
  prior = linear_lib.fit_prior(SPACE, [(GENES, s) for s in seen])
  refs = np.random.default_rng(0).choice(len(GENES), 16, replace=False)
  fitted = stage.linear_predictor(SPACE, prior, GENES[refs], exact[refs])
  noise = np.random.default_rng(1).normal(size=16)
  unexplained = stage.linear_predictor(SPACE, prior, GENES[refs], noise)
  assert fitted.noise <= 0.1 < unexplained.noise, (fitted.noise, unexplained.noise)
  # In the task's units, and exact where the model is: predictions of the references
  # recover them (un-standardised with their mean and std).
  back = fitted.scores(GENES[refs])
  assert scipy.stats.spearmanr(back, exact[refs]).statistic > 0.95
  assert abs(back.mean() - exact[refs].mean()) < 0.2 * exact[refs].std()


def test_scores_are_chunked_and_padded_without_changing_them():
  *seen, target = _cost_family(6, 5)
  prior = linear_lib.fit_prior(SPACE, [(GENES, s) for s in seen])
  pred = stage.linear_predictor(SPACE, prior, GENES[:10], target[:10])
  every = pred.scores(GENES[:3000], chunk=256)
  np.testing.assert_allclose(pred.scores(GENES[:3000], chunk=1024), every, rtol=1e-5)
  w = np.asarray(pred.task["w"], np.float64)
  direct = _feats()[:3000] @ w * float(pred.task["std"]) + float(pred.task["mean"])
  np.testing.assert_allclose(every, direct, rtol=1e-4, atol=1e-3)
  assert pred.scores(GENES[:0]).shape == (0,)


def test_a_prior_needs_two_usable_tasks():
  flat = np.ones(len(GENES))
  with pytest.raises(ValueError, match="at least 2 tasks"):
    linear_lib.fit_prior(SPACE, [(GENES, _cost_family(7, 1)[0]), (GENES, flat),
                                 (GENES[:20], np.arange(20.0))])
  assert linear_lib.usable_tasks([(GENES, flat), (GENES[:20], np.arange(20.0))]) == 0


def test_posterior_under_jit_and_vmap_matches_one_by_one():
  prior = {k: jnp.asarray(v) for k, v in linear_lib.fit_prior(
      SPACE, [(GENES, s) for s in _cost_family(8, 4)]).items() if k != "tasks"}
  refs = np.random.default_rng(0).choice(len(GENES), (3, 8), replace=False)
  z = jnp.asarray(np.random.default_rng(1).normal(size=(3, 8)), jnp.float32)
  batched = jax.jit(jax.vmap(lambda f, y: linear_lib.posterior(prior, f, y, jnp.ones(8, bool))))
  w, noise, tied = batched(_feats()[refs], z)
  for i in range(3):
    wi, ni, ti = linear_lib.posterior(prior, _feats()[refs[i]], z[i], jnp.ones(8, bool))
    np.testing.assert_allclose(w[i], wi, rtol=1e-4, atol=1e-5)
    assert float(noise[i]) == float(ni)
    np.testing.assert_allclose(tied[i], ti, rtol=1e-4, atol=1e-6)
