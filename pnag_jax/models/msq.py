"""Multi-scale sub-architecture quantization (MSQ) and the step-wise consistency loss (SCC).

PNAG's MSQ is VAR's multi-scale residual quantizer applied to the pairwise feature map
`e: float32[B, N, N, C]` of an architecture graph (channel-last). For scales
`n_1 < ... < n_T = N`, each step area-pools the current residual to `n_t x n_t`
(PNAG's "regional average aggregation", RAA), snaps every vector to its nearest code in
a shared codebook `Z: float32[V, C]`, interpolates the codes back to `N x N` with
bilinear interpolation, and adds them to the running reconstruction. The running sums
`ê_{<=t}` are the prefix reconstructions that the decoder turns into sub-architectures
`g_t`, and that SCC constrains.

Everything here is a pure function of arrays; the codebook is passed in (the flax
module that owns it lives elsewhere). Resampling uses explicit NumPy-built matrices
that reproduce PyTorch's `F.interpolate(mode="area")` and
`F.interpolate(mode="bilinear", align_corners=False)`; `jax.image.resize` uses other
weights (fractional-overlap area, border renormalisation) and must not be used.

Gradient flow (VAR's split, see `shared/notes/var_notes.md` section 1.4):

* Code *selection* never back-propagates: the residual that feeds the argmins starts
  from `stop_gradient(e)` and is updated with stop-gradiented codes, and the distances
  use `stop_gradient(Z)`. argmin has no gradient anyway; the stop-gradients make that
  explicit and keep dead branches out of the backward pass.
* The codebook lookup `Z[idx]` is *not* stop-gradiented, so every prefix `ê_{<=t}`
  (and every per-scale map) is differentiable in Z and only in Z.
* `vq_loss` splits each prefix term into `mse(sg(e), ê)` (trains Z) and
  `beta * mse(e, sg(ê))` (commitment; trains the encoder). Without the split Z would
  never train, because the decoder reads `straight_through(e, ê)`, whose gradient goes
  to `e` only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST

__all__ = [
    "MSQOutput",
    "TokenLayout",
    "area_matrix",
    "bilinear_matrix",
    "code_counts",
    "codebook_perplexity",
    "decode_indices",
    "distances",
    "nearest_code",
    "pool",
    "quantize",
    "scale_schedule",
    "scc_weights",
    "straight_through",
    "upsample",
    "validate_scales",
    "vq_loss",
    "vq_loss_paper_literal",
]


# --------------------------------------------------------------------------------------
# Resampling matrices (NumPy, built once per size pair).
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _area_matrix_cached(n_out: int, n_in: int) -> np.ndarray:
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    # Integer floor/ceil, exactly as PyTorch's adaptive_avg_pool computes the bins;
    # float division could round 22*7/7 to 21.999... and shift a bin.
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)
    m[i, start:end] = 1.0 / (end - start)
  out = m.astype(np.float32)
  out.setflags(write=False)
  return out


def _check_sizes(n_out: int, n_in: int) -> tuple[int, int]:
  if n_out < 1 or n_in < 1:
    raise ValueError(f"sizes must be positive, got n_out={n_out}, n_in={n_in}")
  return int(n_out), int(n_in)


def area_matrix(n_out: int, n_in: int) -> np.ndarray:
  """PyTorch `area` resize (adaptive average pooling) along one axis.

  Row i averages input indices `floor(i*n_in/n_out) .. ceil((i+1)*n_in/n_out) - 1`
  with equal weights; bins overlap when `n_out` does not divide `n_in`. Returns a
  read-only float32[n_out, n_in], the identity when `n_out == n_in`.
  """
  return _area_matrix_cached(*_check_sizes(n_out, n_in))


@functools.lru_cache(maxsize=None)
def _bilinear_matrix_cached(n_out: int, n_in: int) -> np.ndarray:
  m = np.zeros((n_out, n_in), np.float64)
  scale = n_in / n_out
  for i in range(n_out):
    src = max((i + 0.5) * scale - 0.5, 0.0)
    i0 = min(int(math.floor(src)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    frac = src - i0
    # At the right border i1 == i0 and both weights land on the same tap (PyTorch).
    m[i, i0] += 1.0 - frac
    m[i, i1] += frac
  out = m.astype(np.float32)
  out.setflags(write=False)
  return out


def bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
  """PyTorch `bilinear` resize with `align_corners=False` along one axis.

  `src = (i + 0.5) * n_in / n_out - 0.5`, clamped below at 0; taps
  `i0 = floor(src)`, `i1 = min(i0 + 1, n_in - 1)` with weights `(1 - frac, frac)`.
  No antialiasing (PyTorch's default), so it is only meant for up-sampling here.
  Returns a read-only float32[n_out, n_in], the identity when `n_out == n_in`.
  """
  return _bilinear_matrix_cached(*_check_sizes(n_out, n_in))


def _resize(x: jax.Array, m: np.ndarray) -> jax.Array:
  """Applies the separable resize `m` to both spatial axes of a [B, n, n, C] map."""
  mj = jnp.asarray(m)
  # HIGHEST: on GPU/TPU the default would use TF32/bf16 passes and perturb the argmins.
  return jnp.einsum("ih,bhwc,jw->bijc", mj, x, mj, precision=_HIGHEST)


def _check_square(x: jax.Array) -> int:
  chex.assert_rank(x, 4)
  n = x.shape[1]
  chex.assert_shape(x, (None, n, n, None))
  return n


def _resample(x: jax.Array, n: int, matrix_fn) -> jax.Array:
  n_in = _check_square(x)
  if n == n_in:
    # The last scale skips resampling entirely, as VAR does: exact, not just ~identity.
    return x
  out = _resize(x, matrix_fn(n, n_in))
  chex.assert_shape(out, (x.shape[0], n, n, x.shape[3]))
  return out


def pool(x: jax.Array, n: int) -> jax.Array:
  """Area-pools (RAA) a feature map: float32[B, N, N, C] -> float32[B, n, n, C]."""
  return _resample(x, n, area_matrix)


def upsample(x: jax.Array, n: int) -> jax.Array:
  """Bilinearly interpolates a feature map: float32[B, m, m, C] -> float32[B, n, n, C]."""
  return _resample(x, n, bilinear_matrix)


# --------------------------------------------------------------------------------------
# Vector quantization.
# --------------------------------------------------------------------------------------


def distances(x: jax.Array, codebook: jax.Array) -> jax.Array:
  """Squared Euclidean distances from each vector in `x` to each code.

  Args:
    x: float[..., C] vectors.
    codebook: float[V, C].

  Returns:
    float32[..., V]. Generation samples over `-distances / temperature`.
  """
  chex.assert_rank(codebook, 2)
  chex.assert_equal(x.shape[-1], codebook.shape[-1])
  x = x.astype(jnp.float32)
  codebook = codebook.astype(jnp.float32)
  x2 = jnp.sum(x * x, axis=-1, keepdims=True)
  z2 = jnp.sum(codebook * codebook, axis=-1)
  xz = jnp.einsum("...c,vc->...v", x, codebook, precision=_HIGHEST)
  return x2 - 2.0 * xz + z2


def nearest_code(x: jax.Array, codebook: jax.Array) -> jax.Array:
  """Index of the nearest code for each vector: float[..., C] -> int32[...]."""
  return jnp.argmin(distances(x, codebook), axis=-1).astype(jnp.int32)


# --------------------------------------------------------------------------------------
# Multi-scale residual quantizer.
# --------------------------------------------------------------------------------------


def scale_schedule(n: int, first: int = 3, num: int = 0) -> tuple[int, ...]:
  """The MSQ scales of an N-node space, coarse to fine, ending at N.

  PNAG's default is every size `first, first + 1, ..., N` (3 = input, output and one
  operation). `num = k > 0` keeps k of them, evenly spaced, always ending at N: each
  scale costs a step, and spaces with large N train with fewer.

  Args:
    n: the space's node count N.
    first: the coarsest scale (clipped to N).
    num: 0 for every size, else the number of scales.

  Returns:
    Strictly increasing sizes ending at N.
  """
  if n < 1 or first < 1 or num < 0:
    raise ValueError(f"need N >= 1, first >= 1 and num >= 0, got {n}, {first}, {num}")
  first = min(first, n)
  if num == 0 or num >= n - first + 1:
    return tuple(range(first, n + 1))
  if num == 1:
    return (n,)
  return tuple(sorted({int(round(x)) for x in np.linspace(first, n, num)}))


def validate_scales(scales: Sequence[int] | None, n: int) -> tuple[int, ...]:
  """Returns `scales` as a tuple after checking `1 <= n_1 < ... < n_T = N`."""
  if scales is None:
    return scale_schedule(n)
  scales = tuple(int(s) for s in scales)
  if not scales:
    raise ValueError("scales must be non-empty")
  if scales[0] < 1 or any(a >= b for a, b in zip(scales, scales[1:])):
    raise ValueError(f"scales must be positive and strictly increasing, got {scales}")
  if scales[-1] != n:
    raise ValueError(f"the last scale must equal N={n}, got {scales}")
  return scales


@dataclasses.dataclass(frozen=True)
class TokenLayout:
  """Where each scale's tokens sit in one architecture's flat token sequence.

  Scale-major, then row-major within a scale: the order of MSQ's `indices`, of the
  fitted code prior's rows, of the fused table and of everything generation draws.
  Frozen and hashable, so it can be static under `jit`.
  """

  scales: tuple[int, ...]

  def __post_init__(self):
    validate_scales(self.scales, self.scales[-1] if self.scales else 0)

  @property
  def num_nodes(self) -> int:
    return self.scales[-1]

  @property
  def num_tokens(self) -> int:
    """P = sum over scales of n_t^2."""
    return sum(s * s for s in self.scales)

  @property
  def slices(self) -> tuple[slice, ...]:
    """Per scale, its tokens' slice of the flat sequence."""
    ends = np.cumsum([s * s for s in self.scales]).tolist()
    return tuple(slice(a, b) for a, b in zip([0] + ends[:-1], ends))

  def split(self, tokens: jax.Array) -> list[jax.Array]:
    """Flat `[..., P]` -> per scale `[..., n_t, n_t]`."""
    chex.assert_axis_dimension(tokens, -1, self.num_tokens)
    lead = tokens.shape[:-1]
    return [tokens[..., sl].reshape(lead + (s, s)) for sl, s in zip(self.slices, self.scales)]

  def flatten(self, indices: Sequence[jax.Array]) -> jax.Array:
    """Per scale `[B, n_t, n_t]` (as `quantize` returns them) -> flat `[B, P]`."""
    return jnp.concatenate([i.reshape(i.shape[0], -1) for i in indices], axis=1)


