"""Tests for the multi-scale quantizer: resampling matrices, residual invariants, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.models import msq

_quantize = jax.jit(msq.quantize, static_argnames="scales")

# One shared shape keeps the number of XLA compilations (about 2 s each on CPU) small.
_B, _N, _C, _V_RANDOM, _V_FAR = 2, 6, 3, 20, 4


def _random_case(seed: int, b: int = _B, n: int = _N, c: int = _C, v: int = _V_RANDOM):
  ke, kz = jax.random.split(jax.random.key(seed))
  e = jax.random.normal(ke, (b, n, n, c), jnp.float32)
  codebook = jax.random.normal(kz, (v, c), jnp.float32)
  return e, codebook


@pytest.fixture(scope="module")
def case():
  """Random e and a codebook whose last `_V_FAR` codes no pooled residual can reach."""
  e, z = _random_case(1)
  z = jnp.concatenate([z, 100.0 + jnp.ones((_V_FAR, _C), jnp.float32)])
  return e, z, _quantize(e, z)


# --------------------------------------------------------------------------------------
# Resampling matrices, checked against values derived by hand from the PyTorch formulas.
# --------------------------------------------------------------------------------------


def test_area_8_to_3_hand_computed():
  # Bins [0,1,2], [2,3,4,5], [5,6,7]: overlapping, as PyTorch's adaptive pooling.
  t, q = 1 / 3, 1 / 4
  expected = np.array([
      [t, t, t, 0, 0, 0, 0, 0],
      [0, 0, q, q, q, q, 0, 0],
      [0, 0, 0, 0, 0, t, t, t],
  ], np.float32)
  np.testing.assert_allclose(msq.area_matrix(3, 8), expected, rtol=0, atol=1e-7)


def test_area_8_to_5_hand_computed():
  # Bins [0,1], [1,2,3], [3,4], [4,5,6], [6,7].
  h, t = 1 / 2, 1 / 3
  expected = np.array([
      [h, h, 0, 0, 0, 0, 0, 0],
      [0, t, t, t, 0, 0, 0, 0],
      [0, 0, 0, h, h, 0, 0, 0],
      [0, 0, 0, 0, t, t, t, 0],
      [0, 0, 0, 0, 0, 0, h, h],
  ], np.float32)
  np.testing.assert_allclose(msq.area_matrix(5, 8), expected, rtol=0, atol=1e-7)


def test_bilinear_3_to_8_hand_computed():
  # src = (i + 0.5) * 3/8 - 0.5 = -0.3125 (clamped to 0), 0.0625, 0.4375, 0.8125,
  # 1.1875, 1.5625, 1.9375, 2.3125 (i0 = i1 = 2 at the border).
  expected = np.array([
      [1.0, 0.0, 0.0],
      [0.9375, 0.0625, 0.0],
      [0.5625, 0.4375, 0.0],
      [0.1875, 0.8125, 0.0],
      [0.0, 0.8125, 0.1875],
      [0.0, 0.4375, 0.5625],
      [0.0, 0.0625, 0.9375],
      [0.0, 0.0, 1.0],
  ], np.float32)
  np.testing.assert_allclose(msq.bilinear_matrix(8, 3), expected, rtol=0, atol=1e-7)


def test_area_22_to_7_bins():
  # floor(22 i / 7) .. ceil(22 (i + 1) / 7) - 1: every bin has 4 cells, neighbours share one.
  bins = [(0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 18), (18, 21)]
  m = msq.area_matrix(7, 22)
  assert m.shape == (7, 22) and m.dtype == np.float32
  for i, (lo, hi) in enumerate(bins):
    nz = np.flatnonzero(m[i])
    np.testing.assert_array_equal(nz, np.arange(lo, hi + 1))
    np.testing.assert_allclose(m[i, nz], 0.25, rtol=0, atol=0)
  np.testing.assert_allclose(m.sum(1), 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 7, 22])
def test_identity_when_sizes_match(n):
  np.testing.assert_array_equal(msq.area_matrix(n, n), np.eye(n, dtype=np.float32))
  np.testing.assert_array_equal(msq.bilinear_matrix(n, n), np.eye(n, dtype=np.float32))


@pytest.mark.parametrize("n_out,n_in", [(3, 8), (5, 8), (7, 22), (1, 5), (6, 7), (8, 3),
                                        (22, 7), (5, 1), (13, 16), (16, 13)])
def test_rows_sum_to_one(n_out, n_in):
  for m in (msq.area_matrix(n_out, n_in), msq.bilinear_matrix(n_out, n_in)):
    assert m.shape == (n_out, n_in) and m.dtype == np.float32
    assert (m >= 0).all()
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=0, atol=1e-6)


def test_pool_and_upsample_are_separable_matrix_products():
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 8, 8, 3)))
  a, u = msq.area_matrix(3, 8), msq.bilinear_matrix(8, 3)
  pooled = np.asarray(jax.jit(msq.pool, static_argnums=1)(x, 3))
  np.testing.assert_allclose(pooled, np.einsum("ih,bhwc,jw->bijc", a, x, a), atol=1e-5)
  up = np.asarray(jax.jit(msq.upsample, static_argnums=1)(pooled, 8))
  np.testing.assert_allclose(up, np.einsum("ih,bhwc,jw->bijc", u, pooled, u), atol=1e-5)
  assert msq.pool(x, 8) is x and msq.upsample(x, 8) is x


# --------------------------------------------------------------------------------------
# Nearest code.
# --------------------------------------------------------------------------------------


def test_nearest_code_matches_float64_argmin():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 5, 6)).astype(np.float32)
  z = rng.normal(size=(11, 6)).astype(np.float32)
  d64 = ((x.astype(np.float64)[..., None, :] - z.astype(np.float64)) ** 2).sum(-1)
  idx = jax.jit(msq.nearest_code)(x, z)
  assert idx.dtype == jnp.int32 and idx.shape == (4, 5)
  np.testing.assert_array_equal(np.asarray(idx), d64.argmin(-1))
  np.testing.assert_allclose(np.asarray(msq.distances(x, z)), d64, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# Quantizer invariants (references in NumPy, so no extra compilations).
# --------------------------------------------------------------------------------------


def _np_upsample(x: np.ndarray, n: int) -> np.ndarray:
  u = msq.bilinear_matrix(n, x.shape[1]).astype(np.float64)
  return np.einsum("ih,bhwc,jw->bijc", u, x, u)


def _np_pool(x: np.ndarray, n: int) -> np.ndarray:
  a = msq.area_matrix(n, x.shape[1]).astype(np.float64)
  return np.einsum("ih,bhwc,jw->bijc", a, x, a)


def test_quantize_shapes_and_residual_invariants(case):
  e, z, out = case
  e, z = np.asarray(e, np.float64), np.asarray(z)
  scales = msq.scale_schedule(_N)
  t = len(scales)
  assert scales == (3, 4, 5, 6)
  assert len(out.indices) == t
  for s, idx in zip(scales, out.indices):
    assert idx.shape == (_B, s, s) and idx.dtype == jnp.int32
  assert out.prefixes.shape == (t, _B, _N, _N, _C)
  assert out.per_scale.shape == (t, _B, _N, _N, _C)
  np.testing.assert_array_equal(out.prefixes[-1], out.e_hat)
  prefixes = np.asarray(out.prefixes, np.float64)

  # The last scale is the identity: its map is exactly the looked-up codes.
  last_codes = z[np.asarray(out.indices[-1])]
  np.testing.assert_array_equal(out.per_scale[-1], last_codes)
  np.testing.assert_allclose(prefixes[-1] - prefixes[-2], last_codes, atol=1e-5)

  # ê is the sum of the upsampled codes, rebuilt here independently of `quantize`.
  rebuilt = sum(_np_upsample(z[np.asarray(idx)], _N) for idx in out.indices)
  np.testing.assert_allclose(rebuilt, out.e_hat, atol=1e-5)
  np.testing.assert_allclose(np.cumsum(out.per_scale, 0), prefixes, atol=1e-5)
  decode = jax.jit(msq.decode_indices, static_argnums=2)
  np.testing.assert_allclose(decode(out.indices, z, _N), prefixes, atol=1e-6)

  # Each scale quantizes the pooled residual left by the previous prefix.
  prev = np.zeros_like(e)
  for s, idx, pre in zip(scales, out.indices, prefixes):
    target = _np_pool(e - prev, s)
    d = ((target[..., None, :] - z.astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, d.argmin(-1))
    prev = pre


def test_constant_code_map_is_lossless():
  # e is one code everywhere: the first scale takes it, every later residual is ~0 and
  # snaps to the zero code, so ê == e.
  rng = np.random.default_rng(2)
  z = rng.normal(size=(_V_RANDOM + _V_FAR, _C)).astype(np.float32) + 5.0
  z[3] = 0.0
  e = np.broadcast_to(z[7], (_B, _N, _N, _C)).copy()
  out = _quantize(e, z)
  assert (np.asarray(out.indices[0]) == 7).all()
  for idx in out.indices[1:]:
    assert (np.asarray(idx) == 3).all()
  np.testing.assert_allclose(out.e_hat, e, atol=1e-5)


def test_reconstruction_error_drops_across_scales():
  # Same compiled shapes as `case`, but a richer codebook: the finest scale then
  # removes most of what the coarse scales leave.
  rng = np.random.default_rng(3)
  e = rng.normal(size=(_B, _N, _N, _C)).astype(np.float32)
  z = rng.normal(size=(_V_RANDOM + _V_FAR, _C)).astype(np.float32)
  prefixes = np.asarray(_quantize(e, z).prefixes)
  err = np.mean(np.square(e[None] - prefixes), axis=(1, 2, 3, 4))
  assert err[-1] < 0.5 * err[0], err


def test_bad_scales_raise(case):
  e, z, _ = case
  for scales in [(3, 5), (4, 3, 6), (), (0, 6), (3, 3, 6)]:
    with pytest.raises(ValueError):
      msq.quantize(e, z, scales)


# --------------------------------------------------------------------------------------
# Losses and gradients.
# --------------------------------------------------------------------------------------


def _total_vq(e, z, weights, beta, paper_literal=False):
  out = msq.quantize(e, z)
  if paper_literal:
    return jnp.sum(weights * msq.vq_loss_paper_literal(e, out.per_scale, beta))
  return jnp.sum(weights * msq.vq_loss(e, out.prefixes, beta))


_grads = jax.jit(jax.grad(_total_vq, argnums=(0, 1)), static_argnames="paper_literal")


def test_codebook_gets_gradient_only_on_used_codes(case):
  e, z, out = case
  w = msq.scc_weights(len(out.indices), 2, 0.5)
  g = np.asarray(_grads(e, z, w, 0.25)[1])
  used = np.unique(np.concatenate([np.ravel(i) for i in out.indices]))
  unused = np.setdiff1d(np.arange(z.shape[0]), used)
  assert set(range(_V_RANDOM, _V_RANDOM + _V_FAR)) <= set(unused)
  assert (np.abs(g[used]).sum(1) > 0).all()
  np.testing.assert_array_equal(g[unused], 0.0)


def test_encoder_gets_commitment_gradient_only(case):
  e, z, out = case
  beta = 0.25
  t = len(out.indices)
  w = msq.scc_weights(t, t, 0.3)
  g = _grads(e, z, w, beta)[0]
  # Only the commitment term reaches e: sum_t w_t * beta * 2 (e - ê_{<=t}) / size.
  size = _B * _N * _N * _C
  expected = jnp.einsum("t,tbijc->bijc", w, 2.0 * beta * (e[None] - out.prefixes) / size)
  assert float(jnp.abs(g).sum()) > 0
  np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-8)
  # Without the commitment term e gets nothing: ê has no gradient path to e, because
  # code selection is stop-gradiented.
  np.testing.assert_array_equal(_grads(e, z, w, 0.0)[0], 0.0)


def test_paper_literal_variant_trains_codebook_and_encoder(case):
  e, z, out = case
  t = len(out.indices)
  w = msq.scc_weights(t, t, 1.0)
  ge, gz = _grads(e, z, w, 0.25, paper_literal=True)
  assert float(jnp.abs(ge).sum()) > 0 and float(jnp.abs(gz).sum()) > 0
  lit = msq.vq_loss_paper_literal(e, out.per_scale)
  pre = msq.vq_loss(e, out.prefixes)
  assert lit.shape == pre.shape == (t,)
  # Step 1 has no earlier scales, so both readings agree there.
  np.testing.assert_allclose(lit[0], pre[0], rtol=1e-6)


def test_vq_loss_value_with_explicit_scales(case):
  e, z, _ = case
  out = _quantize(e, z, scales=(2, _N))
  assert [i.shape for i in out.indices] == [(_B, 2, 2), (_B, _N, _N)]
  mse = jnp.mean(jnp.square(e[None] - out.prefixes), axis=(1, 2, 3, 4))
  np.testing.assert_allclose(msq.vq_loss(e, out.prefixes, beta=0.25), 1.25 * mse, rtol=1e-6)


def test_straight_through_passes_gradient_unchanged(case):
  e, _, out = case
  e_hat = out.e_hat
  weights = jax.random.normal(jax.random.key(9), e.shape)

  def loss(x):
    return jnp.sum(jnp.sin(x) * weights)

  st = jax.jit(msq.straight_through)(e, e_hat)
  np.testing.assert_allclose(st, e_hat, atol=1e-6)
  g_e = jax.jit(jax.grad(lambda x: loss(msq.straight_through(x, e_hat))))(e)
  g_hat = jax.jit(jax.grad(loss))(e_hat)
  np.testing.assert_allclose(g_e, g_hat, rtol=1e-5, atol=1e-6)
  # And nothing flows into ê through the straight-through output.
  g_to_hat = jax.jit(jax.grad(lambda y: loss(msq.straight_through(e, y))))(e_hat)
  np.testing.assert_array_equal(g_to_hat, 0.0)


def test_scc_weights():
  np.testing.assert_array_equal(msq.scc_weights(6, 0, 0.5), [0, 0, 0, 0, 0, 1])
  np.testing.assert_array_equal(msq.scc_weights(6, 2, 0.5), [0.5, 0.5, 0, 0, 0, 1])
  np.testing.assert_allclose(msq.scc_weights(6, 6, 0.3), [0.3] * 5 + [1], rtol=1e-7)
  np.testing.assert_allclose(msq.scc_weights(6, 5, 0.3), msq.scc_weights(6, 6, 0.3))
  np.testing.assert_array_equal(msq.scc_weights(1, 1, 0.3), [1])
  assert msq.scc_weights(6, 3, 0.5).dtype == np.float32
  for t_max in (-1, 7):
    with pytest.raises(ValueError):
      msq.scc_weights(6, t_max, 0.5)


def test_codebook_perplexity():
  v = 8
  perp = jax.jit(lambda idx: msq.codebook_perplexity(msq.code_counts(idx, v)))
  np.testing.assert_allclose(perp(jnp.arange(16).reshape(2, 2, 4) % v), 8.0, rtol=1e-5)
  np.testing.assert_allclose(perp(jnp.full((2, 2, 4), 5)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(perp(jnp.array([0, 0, 1, 1])), 2.0, rtol=1e-6)
  # Masked rows (a padded batch's tail) do not count.
  idx = jnp.array([[0, 0], [1, 1], [7, 7]])
  counts = jax.jit(msq.code_counts, static_argnums=1)(idx, v, jnp.array([True, True, False]))
  np.testing.assert_array_equal(counts, [2, 2, 0, 0, 0, 0, 0, 0])
  # Histograms of several batches add up before the perplexity is taken.
  np.testing.assert_allclose(msq.codebook_perplexity(counts + counts), 2.0, rtol=1e-6)


def test_scale_schedule():
  assert msq.scale_schedule(8) == (3, 4, 5, 6, 7, 8)  # DESIGN default
  assert msq.scale_schedule(22, num=6) == (3, 7, 11, 14, 18, 22)
  assert msq.scale_schedule(22, num=1) == (22,)
  assert msq.scale_schedule(8, num=50) == (3, 4, 5, 6, 7, 8)
  assert msq.scale_schedule(2) == (2,)
  with pytest.raises(ValueError):
    msq.scale_schedule(8, num=-1)


def test_token_layout_splits_and_flattens_in_msq_order():
  layout = msq.TokenLayout((3, 4, 8))
  assert layout.num_tokens == 9 + 16 + 64 and layout.num_nodes == 8
  assert layout.slices == (slice(0, 9), slice(9, 25), slice(25, 89))
  flat = jnp.arange(2 * 89).reshape(2, 89)
  parts = layout.split(flat)
  assert [p.shape for p in parts] == [(2, 3, 3), (2, 4, 4), (2, 8, 8)]
  np.testing.assert_array_equal(parts[1][1, 0], [98, 99, 100, 101])  # 89 + 9: row-major
  np.testing.assert_array_equal(layout.flatten(parts), flat)
  assert [p.shape for p in layout.split(flat[0])] == [(3, 3), (4, 4), (8, 8)]
  hash(layout)
  with pytest.raises(ValueError):
    msq.TokenLayout((4, 3, 8))
