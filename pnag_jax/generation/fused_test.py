import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.generation import fused
from pnag_jax.generation.conftest import untrained
from pnag_jax.generation.priors import num_tokens
from pnag_jax.models import msq


@pytest.mark.parametrize("space, overrides", [
    ("nb201", {}),
    ("darts", {"num_scales": 4, "dim": 8, "decoder_hidden": 64}),
])
def test_fused_matches_unfused_decoder(tmp_path, space, overrides):
  trained = untrained(space, tmp_path, **overrides)
  model = trained.model.merge(trained.params)
  scales, n = trained.model.scales, trained.space.num_nodes
  p = trained.params["decoder"]["hidden"]
  table = jax.jit(fused.build_table, static_argnums=(2, 3))(
      trained.params["codebook"], p["kernel"], scales, n)
  v, h = trained.cfg.codebook_size, trained.cfg.decoder_hidden
  assert table.shape == (num_tokens(scales), v, h)

  b = 64
  idx = jax.random.randint(jax.random.key(0), (b, num_tokens(scales)), 0, v)
  got = jax.jit(jax.vmap(fused.fused_pre_activation, in_axes=(None, None, 0)))(
      table, p["bias"], idx)
  parts = jnp.split(idx, np.cumsum([s * s for s in scales])[:-1], axis=1)
  e_hat = msq.decode_indices([q.reshape(b, s, s) for q, s in zip(parts, scales)],
                             model.codebook[...], n)[-1]
  want = jax.jit(lambda e: model.decoder.pre_activation(e))(e_hat)
  rel = np.abs(np.asarray(got - want)) / (np.abs(np.asarray(want)) + 1e-3)
  assert float(np.max(np.abs(np.asarray(got - want))) / np.max(np.abs(np.asarray(want)))) < 1e-4
  assert float(np.median(rel)) < 1e-4


def test_table_is_linear_in_codebook(tmp_path):
  # Doubling the codebook doubles every contribution: the table has no bias folded in.
  trained = untrained("nb201", tmp_path)
  z, w = trained.params["codebook"], trained.params["decoder"]["hidden"]["kernel"]
  s, n = trained.model.scales, trained.space.num_nodes
  t1 = fused.build_table(z, w, s, n)
  t2 = fused.build_table(2 * z, w, s, n)
  np.testing.assert_allclose(np.asarray(t2), 2 * np.asarray(t1), rtol=1e-5, atol=1e-6)


def test_table_bytes():
  assert fused.table_bytes((3, 4, 5, 6, 7, 8), 64, 256) == 4 * 199 * 64 * 256