class MSQOutput(NamedTuple):
  """What `quantize` returns (a pytree, so it passes through `jit`).

  Attributes:
    indices: per scale t, int32[B, n_t, n_t] code indices (row-major token order).
    prefixes: float32[T, B, N, N, C]; `prefixes[t]` is the prefix reconstruction
      ê_{<=t+1} = sum_{s<=t} up_s. Differentiable in the codebook only.
    per_scale: float32[T, B, N, N, C]; the interpolated per-scale maps
      up_t = upsample(Z[indices[t]], N), for the paper-literal SCC variant.
    e_hat: float32[B, N, N, C]; the full reconstruction ê == prefixes[-1].
  """

  indices: tuple[jax.Array, ...]
  prefixes: jax.Array
  per_scale: jax.Array
  e_hat: jax.Array


def quantize(
    e: jax.Array, codebook: jax.Array, scales: Sequence[int] | None = None
) -> MSQOutput:
  """Multi-scale residual quantization of a feature map (PNAG Algorithm 1 / VAR).

  For each scale n_t: `idx_t = nearest_code(pool(rest, n_t))`, `z_t = Z[idx_t]`,
  `up_t = upsample(z_t, N)`, `ê += up_t`, `rest -= up_t`. Unlike the literal
  Algorithm 1 (which interpolates the un-quantized pooled map), the quantized codes are
  interpolated, as in VAR: that is what makes ê a function of the indices alone, so
  stage 2 can generate it.

  Jit with `jax.jit(quantize, static_argnames="scales")`; the scale loop is unrolled.

  Args:
    e: float32[B, N, N, C] encoder feature map.
    codebook: float32[V, C] shared codebook Z.
    scales: increasing sizes ending at N; default `scale_schedule(N)`.

  Returns:
    An `MSQOutput`.
  """
  b, n, _, c = e.shape
  chex.assert_shape(e, (b, n, n, c))
  chex.assert_shape(codebook, (None, c))
  scales = validate_scales(scales, n)
  e = e.astype(jnp.float32)
  codebook = codebook.astype(jnp.float32)

  # Selection path: no gradient to the encoder or the codebook (VAR detaches both).
  rest = jax.lax.stop_gradient(e)
  codebook_sg = jax.lax.stop_gradient(codebook)
  e_hat = jnp.zeros_like(e)
  indices, prefixes, per_scale = [], [], []
  for s in scales:
    idx = nearest_code(pool(rest, s), codebook_sg)
    chex.assert_shape(idx, (b, s, s))
    # Not stop-gradiented: this lookup is the codebook's only source of gradient.
    z = jnp.take(codebook, idx, axis=0)
    up = upsample(z, n)
    e_hat = e_hat + up
    # The residual only feeds later argmins; keep its update off the backward pass.
    rest = rest - jax.lax.stop_gradient(up)
    indices.append(idx)
    prefixes.append(e_hat)
    per_scale.append(up)

  t = len(scales)
  prefixes_arr = jnp.stack(prefixes)
  per_scale_arr = jnp.stack(per_scale)
  chex.assert_shape([prefixes_arr, per_scale_arr], (t, b, n, n, c))
  return MSQOutput(
      indices=tuple(indices), prefixes=prefixes_arr, per_scale=per_scale_arr, e_hat=e_hat
  )


