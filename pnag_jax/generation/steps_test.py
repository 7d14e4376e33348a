"""Per-step sub-architectures: the same draws as the sampler, decoded at every prefix."""

import jax
import numpy as np

from pnag_jax.generation import steps
from pnag_jax.generation.sampler import Sampler, SamplerConfig


def test_the_last_step_is_the_generated_arch(nb201_untrained, nb201_untrained_priors):
  del nb201_untrained_priors
  run = nb201_untrained
  sampler = Sampler.from_run(run, SamplerConfig(prior="codes", chunk_size=32))
  key = jax.random.key(7)
  genes, ok = steps.step_genes(sampler, run.params, key, 32)
  t = len(run.model.scales)
  assert genes.shape == (t, 32, 6) and ok.shape == (t, 32) and ok.dtype == bool
  final = sampler.generate(key, 32)
  # Same keys, same code maps: g_T decodes the full map, as the sampler does (the
  # fused table and the unfused decoder agree but for exact ties).
  assert np.mean(np.all(genes[-1] == final.genes, axis=1)) > 0.95
  np.testing.assert_array_equal(ok[-1][np.all(genes[-1] == final.genes, axis=1)],
                                final.format_valid[np.all(genes[-1] == final.genes, axis=1)])
  # Coarse prefixes decode other archs than the full map does.
  assert not np.array_equal(genes[0], genes[-1])


def test_step_validity_under_the_grammar_is_total(nb201_untrained, nb201_untrained_priors):
  del nb201_untrained_priors
  run = nb201_untrained
  raw = Sampler.from_run(run, SamplerConfig(prior="latent", chunk_size=64))
  con = Sampler.from_run(run, SamplerConfig(prior="latent", chunk_size=64, constrained=True))
  fmt_raw, strict_raw = steps.step_validity(raw, run.params, jax.random.key(0), 64)
  fmt_con, strict_con = steps.step_validity(con, run.params, jax.random.key(0), 64)
  t = len(run.model.scales)
  assert fmt_raw.shape == strict_raw.shape == (t,)
  assert np.all(strict_raw <= fmt_raw) and np.all(strict_con <= fmt_con)
  assert fmt_raw.min() < 0.5  # an untrained decoder
  np.testing.assert_array_equal(fmt_con, np.ones(t))
