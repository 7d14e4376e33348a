"""The bulk sampler: PRNG key -> architectures, one pure jitted function, sharded.

  sampler = Sampler.from_run(stage1.load(workdir), SamplerConfig(prior="codes"))
  out = sampler.generate(jax.random.key(0), 100_000)        # host arrays
  for chunk in sampler.iter_chunks(key, 10_000_000): ...    # bounded memory

Underneath is one function,

  sample_chunk(consts, key, start, cond, *, spec) -> Generated

whose arrays (decoder weights, fused table, prior tables, grammar masks) are jit
arguments and whose static `spec` (space, token layout, prior plug-in, decoding mode,
chunk size, device mesh) is hashable. A `Sampler` is only that pair, immutable: a new
temperature or chunk size is a new spec (`with_config`), not a new object to build.

Per architecture (the prior path of DESIGN §4, no network but the decoder):

  1. the prior draws its token indices from `fold_in(key, i)` and the condition;
  2. decoding: the fused table (a gather and a sum, `fused.py`) or the unfused decoder;
  3. argmax ops, threshold the adjacency, optionally under the space's grammar.

Nothing reduces across the batch, so a seed gives the same architectures whatever the
chunk size and however many devices share a chunk. A chunk is a fixed size: one
compile serves every chunk, and the chunk's start index is a traced argument.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterator, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pnag_jax import config as config_lib
from pnag_jax.errors import PnagError
from pnag_jax.generation import constraints
from pnag_jax.generation import fused as fused_lib
from pnag_jax.generation.priors import Prior, make_prior
from pnag_jax.models import msq
from pnag_jax.models.decoder import split_logits
from pnag_jax.models.vqvae import hard_decode
from pnag_jax.stages.stage1 import Stage1Model, Stage1Run

_BATCH = "batch"


#: Architecture indices are folded into 32-bit PRNG keys, as seeds are.
MAX_INDEX = config_lib.MAX_SEED


def check_range(num: int, *, start: int = 0, seed: int | None = None) -> None:
  """Architectures `start .. start + num - 1` of `seed` can be drawn, or a one-line error.

  Keys are `fold_in(key(seed), i)`: JAX keeps a seed's low 32 bits, so seeds 5 and
  2**32 + 5 would draw the same archs, and an index past 2**32 - 1 wraps.
  """
  if num < 0 or start < 0:
    raise PnagError(f"architecture range must be >= 0, got start {start}, num {num}")
  if start + num > MAX_INDEX:
    raise PnagError(f"at most 2**32 - 1 architectures per seed, got {start + num}")
  if seed is not None:
    config_lib.check_seed(seed, "--seed")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """How to generate; the user-facing settings, checked on construction.

  Attributes:
    prior: a registered prior (`priors.PRIORS`): "codes" (default), "latent", "fitted".
    temperature: None takes the prior's natural default (1 for `codes`: the fitted
      categoricals as they are; 0 for the latent priors: argmin); see each prior.
    cfg_scale, top_k, top_p: the `ar` prior's classifier-free guidance and filters
      (0, 0, 1: off); any other prior refuses them.
    constrained: mask the decoder's logits with the space's grammar.
    fused: decode through the per-token table; None = wherever it fits the budget.
    chunk_size: architectures per compiled call.
    table_budget_bytes: the largest fused table that `fused=None` will build.
  """

  prior: str = "codes"
  temperature: float | None = None
  cfg_scale: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  constrained: bool = False
  fused: bool | None = None
  chunk_size: int = 8192
  table_budget_bytes: int = fused_lib.DEFAULT_TABLE_BUDGET_BYTES

  def __post_init__(self):
    self.make_prior()  # checks the prior's settings
    if self.chunk_size < 1:
      raise PnagError(f"chunk size must be positive, got {self.chunk_size}")

  def make_prior(self) -> Prior:
    """The prior with the options that differ from their defaults."""
    defaults = {"cfg_scale": 0.0, "top_k": 0, "top_p": 1.0}
    options = {k: getattr(self, k) for k, d in defaults.items() if getattr(self, k) != d}
    return make_prior(self.prior, self.temperature, **options)

  def replace(self, **kw) -> "SamplerConfig":
    return dataclasses.replace(self, **kw)

  def for_num(self, num: int, devices=None) -> "SamplerConfig":
    """This config with chunks no larger than `num` archs need: a larger compiled call
    draws rows only to trim them, and its memory grows with the chunk (about 5 KB an
    arch on NB201). The rows are the same for any chunk size.

    The chunk is then rounded up to a multiple of the device count (`devices`, default
    all): a chunk is sharded over as many devices as divide it (`batch_mesh`), and an
    odd `num`, or the default 8,192 on 3 devices, would put the whole chunk on one.
    """
    n = len(devices or jax.devices())
    return self.replace(chunk_size=-(-max(1, min(self.chunk_size, num)) // n) * n)


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
  """Everything static about a sampler: hashable, a static argument under jit."""

  model: Stage1Model
  prior: Prior
  constrained: bool
  fused: bool
  chunk_size: int
  mesh: Mesh

  @property
  def space(self):
    return self.model.space

  def sharding(self, batched: bool) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec(_BATCH) if batched else PartitionSpec())


class Generated(NamedTuple):
  """One batch of generated architectures (host or device arrays)."""

  genes: np.ndarray         # int32[B, G]; in range even where the decoded graph is invalid
  valid: np.ndarray         # bool[B]: strict validity of the decoded (ops, adj)
  format_valid: np.ndarray  # bool[B]: DiffusionNAG's format validity


@functools.lru_cache(maxsize=None)
def batch_mesh(chunk_size: int, devices: tuple = ()) -> Mesh:
  """A 1-D mesh over as many devices as divide the chunk (all of them for sane sizes)."""
  devices = devices or tuple(jax.devices())
  return Mesh(np.array(devices[:math.gcd(chunk_size, len(devices))]), (_BATCH,))


# ---- the pure function ------------------------------------------------------------------


def decode_logits(consts: dict, op_logits: jax.Array, adj_logits: jax.Array, *,
                  spec: SamplerSpec) -> tuple[jax.Array, jax.Array]:
  """One architecture's logits `[N, K]`, `[N, N]` -> (ops, adj), under the grammar
  when the spec decodes constrained."""
  if spec.constrained:
    return spec.space.constrained_decode(op_logits, adj_logits, consts["op_mask"],
                                         consts["adj_mask"], consts["adj_fixed"])
  return hard_decode(op_logits, adj_logits)


def decode_tokens(consts: dict, tokens: jax.Array, *,
                  spec: SamplerSpec) -> tuple[jax.Array, jax.Array]:
  """One architecture's token indices int32[P] -> (ops int32[N], adj bool[N, N])."""
  layout, n = spec.model.layout, spec.space.num_nodes
  chex.assert_shape(tokens, (layout.num_tokens,))
  if spec.fused:
    pre = fused_lib.fused_pre_activation(consts["table"], consts["b1"], tokens)
  else:
    parts = [t[None] for t in layout.split(tokens)]
    e_hat = msq.decode_indices(parts, consts["codebook"], n)[-1]
    pre = jnp.dot(e_hat.reshape(-1), consts["w1"],
                  precision=jax.lax.Precision.HIGHEST) + consts["b1"]
  # The decoder's second layer on the raw params, then the hard decode.
  logits = jnp.dot(jax.nn.relu(pre), consts["w2"]) + consts["b2"]
  op_logits, adj_logits = split_logits(logits, n, spec.space.num_ops)
  return decode_logits(consts, op_logits, adj_logits, spec=spec)