def decode_indices(
    indices: Sequence[jax.Array], codebook: jax.Array, n: int
) -> jax.Array:
  """Prefix reconstructions from code indices (the generation-side inverse).

  Args:
    indices: per scale, int[B, n_t, n_t], with the last n_t == n.
    codebook: float32[V, C].
    n: full resolution N.

  Returns:
    float32[T, B, N, N, C]; equals `quantize(...).prefixes` for the same indices.
  """
  validate_scales([idx.shape[1] for idx in indices], n)
  codebook = codebook.astype(jnp.float32)
  e_hat = 0.0
  prefixes = []
  for idx in indices:
    e_hat = e_hat + upsample(jnp.take(codebook, idx, axis=0), n)
    prefixes.append(e_hat)
  return jnp.stack(prefixes)


# --------------------------------------------------------------------------------------
# Losses.
# --------------------------------------------------------------------------------------


def _split_mse(e: jax.Array, targets: jax.Array, beta: float) -> jax.Array:
  """`mse(sg(e), q) + beta * mse(e, sg(q))` per leading index of `targets`."""
  t, b, n, _, c = targets.shape
  chex.assert_shape(e, (b, n, n, c))
  sg = jax.lax.stop_gradient
  axes = (1, 2, 3, 4)
  codebook_term = jnp.mean(jnp.square(sg(e)[None] - targets), axis=axes)
  commitment = jnp.mean(jnp.square(e[None] - sg(targets)), axis=axes)
  out = codebook_term + beta * commitment
  chex.assert_shape(out, (t,))
  return out


