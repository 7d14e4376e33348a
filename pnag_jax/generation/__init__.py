"""Bulk generation from a trained stage-1 model (DESIGN §4).

  run, sampler = load_sampler("runs/nb201", SamplerConfig(prior="codes"))
  out = sampler.generate(jax.random.key(0), 100_000)

`sampler.py` is the pure, sharded sampler; `priors.py` the prior plug-ins and their
registry, and `ar_prior.py` stage 2's transformer as one more; `fitted.py` the
statistics they are fitted from; `fused.py` the tabulated decoder; `steps.py` the
per-step sub-architectures; `output.py` and `run.py` the files of `pnag generate`.
"""

from pnag_jax.generation import ar_prior  # registers "ar"
from pnag_jax.generation.fitted import FittedPriors, fit_priors, fitted_priors
from pnag_jax.generation.priors import PRIORS, Prior, make_prior, register
from pnag_jax.generation.run import load_sampler
from pnag_jax.generation.sampler import Generated, Sampler, SamplerConfig, sample_chunk

__all__ = [
    "FittedPriors", "Generated", "PRIORS", "Prior", "Sampler", "SamplerConfig",
    "fit_priors", "fitted_priors", "load_sampler", "make_prior", "register", "sample_chunk",
]
