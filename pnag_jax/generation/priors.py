"""Priors: how one architecture's code indices are drawn. Plug-ins behind one protocol.

A prior has two halves:

* `tables(run)`, on the host, once: the arrays it needs from a loaded run (fitted
  categoricals, a fitted Gaussian, later a transformer's params). They become jit
  *arguments* of the sampler, under `consts["prior"]`, never closed over;
* `draw(consts, key, cond, model)`, pure and per architecture: int32[P] token indices
  in MSQ order (`model.layout`), from one key and a condition pytree (empty for the
  unconditional priors here).

A prior instance is a frozen dataclass of its static settings (the temperature), so
it is hashable and part of the sampler's static spec. Register a new prior with
`@register`; `pnag generate --prior NAME` and every protocol can then use it.

Built in (DESIGN §4):

* `codes`: every token from its categorical fitted on the training encodings (Walker
  alias tables, O(1) per token). No latent, no argmin.
* `latent`: a latent map from the VAE prior N(0, I), then MSQ: argmin, or sampling
  from softmax(-distance / temperature).
* `fitted`: the same from the diagonal Gaussian fitted to the training encodings.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.generation.fitted import fitted_priors
from pnag_jax.models import msq
from pnag_jax.stages.stage1 import Stage1Model, Stage1Run


#: The smallest temperature above 0; 0 itself takes the mode. Near float32's limit
#: (about 1e-37 for distances of order 1 to 1,000) `-distance / t` is -inf for every
#: codeword, and a draw over all -inf is one fixed codeword, not the mode; the codes
#: prior's float64 breaks likewise near 1e-307. This floor leaves distances and logits
#: up to about 1e8 finite, and at it the draw is the mode already (a quick NB201 run's
#: file at 1e-30 equals the one at 0, for the latent and the codes prior).
MIN_TEMPERATURE = 1e-30


@dataclasses.dataclass(frozen=True)
class Prior(abc.ABC):
  """One way of drawing an architecture's code indices.

  Attributes:
    temperature: what it means is the prior's own (see each prior); None takes the
      prior's `default_temperature`.
  """

  name: ClassVar[str]
  #: The temperature that reproduces the prior as fitted or as the VAE defines it.
  default_temperature: ClassVar[float]
  #: Whether `draw` reads `cond` (stage 2, guidance); unconditional priors refuse one.
  takes_condition: ClassVar[bool] = False

  temperature: float | None = None

  def __post_init__(self):
    t = self.temperature
    if t is not None and not (t >= 0 and math.isfinite(t)):
      raise PnagError(f"temperature must be a finite number >= 0, got {t}")
    if t is not None and 0 < t < MIN_TEMPERATURE:
      raise PnagError(f"temperature must be 0 (the mode) or at least {MIN_TEMPERATURE:g}, "
                      f"got {t:g}: dividing by less overflows, and the draw is the mode "
                      "before that")

  @property
  def tau(self) -> float:
    return self.default_temperature if self.temperature is None else float(self.temperature)

  def bind(self, run: Stage1Run) -> "Prior":
    """This prior with whatever static parts it takes from a run (stage 2's graph for
    `ar`); the sampler calls it once, before `tables`."""
    del run
    return self

  @abc.abstractmethod
  def tables(self, run: Stage1Run) -> dict[str, Any]:
    """Host-side arrays this prior needs from a trained run (may be empty)."""

  @abc.abstractmethod
  def draw(self, consts: dict, key: jax.Array, cond: Any, model: Stage1Model) -> jax.Array:
    """One architecture's token indices int32[P]; pure, vmapped by the sampler.

    `consts["prior"]` holds `tables(run)`; `consts["codebook"]` the codebook.
    """


PRIORS: dict[str, type[Prior]] = {}


def register(cls: type[Prior]) -> type[Prior]:
  PRIORS[cls.name] = cls
  return cls


def make_prior(name: str, temperature: float | None = None, **options) -> Prior:
  """The registered prior `name` with its temperature and its own options (the `ar`
  prior's `cfg_scale`, `top_k`, `top_p`).

  Raises:
    PnagError: an unknown name, a bad temperature, or an option the prior lacks.
  """
  if name not in PRIORS:
    raise PnagError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}")
  cls = PRIORS[name]
  fields = {f.name for f in dataclasses.fields(cls) if f.init}
  for opt in options:
    if opt not in fields:
      flag = "--" + opt.replace("_", "-")
      raise PnagError(f"{flag} applies to the ar prior only, not to {name!r}")
  return cls(temperature, **options)


# ---- codes ---------------------------------------------------------------------------


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


@register
@dataclasses.dataclass(frozen=True)
class CodesPrior(Prior):
  """Per-token categoricals fitted on the training encodings.

  The temperature tempers them: 1 as fitted, < 1 sharper, > 1 flatter, 0 each mode.
  """

  name: ClassVar[str] = "codes"
  default_temperature: ClassVar[float] = 1.0

  def tables(self, run: Stage1Run) -> dict[str, Any]:
    logprobs = fitted_priors(run).code_logprobs
    if logprobs.shape[0] != run.model.layout.num_tokens:
      raise PnagError("code prior does not match the model's scales")
    accept, alias = alias_tables(tempered_probs(logprobs, self.tau))
    return {"accept": accept, "alias": alias}

  def draw(self, consts, key, cond, model):
    del cond, model
    accept, alias = consts["prior"]["accept"], consts["prior"]["alias"]
    p, v = accept.shape
    x = jax.random.uniform(key, (p,), jnp.float32) * v
    col = jnp.minimum(x.astype(jnp.int32), v - 1)
    rows = jnp.arange(p)
    keep = (x - col) < accept[rows, col]
    return jnp.where(keep, col, alias[rows, col])


# ---- latent ----------------------------------------------------------------------------


@register
@dataclasses.dataclass(frozen=True)
class LatentPrior(Prior):
  """The VAE prior N(0, I) over the latent map, quantized by MSQ.

  Temperature 0 takes each scale's nearest codeword (argmin); t > 0 samples codewords
  from softmax(-distance / t).
  """

  name: ClassVar[str] = "latent"
  default_temperature: ClassVar[float] = 0.0

  def tables(self, run: Stage1Run) -> dict[str, Any]:
    del run
    return {}

  def latent(self, consts, key, model) -> jax.Array:
    n = model.space.num_nodes
    return jax.random.normal(key, (1, n, n, model.dim), jnp.float32)

  def draw(self, consts, key, cond, model):
    del cond
    n = model.space.num_nodes
    k_lat, k_code = jax.random.split(key)
    e = self.latent(consts, k_lat, model)
    z = consts["codebook"]
    rest, idx = e, []
    for t, s in enumerate(model.scales):
      d = msq.distances(msq.pool(rest, s), z)                       # [1, s, s, V]
      if self.tau == 0:
        i = jnp.argmin(d, -1)
      else:
        i = jax.random.categorical(jax.random.fold_in(k_code, t), -d / self.tau)
      i = i.astype(jnp.int32)
      rest = rest - msq.upsample(jnp.take(z, i, axis=0), n)
      idx.append(i.reshape(-1))
    return jnp.concatenate(idx)


@register
@dataclasses.dataclass(frozen=True)
class FittedLatentPrior(LatentPrior):
  """A diagonal Gaussian fitted to the training encodings, quantized by MSQ."""

  name: ClassVar[str] = "fitted"

  def tables(self, run: Stage1Run) -> dict[str, Any]:
    fitted = fitted_priors(run)
    return {"mean": fitted.latent_mean, "std": fitted.latent_std}

  def latent(self, consts, key, model) -> jax.Array:
    e = super().latent(consts, key, model)
    return consts["prior"]["mean"] + consts["prior"]["std"] * e
