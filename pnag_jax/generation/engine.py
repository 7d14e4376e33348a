"""The bulk generation engine: PRNG key -> architectures, jit over vmap, sharded.

Prior path (DESIGN §4), no network but the decoder:

  1. draw code indices for every token, either
     * `latent` / `fitted`: sample a latent map from N(0, I) or from the Gaussian fitted
       to the training encodings, then run MSQ, choosing each codeword by argmin or by
       sampling over `-distance / temperature`; or
     * `codes`: sample each token straight from its fitted categorical (the code prior);
  2. decode: the fused table (a gather and a sum, `fused.py`) or the unfused decoder;
  3. argmax ops, threshold the adjacency, optionally under the space's grammar.

Every architecture `i` draws from its own key `fold_in(key, i)`, and nothing reduces
across the batch, so a seed gives the same architectures whatever the chunk size and
however many devices share a chunk. A chunk is a fixed size: one compile serves every
chunk, and the chunk's start index is a traced argument.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pnag_jax.errors import PnagError
from pnag_jax.generation import constraints
from pnag_jax.generation import fused as fused_lib
from pnag_jax.generation.loading import TrainedStage1
from pnag_jax.generation.priors import FittedPriors, num_tokens
from pnag_jax.models import msq
from pnag_jax.models.decoder import split_logits
from pnag_jax.models.vqvae import hard_decode

PRIORS = ("latent", "fitted", "codes")
_BATCH = "batch"


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
  """How to generate. Frozen and hashable: it is static under jit.

  Attributes:
    prior: "latent" (the VAE prior N(0, I)), "fitted" (diagonal Gaussian fitted to the
      training encodings) or "codes" (per-token categoricals fitted on the training
      encodings).
    temperature: None picks the natural default: argmin (0) for the latent priors, the
      fitted categoricals as they are (1) for `codes`. Latent priors with t > 0 sample
      codewords from softmax(-distance / t); `codes` with t sharpens (t < 1) or
      flattens (t > 1) the categoricals, and t = 0 takes each token's mode.
    constrained: mask the decoder's logits with the space's grammar.
    fused: decode through the per-token table; None = wherever it fits the budget.
    chunk_size: architectures per compiled call.
    table_budget_bytes: the largest fused table that `fused=None` will build.
  """

  prior: str = "codes"
  temperature: float | None = None
  constrained: bool = False
  fused: bool | None = None
  chunk_size: int = 8192
  table_budget_bytes: int = fused_lib.DEFAULT_TABLE_BUDGET_BYTES

  def __post_init__(self):
    if self.prior not in PRIORS:
      raise PnagError(f"unknown prior {self.prior!r}; choose one of {', '.join(PRIORS)}")
    if self.temperature is not None and not (self.temperature >= 0 and
                                             math.isfinite(self.temperature)):
      raise PnagError(f"temperature must be a finite number >= 0, got {self.temperature}")
    if self.chunk_size < 1:
      raise PnagError(f"chunk size must be positive, got {self.chunk_size}")

  @property
  def tau(self) -> float:
    if self.temperature is not None:
      return float(self.temperature)
    return 1.0 if self.prior == "codes" else 0.0


class Generated(NamedTuple):
  """One batch of generated architectures (host or device arrays)."""

  genes: np.ndarray         # int32[B, G]; in range even where the decoded graph is invalid
  valid: np.ndarray         # bool[B]: strict validity of the decoded (ops, adj)
  format_valid: np.ndarray  # bool[B]: DiffusionNAG's format validity


def tempered_probs(logprobs: np.ndarray, tau: float) -> np.ndarray:
  """float64[P, V] categoricals `p^(1/tau)` renormalised; tau = 0 is each token's mode."""
  lp = np.asarray(logprobs, np.float64)
  seen = np.isfinite(lp)
  if not seen.any(axis=1).all():
    raise PnagError("a token of the code prior has no codeword with positive probability")
  if tau == 0:
    probs = np.zeros_like(lp)
    probs[np.arange(lp.shape[0]), np.argmax(np.where(seen, lp, -np.inf), 1)] = 1.0
    return probs
  z = np.where(seen, lp / tau, -np.inf)
  z -= z.max(1, keepdims=True)
  probs = np.exp(z)
  return probs / probs.sum(1, keepdims=True)


