"""The surrogate's set functions, with and without the ridge head and the task spread:
invariant to reference order and to padding (jitted)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.models.surrogate import LOG_SPREAD_RANGE, log_spread, ridge_fit, standardise
from pnag_jax.spaces import get_space
from pnag_jax.stages import surrogate as stage


VARIANTS = {"attention": ["ridge=false"], "ridge": ["ridge=true"],
            "ridge_spread": ["ridge=true", "task_spread=true"]}


@pytest.fixture(scope="module", params=list(VARIANTS))
def model_params(request):
  cfg = stage.make_config("test", "nb201", 0, overrides=VARIANTS[request.param])
  return cfg, *stage.init(cfg)


def test_no_parameter_is_weakly_typed(model_params):
  # A weak-typed leaf comes back strong from the first optimizer step, so the jitted
  # train step would compile twice on every fresh run.
  _, _, params = model_params
  weak = [jax.tree_util.keystr(p) for p, leaf in jax.tree_util.tree_leaves_with_path(params)
          if getattr(leaf, "weak_type", False)]
  assert not weak, weak


@jax.jit
def _standardise(scores, mask):
  return standardise(scores, mask)


def test_standardise_ignores_padding_and_survives_one_reference():
  z, mean, std = _standardise(jnp.array([1.0, 3.0, 99.0]), jnp.array([True, True, False]))
  np.testing.assert_allclose(z, [-1.0, 1.0, 0.0])
  assert float(mean) == 2.0 and float(std) == 1.0
  z, mean, std = _standardise(jnp.array([5.0, 0.0]), jnp.array([True, False]))
  assert float(z[0]) == 0.0 and float(mean) == 5.0 and float(std) == 1.0


@pytest.mark.parametrize("value, k", [(91.52, 7), (91.52, 20), (3.1e8, 10), (0.9152, 7)])
def test_equal_scores_have_no_spread_whatever_their_size(value, k):
  # Their float32 mean is off by an ulp above a mean of about 8: the std about it is
  # rounding noise, which must not turn the z-scores into +-1.
  scores = jnp.concatenate([jnp.full((k,), value, jnp.float32), jnp.array([1.0, -7.0])])
  mask = jnp.arange(k + 2) < k
  z, _, std = _standardise(scores, mask)
  assert float(std) == 1.0
  np.testing.assert_allclose(z, 0.0, atol=1e-6 * value)


def test_log_spread_is_unit_free_and_ignores_padding():
  spread = jax.jit(log_spread)
  mask = jnp.array([True, True, False])
  got = float(spread(jnp.array([1.0, 3.0, 1e6]), mask))
  np.testing.assert_allclose(got, np.log(0.5), rtol=1e-6)   # std 1 over mean 2
  # Any unit, either sign: the same spread. An offset is another task.
  np.testing.assert_allclose(float(spread(jnp.array([-1e3, -3e3, 7.0]), mask)), got, rtol=1e-5)
  assert abs(float(spread(jnp.array([101.0, 103.0, 0.0]), mask)) - got) > 3
  # One reference has no spread, and a zero mean no finite one: both are clipped.
  assert float(spread(jnp.array([5.0, 0.0]), jnp.array([True, False]))) == LOG_SPREAD_RANGE[0]
  assert float(spread(jnp.array([-1.0, 1.0]), jnp.array([True, True]))) == LOG_SPREAD_RANGE[1]


def test_ridge_fit_is_the_primal_solution_whatever_the_padding():
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(12, 20)).astype(np.float32)
  z = rng.normal(size=12).astype(np.float32)
  mask = np.arange(12) < 7
  # The primal (X^T X + lam I) w = X^T z over the 7 real rows, in float64.
  x, y = feats[:7].astype(np.float64), z[:7].astype(np.float64)
  want = np.linalg.solve(x.T @ x + 0.5 * np.eye(20), x.T @ y)
  fit = jax.jit(ridge_fit)
  np.testing.assert_allclose(fit(feats, z, mask, 0.5), want, rtol=1e-4, atol=1e-5)
  # Junk behind the mask, however large, changes nothing.
  junk = feats.copy()
  junk[7:] *= 1e3
  np.testing.assert_allclose(fit(junk, np.where(mask, z, 1e3), mask, 0.5), want,
                             rtol=1e-4, atol=1e-5)


def test_predictions_are_invariant_to_reference_order_and_padding(model_params):
  _, model, params = model_params
  space = get_space("nb201")
  genes = space.enumerate()
  rng = np.random.default_rng(0)
  refs = genes[rng.choice(len(genes), 7, replace=False)]
  scores = rng.normal(size=7).astype(np.float32)
  queries = genes[rng.choice(len(genes), 64, replace=False)]
  base = stage.predictor(model, params, refs, scores)
  want = base.scores(queries, chunk=64)
  perm = rng.permutation(7)
  permuted = stage.predictor(model, params, refs[perm], scores[perm])
  np.testing.assert_allclose(permuted.scores(queries, chunk=64), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(permuted.embedding, base.embedding, rtol=1e-5, atol=1e-6)
  # K = 7 is padded to 8 inside `predictor`; pad explicitly to 32 with junk archs and
  # scores behind the mask: nothing may change.
  junk = genes[rng.choice(len(genes), 25)]
  padded = stage.task_state(params, np.concatenate([refs, junk]),
                            np.concatenate([scores, rng.normal(size=25).astype(np.float32) * 1e3]),
                            np.arange(32) < 7, model=model)
  got = stage.Predictor(model, params, padded).scores(queries, chunk=64)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # And the references do matter: other scores, other predictions.
  other = stage.predictor(model, params, refs, -scores).scores(queries, chunk=64)
  assert not np.allclose(other, want)


def test_predictions_are_in_the_references_units(model_params):
  """Affine maps of the reference scores map the predictions alike; with the task
  spread, a change of unit does, and an offset is another task."""
  cfg, model, params = model_params
  genes = get_space("nb201").enumerate()
  refs, queries = genes[:5], genes[100:132]
  scores = np.array([60.0, 70.0, 65.0, 72.0, 50.0], np.float32)
  a = stage.predictor(model, params, refs, scores).scores(queries, chunk=32)
  # Any unit float32 holds: a rescale maps the predictions alike, whatever its size.
  for scale in (10.0, 1e-9, 1e15):
    b = stage.predictor(model, params, refs, scale * scores).scores(queries, chunk=32)
    np.testing.assert_allclose(b, scale * a, rtol=1e-4)
  with pytest.raises(stage.PnagError, match="rescale the task's unit"):
    stage.predictor(model, params, refs, 1e19 * scores)
  shifted = stage.predictor(model, params, refs, scores + 30)
  c = shifted.scores(queries, chunk=32)
  if cfg.task_spread:
    assert not np.allclose(c, a + 30, rtol=1e-4)
  else:
    np.testing.assert_allclose(c, a + 30, rtol=1e-4)


def test_scores_float32_cannot_hold_are_refused(model_params):
  _, model, params = model_params
  genes = get_space("nb201").enumerate()
  # The magnitude bound shrinks with K: 1000 squared deviations of 1.8e18 overflow
  # float32, though 5 of them would not.
  big = np.where(np.arange(1000) % 2, 9e17, -9e17)
  stage.predictor(model, params, genes[:5], big[:5])
  with pytest.raises(stage.PnagError, match="for 1000 references.*rescale the task's unit"):
    stage.predictor(model, params, genes[:1000], big)
  # A user's measured scores must differ where float32 can tell.
  for fine in ([1e8, 1e8 + 1, 1e8], [3e-30, 1e-30, 2e-30]):
    with pytest.raises(stage.PnagError, match="finer than the surrogate's float32"):
      stage.check_resolution(np.asarray(fine))
  for fine_enough in ([93.40, 93.41], [5.0, 5.0], [2e-9, 3e-9], [-1e8, 1e8]):
    stage.check_resolution(np.asarray(fine_enough))
