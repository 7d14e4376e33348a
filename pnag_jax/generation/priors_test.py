"""The prior plug-ins: the registry, the alias sampler, and a condition reaching `draw`."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation import priors
from pnag_jax.generation.sampler import Sampler, SamplerConfig


def _alias_distribution(accept, alias):
  v = accept.shape[1]
  out = accept.astype(np.float64).copy()
  for r in range(accept.shape[0]):
    np.add.at(out[r], alias[r], 1.0 - accept[r].astype(np.float64))
  return out / v


def test_alias_tables_reproduce_distribution_and_never_draw_zero_probability_codes():
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.full(64, 0.3), size=50)
  probs[:, rng.random((64,)) < 0.5] = 0.0  # many impossible codes, some at the end
  probs /= probs.sum(1, keepdims=True)
  accept, alias = priors.alias_tables(probs)
  dist = _alias_distribution(accept, alias)
  np.testing.assert_allclose(dist, probs, atol=1e-6)
  assert np.all(dist[probs == 0] == 0)
  # A draw can only land on a zero-probability column with accept 0, which defers.
  assert np.all(probs[np.arange(50)[:, None], alias] > 0)


def test_tempered_probs():
  with np.errstate(divide="ignore"):
    lp = np.log(np.array([[0.5, 0.3, 0.2, 0.0]]))
  np.testing.assert_allclose(priors.tempered_probs(lp, 1.0), [[0.5, 0.3, 0.2, 0.0]],
                             atol=1e-12)
  np.testing.assert_array_equal(priors.tempered_probs(lp, 0.0), [[1, 0, 0, 0]])
  sharp = priors.tempered_probs(lp, 0.5)[0]
  np.testing.assert_allclose(sharp[:3], np.array([25, 9, 4]) / 38)
  with pytest.raises(PnagError, match="no codeword"):
    priors.tempered_probs(np.full((1, 3), -np.inf), 1.0)


def test_code_prior_draws_follow_the_fitted_categoricals(nb201_untrained,
                                                          nb201_untrained_priors):
  run, fitted = nb201_untrained, nb201_untrained_priors
  prior = priors.make_prior("codes")
  consts = {"prior": jax.tree.map(jnp.asarray, prior.tables(run))}
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(3),
                                                          np.arange(20_000, dtype=np.uint32))
  draw = jax.jit(jax.vmap(lambda c, k: prior.draw(c, k, (), run.model), in_axes=(None, 0)))
  idx = np.asarray(draw(consts, keys))
  probs = np.exp(fitted.code_logprobs.astype(np.float64))
  for p in (0, 9, 50, idx.shape[1] - 1):
    freq = np.bincount(idx[:, p], minlength=probs.shape[1]) / idx.shape[0]
    assert np.all(freq[probs[p] == 0] == 0)
    # 20,000 draws: 5 standard errors of the largest cell is < 0.018.
    np.testing.assert_allclose(freq, probs[p], atol=0.018)


def test_registry_and_temperatures():
  assert set(priors.PRIORS) >= {"codes", "latent", "fitted"}
  assert priors.make_prior("codes").tau == 1.0
  assert priors.make_prior("latent").tau == priors.make_prior("fitted").tau == 0.0
  assert priors.make_prior("fitted", 0.5).tau == 0.5
  # Static under jit: equal settings hash equal, other settings do not.
  assert hash(priors.make_prior("codes", 0.7)) == hash(priors.make_prior("codes", 0.7))
  assert priors.make_prior("codes", 0.7) != priors.make_prior("codes", 0.8)
  with pytest.raises(PnagError, match="unknown prior 'gaussian'"):
    priors.make_prior("gaussian")
  for bad in (-1.0, float("nan"), float("inf")):
    with pytest.raises(PnagError, match="temperature must be"):
      priors.make_prior("latent", bad)
  # Above 0 but so small that -distance / t is -inf for every codeword: the latent
  # priors drew one fixed codeword (the codes prior, in float64, broke near 1e-307).
  for name in ("codes", "latent", "fitted"):
    with pytest.raises(PnagError, match="0 \\(the mode\\) or at least 1e-30, got 1e-39"):
      priors.make_prior(name, 1e-39)
    assert priors.make_prior(name, priors.MIN_TEMPERATURE).tau == priors.MIN_TEMPERATURE


@priors.register
@dataclasses.dataclass(frozen=True)
class _EchoPrior(priors.Prior):
  """A conditional plug-in for this test: the condition *is* the code map."""

  name: ClassVar[str] = "_echo_test"
  default_temperature: ClassVar[float] = 1.0
  takes_condition: ClassVar[bool] = True

  def tables(self, run):
    return {"offset": np.zeros((), np.int32)}

  def draw(self, consts, key, cond, model):
    del key, model
    return cond["tokens"] + consts["prior"]["offset"]


def test_a_registered_conditional_prior_plugs_into_the_sampler(nb201_untrained,
                                                               nb201_untrained_priors):
  try:
    run = nb201_untrained
    echo = Sampler.from_run(run, SamplerConfig(prior="_echo_test", chunk_size=16))
    codes = Sampler.from_run(run, SamplerConfig(prior="codes", chunk_size=16))
    # The code map of one generated arch, passed back as the condition, decodes to it.
    key = jax.random.key(4)
    tokens = jax.jit(lambda c, k: codes.spec.prior.draw(c, k, (), run.model))(
        codes.consts, jax.random.fold_in(key, 0))
    want = codes.generate(key, 1).genes[0]
    got = echo.generate(jax.random.key(9), 5, cond={"tokens": tokens}).genes
    assert (got == want).all()
    with pytest.raises(PnagError, match="prior 'codes' takes no condition"):
      codes.generate(key, 1, cond={"tokens": tokens})
  finally:
    del priors.PRIORS["_echo_test"]
