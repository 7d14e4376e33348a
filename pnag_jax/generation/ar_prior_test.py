"""The `ar` prior as a sampler plug-in: determinism across chunks and devices, errors."""

import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation import priors
from pnag_jax.generation.sampler import Sampler, SamplerConfig
from pnag_jax.stages import stage1


@pytest.fixture(scope="module")
def run1(nb201_stage2):
  return stage1.load(nb201_stage2[0])


def _genes(run, devices=None, **cfg):
  sampler = Sampler.from_run(run, SamplerConfig(prior="ar", **cfg), devices)
  return sampler.generate(jax.random.key(3), 20).genes


def test_ar_output_is_the_same_for_any_chunk_size_and_device_count(run1):
  one_device = jax.devices()[:1]
  ref = _genes(run1, one_device, chunk_size=20)
  np.testing.assert_array_equal(_genes(run1, one_device, chunk_size=7), ref)
  np.testing.assert_array_equal(_genes(run1, None, chunk_size=8), ref)
  assert len(jax.devices()) == 8  # the suite's fake devices: the last call sharded 8 ways
  # Sampling, not a constant: 20 untrained-stage-1 archs are not all one arch.
  assert len({tuple(g) for g in ref}) > 1


def test_filters_change_what_is_drawn(run1):
  greedy = _genes(run1, jax.devices()[:1], chunk_size=20, temperature=0.0)
  # Temperature 0 takes each scale's argmax: one arch, whatever the key.
  assert len({tuple(g) for g in greedy}) == 1
  np.testing.assert_array_equal(
      _genes(run1, jax.devices()[:1], chunk_size=20, top_k=1), greedy)


def test_ar_options_are_checked():
  with pytest.raises(PnagError, match="--top-k applies to the ar prior only"):
    priors.make_prior("codes", top_k=3)
  with pytest.raises(PnagError, match="--top-p must be in"):
    SamplerConfig(prior="ar", top_p=0.0)
  with pytest.raises(PnagError, match="--cfg-scale must be"):
    SamplerConfig(prior="ar", cfg_scale=-1.0)
  with pytest.raises(PnagError, match="--cfg-scale applies to the ar prior only"):
    SamplerConfig(prior="codes", cfg_scale=2.0)


def test_guidance_needs_a_conditional_stage2(nb201_stage2_unconditional):
  with pytest.raises(PnagError, match="--cfg-scale needs a conditional stage 2"):
    Sampler.from_run(stage1.load(nb201_stage2_unconditional),
                     SamplerConfig(prior="ar", cfg_scale=2.0))


def test_cli_without_stage2_says_how_to_train(nb201_workdir, tmp_path, pnag_main):
  code, _, err = pnag_main("generate", "--workdir", nb201_workdir, "--num", "10", "--prior",
                           "ar", "--out", tmp_path / "a.csv")
  assert code != 0 and "pnag train stage2" in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "a.csv").exists()


def test_target_needs_the_ar_prior_and_a_task_conditioned_stage2(nb201_stage2_unconditional,
                                                                   tmp_path, pnag_main):
  workdir = nb201_stage2_unconditional
  space = stage1.load(workdir).space
  refs = tmp_path / "refs.csv"
  rows = [f'"{s}",{i}' for i, s in enumerate(space.to_strings(space.enumerate()[:3]))]
  refs.write_text("arch,score\n" + "\n".join(rows) + "\n")
  out = tmp_path / "a.csv"
  code, _, err = pnag_main("generate", "--workdir", workdir, "--num", "4", "--out", out,
                           "--refs", refs, "--target", "0.9")
  assert code != 0 and "needs --prior ar and --refs" in err
  code, _, err = pnag_main("generate", "--workdir", workdir, "--num", "4", "--out", out,
                           "--prior", "ar", "--refs", refs, "--target", "0.9")
  assert code != 0 and "has condition 'none'" in err and "condition=task" in err
  code, _, err = pnag_main("generate", "--workdir", workdir, "--num", "4", "--out", out,
                           "--prior", "ar", "--refs", refs, "--target", "0.9", "--pool", "10")
  assert code != 0 and "--pool ranks a pool" in err
  assert not out.exists()
  # The measured references are no output file (the command replaced them with archs).
  kept = refs.read_bytes()
  code, _, err = pnag_main("generate", "--workdir", workdir, "--num", "4", "--out", refs,
                           "--prior", "ar", "--refs", refs, "--target", "0.9")
  assert code != 0 and "is the --refs file, which the output would replace" in err
  assert refs.read_bytes() == kept
