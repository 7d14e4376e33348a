import jax
import numpy as np
import pytest

from pnag_jax.generation import fused
from pnag_jax.models import msq


@pytest.mark.parametrize("space, overrides", [
    ("nb201", {}),
    ("darts", {"num_scales": 4, "dim": 8, "decoder_hidden": 64}),
])
def test_fused_matches_unfused_decoder(untrained_run, space, overrides):
  run = untrained_run(space, **overrides)
  model = run.model.merge(run.params)
  layout, n = run.model.layout, run.space.num_nodes
  p = run.params["decoder"]["hidden"]
  table = fused.build_table(run.params["codebook"], p["kernel"], layout.scales, n)
  v, h = run.model.codebook_size, run.model.decoder_hidden
  assert table.shape == (layout.num_tokens, v, h)

  b = 64
  idx = jax.random.randint(jax.random.key(0), (b, layout.num_tokens), 0, v)
  got = jax.jit(jax.vmap(fused.fused_pre_activation, in_axes=(None, None, 0)))(
      table, p["bias"], idx)
  e_hat = msq.decode_indices(layout.split(idx), model.codebook[...], n)[-1]
  want = jax.jit(lambda e: model.decoder.pre_activation(e))(e_hat)
  rel = np.abs(np.asarray(got - want)) / (np.abs(np.asarray(want)) + 1e-3)
  assert float(np.max(np.abs(np.asarray(got - want))) / np.max(np.abs(np.asarray(want)))) < 1e-4
  assert float(np.median(rel)) < 1e-4


def test_table_is_linear_in_codebook(nb201_untrained):
  # Doubling the codebook doubles every contribution: the table has no bias folded in.
  run = nb201_untrained
  z, w = run.params["codebook"], run.params["decoder"]["hidden"]["kernel"]
  s, n = run.model.scales, run.space.num_nodes
  t1 = fused.build_table(z, w, s, n)
  t2 = fused.build_table(2 * z, w, s, n)
  np.testing.assert_allclose(np.asarray(t2), 2 * np.asarray(t1), rtol=1e-5, atol=1e-6)


def test_table_bytes():
  assert fused.table_bytes(msq.TokenLayout((3, 4, 5, 6, 7, 8)), 64, 256) == 4 * 199 * 64 * 256