def vq_loss(e: jax.Array, prefixes: jax.Array, beta: float = 0.25) -> jax.Array:
  """VAR-split VQ loss of every prefix reconstruction (the default SCC form).

  Per prefix t: `mse(sg(e), ê_{<=t}) + beta * mse(e, sg(ê_{<=t}))`, means over
  B, N, N, C. The first term trains the codebook, the second is the commitment term
  (trains the encoder). Combine with `sum(scc_weights(T, t_max, lam) * vq_loss(...))`:
  the t = T entry is the usual final-step VQ loss and the others are SCC.

  This is the default SCC because ê_{<=t} is exactly what the decoder turns into g_t,
  so constraining it to e constrains the intermediate sub-architectures.

  Args:
    e: float32[B, N, N, C] encoder output.
    prefixes: float32[T, B, N, N, C] from `quantize`.
    beta: commitment weight (VAR and VQ-VAE: 0.25).

  Returns:
    float32[T].
  """
  return _split_mse(e, prefixes, beta)


def vq_loss_paper_literal(
    e: jax.Array, per_scale_upsampled: jax.Array, beta: float = 0.25
) -> jax.Array:
  """VARIANT (not the default): PNAG Eq. 6 read literally.

  Compares e with each interpolated *per-scale* map up_t rather than with the prefix
  sum: `mse(sg(e), up_t) + beta * mse(e, sg(up_t))`. Differences from Eq. 6 as written:
  the squared-mean form and the stop-gradient split replace the unsquared L2 norm, so
  that the codebook trains and the scale matches `vq_loss`. With a residual quantizer
  up_t for t > 1 approximates a residual, not e, so this penalty pulls later codes
  toward e and fights the residual decomposition; it is offered for the ablation only.

  Args:
    e: float32[B, N, N, C] encoder output.
    per_scale_upsampled: float32[T, B, N, N, C], `quantize(...).per_scale`.
    beta: commitment weight.

  Returns:
    float32[T].
  """
  return _split_mse(e, per_scale_upsampled, beta)


