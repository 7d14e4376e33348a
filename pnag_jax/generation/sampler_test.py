"""The sampler: one pure compiled function, deterministic per architecture, sharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation.output import ArchWriter
from pnag_jax.generation.sampler import Sampler, SamplerConfig, map_rows, sample_chunk

_ONE = "one device"


@pytest.fixture(scope="module")
def run(nb201_untrained, nb201_untrained_priors):
  del nb201_untrained_priors  # saved beside the run, where the samplers read them
  return nb201_untrained


@pytest.mark.parametrize("prior, layouts", [
    ("codes", ((64, None), (96, None), (200, _ONE), (32, None))),
    # The latent path compiles slowly on 8 fake devices: two layouts that differ in both.
    # (`latent` is the same program with mean 0 and std 1.)
    # One row a device (chunk 1; 8 on 8 devices): a batch of one compiles to another
    # program (map_rows).
    ("fitted", ((64, None), (200, _ONE), (1, _ONE), (8, None))),
])
def test_same_seed_same_archs_for_any_chunk_size_and_device_count(run, prior, layouts):
  num = 200
  key = jax.random.key(11)
  runs, gens = [], []
  for chunk, devices in layouts:
    devices = jax.devices()[:1] if devices == _ONE else devices
    gens.append(Sampler.from_run(run, SamplerConfig(prior=prior, chunk_size=chunk,
                                                    temperature=0.7), devices=devices))
    runs.append(gens[-1].generate(key, num))
  for other in runs[1:]:
    for a, b in zip(runs[0], other):
      assert a.tobytes() == b.tobytes()
  assert len({g.tobytes() for g in runs[0].genes}) > 10  # not a constant stream
  other_seed = gens[0].generate(jax.random.key(12), num)  # the first layout's compile
  assert other_seed.genes.tobytes() != runs[0].genes.tobytes()


def test_a_row_drawn_alone_is_the_row_drawn_in_a_batch():
  rng = np.random.default_rng(0)
  mean = jnp.asarray(rng.normal(size=(8, 8, 32)), jnp.float32)
  std = jnp.asarray(np.abs(rng.normal(size=(8, 8, 32))) + 0.1, jnp.float32)
  key = jax.random.key(3)
  # The fitted prior's latent draw.
  latent = lambda i: mean + std * jax.random.normal(jax.random.fold_in(key, i), mean.shape)  # noqa: E731
  ids = jnp.arange(514, 578, dtype=jnp.uint32)
  in_batch = np.asarray(jax.jit(lambda i: map_rows(latent, i, 64))(ids))[0]
  alone = np.asarray(jax.jit(lambda i: map_rows(latent, i, 1))(ids[:1]))[0]
  # (A plain vmap over one row rounded differently here, on XLA:CPU of jaxlib 0.10.2.)
  assert alone.tobytes() == in_batch.tobytes()


def test_written_file_is_byte_identical_on_1_and_8_devices(run, tmp_path):
  assert jax.device_count() == 8  # the root conftest's fake CPU devices
  paths = []
  for name, devices, chunk in (("one", jax.devices()[:1], 40), ("eight", None, 64)):
    gen = Sampler.from_run(run, SamplerConfig(chunk_size=chunk), devices=devices)
    path = tmp_path / f"{name}.csv"
    with ArchWriter(path, gen.space) as w:
      for chunk_out in gen.iter_chunks(jax.random.key(5), 300):
        w.write(chunk_out)
    paths.append(path)
  assert paths[0].read_bytes() == paths[1].read_bytes()
  assert len(paths[0].read_text().splitlines()) == 301


def test_params_are_arguments_and_chunks_compile_once(run):
  gen = Sampler.from_run(run, SamplerConfig(chunk_size=64))
  out = gen.chunk(jax.random.key(0), 0)
  compiled = sample_chunk._cache_size()  # pylint: disable=protected-access
  assert len(out.genes.sharding.device_set) == 8
  assert out.genes.sharding.shard_shape(out.genes.shape)[0] == 8
  for start in (64, 128, 1000):
    gen.chunk(jax.random.key(0), start)
  gen.generate(jax.random.key(1), 64 * 3 + 5)
  # Other params of the same shapes (another run, or edited weights) reuse the program.
  edited = gen.replicate(jax.tree.map(lambda x: x * 0.5 if x.dtype == np.float32 else x,
                                      gen.consts))
  sample_chunk(edited, jax.random.key(0), jnp.uint32(0), (), spec=gen.spec)
  assert sample_chunk._cache_size() == compiled  # pylint: disable=protected-access


def test_with_chunk_size_keeps_the_arrays_and_the_stream(run):
  gen = Sampler.from_run(run, SamplerConfig(chunk_size=64))
  small = gen.with_chunk_size(24)
  assert small.chunk_size == 24 and small.spec.prior == gen.spec.prior
  # Same arrays, placed on the new mesh: nothing was rebuilt from the run.
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               gen.consts, small.consts)
  a, b = gen.generate(jax.random.key(2), 100), small.generate(jax.random.key(2), 100)
  assert a.genes.tobytes() == b.genes.tobytes()


def test_constrained_decoding_is_format_valid_by_construction(run):
  raw = Sampler.from_run(run, SamplerConfig(prior="latent", chunk_size=256))
  con = Sampler.from_run(run, SamplerConfig(prior="latent", chunk_size=256, constrained=True))
  r, c = raw.generate(jax.random.key(0), 512), con.generate(jax.random.key(0), 512)
  assert r.format_valid.mean() < 0.5  # an untrained decoder: raw output is mostly invalid
  assert c.format_valid.all()


def test_fused_and_unfused_generate_the_same_archs(run):
  outs = [Sampler.from_run(run, SamplerConfig(fused=f, chunk_size=256)).generate(
      jax.random.key(2), 512) for f in (True, False)]
  assert outs[0].genes.shape == (512, 6)
  # Float sums in another order can flip an argmax at an exact tie only.
  assert np.mean(np.all(outs[0].genes == outs[1].genes, axis=1)) > 0.99


@pytest.mark.parametrize("kwargs, match", [
    ({"prior": "gaussian"}, "unknown prior 'gaussian'"),
    ({"temperature": -1.0}, "temperature must be"),
    ({"temperature": float("nan")}, "temperature must be"),
    ({"chunk_size": 0}, "chunk size must be positive"),
])
def test_bad_sampler_config(kwargs, match):
  with pytest.raises(PnagError, match=match):
    SamplerConfig(**kwargs)


def test_bad_counts(run):
  gen = Sampler.from_run(run, SamplerConfig(chunk_size=8))
  with pytest.raises(PnagError, match=">= 0"):
    gen.generate(jax.random.key(0), -1)
  assert gen.generate(jax.random.key(0), 0).genes.shape == (0, 6)
  with pytest.raises(PnagError, match="chunk size must be positive"):
    gen.with_chunk_size(0)