def alias_tables(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Walker/Vose alias tables for each row of `probs [P, V]`.

  A draw is one uniform u: column j = floor(u V), keep j if frac(u V) < accept[j],
  else take alias[j]. That is O(1) per token (two gathers), where an inverse-CDF draw
  compares against all V entries. Codes with probability 0 are never returned: round-off
  leftovers are patched so that they always defer to their alias.

  Returns:
    (accept float32[P, V], alias int32[P, V]).
  """
  p_rows, v = probs.shape
  accept = np.ones((p_rows, v), np.float64)
  alias = np.tile(np.arange(v, dtype=np.int32), (p_rows, 1))
  for r in range(p_rows):
    scaled = probs[r] * v
    small = [j for j in range(v) if scaled[j] < 1.0]
    large = [j for j in range(v) if scaled[j] >= 1.0]
    while small and large:
      s, l = small.pop(), large.pop()
      accept[r, s], alias[r, s] = scaled[s], l
      scaled[l] -= 1.0 - scaled[s]
      (small if scaled[l] < 1.0 else large).append(l)
    zero = probs[r] == 0
    accept[r, zero] = 0.0
    alias[r, zero & (alias[r] == np.arange(v))] = int(np.argmax(probs[r]))
  return accept.astype(np.float32), alias


class Generator:
  """Generates architectures from a trained stage-1 run.

  Usage:

    gen = Generator(load_stage1(workdir), fitted_priors(trained), GenerationConfig())
    out = gen.generate(jax.random.key(0), 100_000)   # host arrays
    for chunk in gen.iter_chunks(key, 10_000_000):   # bounded memory
      ...
  """

  def __init__(self, trained: TrainedStage1, priors: FittedPriors | None,
               cfg: GenerationConfig = GenerationConfig(), devices=None):
    self.trained, self.cfg = trained, cfg
    self.space = trained.space
    self.scales = tuple(trained.model.scales)
    mcfg = trained.cfg
    if cfg.prior != "latent" and priors is None:
      raise PnagError(f"prior {cfg.prior!r} needs fitted priors")
    size = fused_lib.table_bytes(self.scales, mcfg.codebook_size, mcfg.decoder_hidden)
    if cfg.fused is None:
      self.fused = size <= cfg.table_budget_bytes
    else:
      self.fused = cfg.fused
    devices = list(jax.devices() if devices is None else devices)
    # Shard a chunk over as many devices as divide it (all of them for sane sizes).
    k = math.gcd(cfg.chunk_size, len(devices))
    self.mesh = Mesh(np.array(devices[:k]), (_BATCH,))
    self._replicated = NamedSharding(self.mesh, PartitionSpec())
    self._sharded = NamedSharding(self.mesh, PartitionSpec(_BATCH))
    self.consts = jax.device_put(self._build_consts(priors), self._replicated)
    self._chunk_fn = jax.jit(self._chunk, out_shardings=self._sharded)

  def replicate(self, tree):
    """`tree` placed like the engine's constants (replicated over its mesh), so it can
    join them in one jitted call."""
    return jax.device_put(tree, self._replicated)

  # ---- constants --------------------------------------------------------------------

  def _build_consts(self, priors: FittedPriors | None) -> dict:
    p = self.trained.params
    dec = p["decoder"]
    consts = {
        "codebook": jnp.asarray(p["codebook"], jnp.float32),
        "b1": jnp.asarray(dec["hidden"]["bias"]),
        "w2": jnp.asarray(dec["out"]["kernel"]),
        "b2": jnp.asarray(dec["out"]["bias"]),
    }
    if self.fused:
      consts["table"] = jax.jit(fused_lib.build_table, static_argnums=(2, 3))(
          consts["codebook"], jnp.asarray(dec["hidden"]["kernel"]), self.scales,
          self.space.num_nodes)
    else:
      consts["w1"] = jnp.asarray(dec["hidden"]["kernel"])
    if self.cfg.prior == "fitted":
      consts["mean"] = jnp.asarray(priors.latent_mean)
      consts["std"] = jnp.asarray(priors.latent_std)
    elif self.cfg.prior == "codes":
      if priors.code_logprobs.shape[0] != num_tokens(self.scales):
        raise PnagError("code prior does not match the model's scales")
      accept, alias = alias_tables(tempered_probs(priors.code_logprobs, self.cfg.tau))
      consts["accept"], consts["alias"] = jnp.asarray(accept), jnp.asarray(alias)
    if self.cfg.constrained:
      consts["op_mask"], consts["adj_mask"], consts["adj_fixed"] = map(
          jnp.asarray, constraints.grammar_masks(self.space))
    return consts

  # ---- one architecture -------------------------------------------------------------

  def _latent_indices(self, consts, key) -> jax.Array:
    n, c = self.space.num_nodes, self.trained.cfg.dim
    k_lat, k_code = jax.random.split(key)
    e = jax.random.normal(k_lat, (1, n, n, c), jnp.float32)
    if self.cfg.prior == "fitted":
      e = consts["mean"] + consts["std"] * e
    z = consts["codebook"]
    rest, idx = e, []
    for t, s in enumerate(self.scales):
      d = msq.distances(msq.pool(rest, s), z)                       # [1, s, s, V]
      if self.cfg.tau == 0:
        i = jnp.argmin(d, -1)
      else:
        i = jax.random.categorical(jax.random.fold_in(k_code, t), -d / self.cfg.tau)
      i = i.astype(jnp.int32)
      rest = rest - msq.upsample(jnp.take(z, i, axis=0), n)
      idx.append(i.reshape(-1))
    return jnp.concatenate(idx)

  def _code_indices(self, consts, key) -> jax.Array:
    accept, alias = consts["accept"], consts["alias"]
    p, v = accept.shape
    x = jax.random.uniform(key, (p,), jnp.float32) * v
    col = jnp.minimum(x.astype(jnp.int32), v - 1)
    rows = jnp.arange(p)
    keep = (x - col) < accept[rows, col]
    return jnp.where(keep, col, alias[rows, col])

  def _pre_activation(self, consts, idx) -> jax.Array:
    if self.fused:
      return fused_lib.fused_pre_activation(consts["table"], consts["b1"], idx)
    n = self.space.num_nodes
    splits = np.cumsum([s * s for s in self.scales])[:-1]
    parts = [i.reshape(1, s, s) for i, s in zip(jnp.split(idx, splits), self.scales)]
    e_hat = msq.decode_indices(parts, consts["codebook"], n)[-1]
    return jnp.dot(e_hat.reshape(-1), consts["w1"], precision=jax.lax.Precision.HIGHEST
                   ) + consts["b1"]

  def _head(self, consts, pre) -> tuple[jax.Array, jax.Array]:
    """The decoder's second layer on the params dict, then the hard decode."""
    logits = jnp.dot(jax.nn.relu(pre), consts["w2"]) + consts["b2"]
    op_logits, adj_logits = split_logits(logits, self.space.num_nodes, self.space.num_ops)
    return self.decode_logits(consts, op_logits, adj_logits)

  def decode_logits(self, consts, op_logits, adj_logits) -> tuple[jax.Array, jax.Array]:
    """One architecture's logits `[N, K]`, `[N, N]` -> (ops, adj), under the grammar
    when the generator decodes constrained."""
    if self.cfg.constrained:
      return self.space.constrained_decode(op_logits, adj_logits, consts["op_mask"],
                                           consts["adj_mask"], consts["adj_fixed"])
    return hard_decode(op_logits, adj_logits)

  def indices(self, consts, key) -> jax.Array:
    """One architecture's code indices int32[P] (MSQ token order)."""
    if self.cfg.prior == "codes":
      return self._code_indices(consts, key)
    return self._latent_indices(consts, key)

  def decode_one(self, consts, idx) -> tuple[jax.Array, jax.Array]:
    """Code indices int32[P] -> hard-decoded (ops int32[N], adj bool[N, N])."""
    chex.assert_shape(idx, (num_tokens(self.scales),))
    return self._head(consts, self._pre_activation(consts, idx))

  def _one(self, consts, key) -> Generated:
    ops, adj = self.decode_one(consts, self.indices(consts, key))
    return Generated(self.space.decode(ops, adj), self.space.strict_valid(ops, adj),
                     self.space.format_valid(ops, adj))

  # ---- chunks -----------------------------------------------------------------------

  def _chunk(self, consts, key, start) -> Generated:
    ids = start + jnp.arange(self.cfg.chunk_size, dtype=jnp.uint32)
    ids = jax.lax.with_sharding_constraint(ids, self._sharded)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, ids)
    return jax.vmap(self._one, in_axes=(None, 0))(consts, keys)

  def generate_chunk(self, key: jax.Array, start: int) -> Generated:
    """Architectures `start .. start + chunk_size - 1` of the stream `key` (device arrays)."""
    return self._chunk_fn(self.consts, key, jnp.uint32(start))

  def iter_chunks(self, key: jax.Array, num: int) -> Iterator[Generated]:
    """Host chunks covering architectures 0 .. num - 1; the last is trimmed.

    The next chunk is dispatched before the current one is copied to the host, so the
    device and the host transfer overlap.
    """
    if num < 0:
      raise PnagError(f"number of architectures must be >= 0, got {num}")
    if num >= 2**32:
      raise PnagError(f"at most 2**32 - 1 architectures per seed, got {num}")
    cs = self.cfg.chunk_size
    starts = list(range(0, num, cs))
    pending = self.generate_chunk(key, starts[0]) if starts else None
    for i, start in enumerate(starts):
      current = pending
      pending = self.generate_chunk(key, starts[i + 1]) if i + 1 < len(starts) else None
      host = jax.device_get(current)
      k = min(cs, num - start)
      yield Generated(*(np.asarray(a)[:k] for a in host))

  def generate(self, key: jax.Array, num: int) -> Generated:
    """`num` architectures as host arrays."""
    chunks = list(self.iter_chunks(key, num))
    if not chunks:
      g = self.space.num_genes
      return Generated(np.zeros((0, g), np.int32), np.zeros((0,), bool), np.zeros((0,), bool))
    return Generated(*(np.concatenate(parts) for parts in zip(*chunks)))