def straight_through(e: jax.Array, e_hat: jax.Array) -> jax.Array:
  """Value ê, gradient identity to e: what the decoder reads in training."""
  chex.assert_equal_shape([e, e_hat])
  return e + jax.lax.stop_gradient(e_hat - e)


def scc_weights(t: int, t_max: int, lam: float) -> np.ndarray:
  """Per-step loss weights for `vq_loss`: final step 1, SCC steps lam, others 0.

  Step s (1-based) gets weight 1 if s == T, lam if s <= t_max and s < T, else 0. The
  paper's ablation constrains "the first t_max steps", t_max in 0..T; t_max = T equals
  T - 1 here because the last step always carries the ordinary VQ loss with weight 1.

  Args:
    t: number of steps T.
    t_max: number of constrained steps, 0..T.
    lam: SCC coefficient λ.

  Returns:
    float32[T].
  """
  if t < 1:
    raise ValueError(f"T must be >= 1, got {t}")
  if not 0 <= t_max <= t:
    raise ValueError(f"t_max must be in 0..{t}, got {t_max}")
  w = np.zeros((t,), np.float32)
  w[: min(t_max, t - 1)] = lam
  w[t - 1] = 1.0
  return w


# --------------------------------------------------------------------------------------
# Diagnostics.
# --------------------------------------------------------------------------------------


def code_counts(indices_t: jax.Array, v: int, where: jax.Array | None = None) -> jax.Array:
  """How often each of the V codes was chosen: int32[V].

  Args:
    indices_t: int[B, ...] code indices of one scale.
    v: codebook size V.
    where: optional bool[B]; only these rows count (padding rows of a fixed-size
      batch do not).
  """
  weights = None
  if where is not None:
    chex.assert_shape(where, indices_t.shape[:1])
    weights = jnp.broadcast_to(where.reshape((-1,) + (1,) * (indices_t.ndim - 1)),
                               indices_t.shape).ravel().astype(jnp.int32)
  return jnp.bincount(jnp.ravel(indices_t), weights=weights, length=v)


def codebook_perplexity(counts: jax.Array) -> jax.Array:
  """exp(entropy) of a code histogram `counts [V]` (1 .. V): how many codes are in use.

  Takes counts rather than indices so that histograms of many batches can be summed
  first. Returns a float32 scalar.
  """
  counts = jnp.asarray(counts, jnp.float32)
  p = counts / jnp.maximum(jnp.sum(counts), 1.0)
  # log(1) = 0 for empty bins avoids 0 * log 0 = nan.
  entropy = -jnp.sum(p * jnp.log(jnp.where(p > 0, p, 1.0)))
  return jnp.exp(entropy)
