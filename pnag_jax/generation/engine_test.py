import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation.engine import (GenerationConfig, Generator, alias_tables,
                                        tempered_probs)
from pnag_jax.generation.output import ArchWriter


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
  accept, alias = alias_tables(probs)
  dist = _alias_distribution(accept, alias)
  np.testing.assert_allclose(dist, probs, atol=1e-6)
  assert np.all(dist[probs == 0] == 0)
  # A draw can only land on a zero-probability column with accept 0, which defers.
  assert np.all(probs[np.arange(50)[:, None], alias] > 0)


def test_tempered_probs():
  with np.errstate(divide="ignore"):
    lp = np.log(np.array([[0.5, 0.3, 0.2, 0.0]]))
  np.testing.assert_allclose(tempered_probs(lp, 1.0), [[0.5, 0.3, 0.2, 0.0]], atol=1e-12)
  np.testing.assert_array_equal(tempered_probs(lp, 0.0), [[1, 0, 0, 0]])
  sharp = tempered_probs(lp, 0.5)[0]
  np.testing.assert_allclose(sharp[:3], np.array([25, 9, 4]) / 38)
  with pytest.raises(PnagError, match="no codeword"):
    tempered_probs(np.full((1, 3), -np.inf), 1.0)


def test_code_prior_draws_follow_the_fitted_categoricals(nb201_model, nb201_priors):
  gen = Generator(nb201_model, nb201_priors, GenerationConfig(prior="codes", chunk_size=4096))
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(3),
                                                          np.arange(20_000, dtype=np.uint32))
  idx = np.asarray(jax.jit(jax.vmap(gen.indices, in_axes=(None, 0)))(gen.consts, keys))
  probs = np.exp(nb201_priors.code_logprobs.astype(np.float64))
  for p in (0, 9, 50, idx.shape[1] - 1):
    freq = np.bincount(idx[:, p], minlength=probs.shape[1]) / idx.shape[0]
    assert np.all(freq[probs[p] == 0] == 0)
    # 20,000 draws: 5 standard errors of the largest cell is < 0.018.
    np.testing.assert_allclose(freq, probs[p], atol=0.018)


_ONE = "one device"


@pytest.mark.parametrize("prior, layouts", [
    ("codes", ((64, None), (96, None), (200, _ONE), (32, None))),
    # The latent path compiles slowly on 8 fake devices: two layouts that differ in both.
    # (`latent` is the same program with mean 0 and std 1.)
    ("fitted", ((64, None), (200, _ONE))),
])
def test_same_seed_same_archs_for_any_chunk_size_and_device_count(nb201_model, nb201_priors,
                                                                   prior, layouts):
  num = 200
  key = jax.random.key(11)
  runs = []
  for chunk, devices in layouts:
    devices = jax.devices()[:1] if devices == _ONE else devices
    gen = Generator(nb201_model, nb201_priors,
                    GenerationConfig(prior=prior, chunk_size=chunk, temperature=0.7),
                    devices=devices)
    runs.append(gen.generate(key, num))
  for other in runs[1:]:
    for a, b in zip(runs[0], other):
      assert a.tobytes() == b.tobytes()
  assert len({g.tobytes() for g in runs[0].genes}) > 10  # not a constant stream
  other_seed = Generator(nb201_model, nb201_priors, GenerationConfig(prior=prior)).generate(
      jax.random.key(12), num)
  assert other_seed.genes.tobytes() != runs[0].genes.tobytes()


def test_written_file_is_byte_identical_on_1_and_8_devices(nb201_model, nb201_priors,
                                                            tmp_path):
  assert jax.device_count() == 8  # the root conftest's fake CPU devices
  paths = []
  for name, devices, chunk in (("one", jax.devices()[:1], 40), ("eight", None, 64)):
    gen = Generator(nb201_model, nb201_priors, GenerationConfig(chunk_size=chunk),
                    devices=devices)
    path = tmp_path / f"{name}.csv"
    with ArchWriter(path, gen.space) as w:
      for chunk_out in gen.iter_chunks(jax.random.key(5), 300):
        w.write(chunk_out)
    paths.append(path)
  assert paths[0].read_bytes() == paths[1].read_bytes()
  assert len(paths[0].read_text().splitlines()) == 301


def test_chunks_are_sharded_over_all_devices_and_compile_once(nb201_model, nb201_priors):
  gen = Generator(nb201_model, nb201_priors, GenerationConfig(chunk_size=64))
  out = gen.generate_chunk(jax.random.key(0), 0)
  assert len(out.genes.sharding.device_set) == 8
  assert out.genes.sharding.shard_shape(out.genes.shape)[0] == 8
  for start in (64, 128, 1000):
    gen.generate_chunk(jax.random.key(0), start)
  gen.generate(jax.random.key(1), 64 * 3 + 5)
  assert gen._chunk_fn._cache_size() == 1  # pylint: disable=protected-access


def test_constrained_decoding_is_format_valid_by_construction(nb201_model, nb201_priors):
  raw = Generator(nb201_model, nb201_priors, GenerationConfig(prior="latent", chunk_size=256))
  con = Generator(nb201_model, nb201_priors,
                  GenerationConfig(prior="latent", chunk_size=256, constrained=True))
  r, c = raw.generate(jax.random.key(0), 512), con.generate(jax.random.key(0), 512)
  assert r.format_valid.mean() < 0.5  # an untrained decoder: raw output is mostly invalid
  assert c.format_valid.all()


def test_fused_and_unfused_generate_the_same_archs(nb201_model, nb201_priors):
  outs = [Generator(nb201_model, nb201_priors, GenerationConfig(fused=f, chunk_size=256)
                    ).generate(jax.random.key(2), 512) for f in (True, False)]
  assert outs[0].genes.shape == (512, 6)
  # Float sums in another order can flip an argmax at an exact tie only.
  assert np.mean(np.all(outs[0].genes == outs[1].genes, axis=1)) > 0.99


@pytest.mark.parametrize("kwargs, match", [
    ({"prior": "gaussian"}, "unknown prior 'gaussian'"),
    ({"temperature": -1.0}, "temperature must be"),
    ({"temperature": float("nan")}, "temperature must be"),
    ({"chunk_size": 0}, "chunk size must be positive"),
])
def test_bad_generation_config(kwargs, match):
  with pytest.raises(PnagError, match=match):
    GenerationConfig(**kwargs)


def test_bad_counts(nb201_model, nb201_priors):
  gen = Generator(nb201_model, nb201_priors, GenerationConfig(chunk_size=8))
  with pytest.raises(PnagError, match=">= 0"):
    gen.generate(jax.random.key(0), -1)
  assert gen.generate(jax.random.key(0), 0).genes.shape == (0, 6)
  with pytest.raises(PnagError, match="needs fitted priors"):
    Generator(nb201_model, None, GenerationConfig(prior="codes"))