def _one(consts: dict, key: jax.Array, cond: Any, *, spec: SamplerSpec) -> Generated:
  tokens = spec.prior.draw(consts, key, cond, spec.model)
  ops, adj = decode_tokens(consts, tokens, spec=spec)
  space = spec.space
  return Generated(space.decode(ops, adj), space.strict_valid(ops, adj),
                   space.format_valid(ops, adj))


def arch_key(key: jax.Array, i: jax.Array) -> jax.Array:
  """Architecture i's key, whatever chunk or device it lands on."""
  return jax.random.fold_in(key, i)



@functools.partial(jax.jit, static_argnames="spec")
def sample_chunk(consts: dict, key: jax.Array, start: jax.Array, cond: Any, *,
                 spec: SamplerSpec) -> Generated:
  """Architectures `start .. start + spec.chunk_size - 1` of the stream `key`.

  Args:
    consts: the arrays of `build_consts`, replicated over `spec.mesh`.
    key: the stream's PRNG key.
    start: uint32 index of the chunk's first architecture (traced: one compile).
    cond: the condition pytree, shared by the chunk; `()` for unconditional priors.
    spec: the static spec.

  Returns:
    `Generated` device arrays, sharded over the mesh along the batch.
  """
  batched = spec.sharding(batched=True)
  ids = jax.lax.with_sharding_constraint(
      start + jnp.arange(spec.chunk_size, dtype=jnp.uint32), batched)
  row = lambda i: _one(consts, arch_key(key, i), cond, spec=spec)  # noqa: E731
  out = map_rows(row, ids, spec.chunk_size // spec.mesh.size)
  return jax.lax.with_sharding_constraint(out, batched)


def map_rows(fn, ids: jax.Array, rows_per_device: int):
  """`jax.vmap(fn)(ids)`, never compiled for one row a device.

  XLA compiles a batch of one as another program (the batch axis is squeezed away and
  the rest fused anew): the fitted prior's `mean + std * e` then differs in its last
  bit, and at a near-tie so does a code's argmin. A row would then depend on the chunk
  size and device count (`pnag generate --num 1`, or 8 archs on 8 devices), so a batch
  of one is drawn twice and the first copy kept.
  """
  if rows_per_device > 1:
    return jax.vmap(fn)(ids)
  return jax.tree.map(lambda x: x[::2], jax.vmap(fn)(jnp.repeat(ids, 2)))


# ---- building one ------------------------------------------------------------------------


def build_consts(run: Stage1Run, prior: Prior, *, fused: bool, constrained: bool) -> dict:
  """The sampler's arrays from a loaded run: decoder weights, table, prior, masks."""
  model, dec = run.model, run.params["decoder"]
  consts = {
      "codebook": jnp.asarray(run.params["codebook"], jnp.float32),
      "b1": jnp.asarray(dec["hidden"]["bias"]),
      "w2": jnp.asarray(dec["out"]["kernel"]),
      "b2": jnp.asarray(dec["out"]["bias"]),
      "prior": jax.tree.map(jnp.asarray, prior.tables(run)),
  }
  if fused:
    consts["table"] = fused_lib.build_table(consts["codebook"],
                                            jnp.asarray(dec["hidden"]["kernel"]),
                                            model.scales, model.space.num_nodes)
  else:
    consts["w1"] = jnp.asarray(dec["hidden"]["kernel"])
  if constrained:
    consts["op_mask"], consts["adj_mask"], consts["adj_fixed"] = map(
        jnp.asarray, constraints.grammar_masks(model.space))
  return consts


@dataclasses.dataclass(frozen=True)
class Sampler:
  """A static spec and its arrays (placed on the spec's mesh). Immutable."""

  spec: SamplerSpec
  consts: dict
  #: The devices chunks may be sharded over (empty: all of `jax.devices()`).
  devices: tuple = ()

  @classmethod
  def from_run(cls, run: Stage1Run, cfg: SamplerConfig = SamplerConfig(),
               devices=None) -> "Sampler":
    """Builds the arrays once: the prior's tables, the fused table, the masks."""
    prior = cfg.make_prior().bind(run)
    model = run.model
    fused = cfg.fused
    if fused is None:
      fused = fused_lib.table_bytes(model.layout, model.codebook_size,
                                    model.decoder_hidden) <= cfg.table_budget_bytes
    devices = tuple(devices or ())
    spec = SamplerSpec(model, prior, cfg.constrained, fused, cfg.chunk_size,
                       batch_mesh(cfg.chunk_size, devices))
    consts = build_consts(run, prior, fused=fused, constrained=cfg.constrained)
    return cls(spec, jax.device_put(consts, spec.sharding(batched=False)), devices)

  @property
  def space(self):
    return self.spec.space

  @property
  def chunk_size(self) -> int:
    return self.spec.chunk_size

  def with_chunk_size(self, chunk_size: int) -> "Sampler":
    """The same sampler in chunks of another size: same arrays, another static spec."""
    if chunk_size < 1:
      raise PnagError(f"chunk size must be positive, got {chunk_size}")
    spec = dataclasses.replace(self.spec, chunk_size=chunk_size,
                               mesh=batch_mesh(chunk_size, self.devices))
    return Sampler(spec, jax.device_put(self.consts, spec.sharding(batched=False)),
                   self.devices)

  def replicate(self, tree):
    """`tree` placed like the sampler's arrays, so it can join them in one jitted call."""
    return jax.device_put(tree, self.spec.sharding(batched=False))

  def chunk(self, key: jax.Array, start: int, cond: Any = ()) -> Generated:
    """Architectures `start .. start + chunk_size - 1` of the stream `key` (device arrays)."""
    if jax.tree.leaves(cond) and not self.spec.prior.takes_condition:
      raise PnagError(f"prior {self.spec.prior.name!r} takes no condition")
    return sample_chunk(self.consts, key, jnp.uint32(start), cond, spec=self.spec)

  def iter_chunks(self, key: jax.Array, num: int, cond: Any = (),
                  start: int = 0) -> Iterator[Generated]:
    """Host chunks covering architectures `start .. start + num - 1`; the last is trimmed.

    A block that starts past 0 (one process's share of a multi-process run) holds the
    same architectures as those rows of a run from 0: only the global index keys them.
    The next chunk is dispatched before the current one is copied to the host, so the
    device and the host transfer overlap.
    """
    check_range(num, start=start)
    cs = self.chunk_size
    starts = list(range(start, start + num, cs))
    pending = self.chunk(key, starts[0], cond) if starts else None
    for i, first in enumerate(starts):
      current = pending
      pending = self.chunk(key, starts[i + 1], cond) if i + 1 < len(starts) else None
      host = jax.device_get(current)
      k = min(cs, start + num - first)
      yield Generated(*(np.asarray(a)[:k] for a in host))

  def generate(self, key: jax.Array, num: int, cond: Any = ()) -> Generated:
    """`num` architectures as host arrays."""
    chunks = list(self.iter_chunks(key, num, cond))
    if not chunks:
      g = self.space.num_genes
      return Generated(np.zeros((0, g), np.int32), np.zeros((0,), bool), np.zeros((0,), bool))
    return Generated(*(np.concatenate(parts) for parts in zip(*chunks)))


__all__ = ["Generated", "Sampler", "SamplerConfig", "SamplerSpec", "arch_key",
           "build_consts", "decode_logits", "decode_tokens", "map_rows", "sample_chunk"]
