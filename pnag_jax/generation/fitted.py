"""Statistics of the encoded training architectures, saved beside the checkpoint.

Two of the generation priors (`priors.py`) are fitted here, in place of the VAE's
N(0, I) (DESIGN §4):

* a diagonal Gaussian over the latent map `e [N, N, C]` (mean and std of the encoder's
  mu over the training archs);
* the **code prior**: for every token (scale t, position) a categorical over the V
  codewords, the empirical frequency of MSQ's choices on the training encodings.
  Sampling it skips latent sampling and the argmins altogether.

Only strictly valid training archs are encoded: the NB201 training half also holds the
disconnected cells that fell into it, and a generator should learn the valid ones.
Unseen codewords get probability 0 (log-prob -inf), so they are never drawn.

The file records the sha256 of the params it was fitted with: a file fitted on other
params (a run trained anew in the same workdir, to the same step) is refitted, not read.
"""

from __future__ import annotations

import functools
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from pnag_jax import atomic
from pnag_jax.errors import PnagError
from pnag_jax.stages import lineage
from pnag_jax.stages.stage1 import Stage1Model, Stage1Run

FIT_CHUNK = 1024
#: Archs encoded to fit the priors: the first this many of the training split (which is
#: in random order). 100,000 pins every token's code frequencies to about +-0.3%.
MAX_FIT_ARCHS = 100_000
_VERSION = 1


class FittedPriors(NamedTuple):
  """Host arrays. `code_logprobs[p]` is token p's categorical in MSQ token order
  (scale-major, then row-major within the scale)."""

  latent_mean: np.ndarray      # float32[N, N, C]
  latent_std: np.ndarray       # float32[N, N, C]
  code_logprobs: np.ndarray    # float32[P, V], -inf where a code was never chosen
  num_archs: int               # training archs the priors were fitted on
  params_sha256: str = ""      # of the params they were fitted with; "" where unknown


@functools.partial(jax.jit, static_argnames="model")
def _encode_chunk(params: dict, genes: jax.Array, *, model: Stage1Model):
  """(strictly valid bool[B], encoder mean [B, N, N, C], code indices int32[B, P])."""
  vqvae = model.merge(params)
  ops, adj = model.space.encode(genes)
  mu, _ = vqvae.encode(ops, adj)
  tokens = model.layout.flatten(vqvae.quantize(mu).indices)
  return model.space.strict_valid(ops, adj), mu, tokens


def fit_priors(run: Stage1Run, genes: np.ndarray | None = None) -> FittedPriors:
  """Encodes `genes` (default: the training split) and fits both priors."""
  m = run.model
  genes = run.train_genes() if genes is None else np.asarray(genes, np.int32)
  genes = genes[:MAX_FIT_ARCHS]
  p, v = m.layout.num_tokens, m.codebook_size
  counts = np.zeros((p, v), np.int64)
  n_total = 0
  s1 = s2 = 0.0
  for start in range(0, genes.shape[0], FIT_CHUNK):
    chunk = genes[start:start + FIT_CHUNK]
    k = chunk.shape[0]
    if k < FIT_CHUNK:  # pad to the fixed chunk shape; padded rows are masked below
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], FIT_CHUNK - k, 0)])
    valid, mu, flat = jax.device_get(_encode_chunk(run.params, chunk, model=m))
    keep = valid.copy()
    keep[k:] = False
    mu64 = mu[keep].astype(np.float64)
    s1 = s1 + mu64.sum(0)
    s2 = s2 + (mu64 * mu64).sum(0)
    n_total += int(keep.sum())
    rows = flat[keep]                                  # [b, P]
    np.add.at(counts, (np.broadcast_to(np.arange(p), rows.shape), rows), 1)
  if n_total == 0:
    raise PnagError("no strictly valid training architectures to fit the priors on")
  mean = s1 / n_total
  std = np.sqrt(np.maximum(s2 / n_total - mean * mean, 0.0))
  with np.errstate(divide="ignore"):
    logprobs = np.log(counts / counts.sum(1, keepdims=True))
  return FittedPriors(mean.astype(np.float32), std.astype(np.float32),
                      logprobs.astype(np.float32), n_total, lineage.params_sha256(run.params))


def priors_path(run: Stage1Run) -> Path:
  return run.workdir / "stage1" / "priors" / f"step_{run.step}.npz"


def save_priors(priors: FittedPriors, path: str | Path) -> None:
  """Atomic: a run killed mid-write leaves the previous file (or none), never half of one.

  Raises:
    PnagError: one line, where the file system refuses the write.
  """
  with atomic.open_replacing(path, "wb", parents=True) as f:
    np.savez(f, version=_VERSION, latent_mean=priors.latent_mean,
             latent_std=priors.latent_std, code_logprobs=priors.code_logprobs,
             num_archs=priors.num_archs, params_sha256=priors.params_sha256)


def load_priors(path: str | Path, run: Stage1Run | None = None) -> FittedPriors:
  """Reads a priors file, checking its shapes against `run`'s model when given."""
  path = Path(path)
  try:
    with np.load(path) as z:
      if int(z["version"]) != _VERSION:
        raise PnagError(f"{path}: priors format version {int(z['version'])}, "
                        f"expected {_VERSION}")
      # Files written before the hash was recorded have none: "" (refitted).
      priors = FittedPriors(z["latent_mean"], z["latent_std"], z["code_logprobs"],
                            int(z["num_archs"]),
                            str(z["params_sha256"]) if "params_sha256" in z else "")
  except PnagError:
    raise
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise PnagError(f"corrupt priors file {path}: {type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}") from e
  if run is not None:
    n, m = run.space.num_nodes, run.model
    want = ((n, n, m.dim), (m.layout.num_tokens, m.codebook_size))
    if (priors.latent_mean.shape, priors.code_logprobs.shape) != want:
      raise PnagError(f"{path}: priors shapes {priors.latent_mean.shape}, "
                      f"{priors.code_logprobs.shape} do not match the model {want}")
  return priors


def fitted_priors(run: Stage1Run, *, refit: bool = False) -> FittedPriors:
  """The run's priors: read from beside the checkpoint, or fitted and saved there once.

  The file is a cache: a stage-1 run shared read-only still generates, refitting the
  priors (seconds) on every call, and says so on stderr each time. A file fitted on
  other params than the run's is refitted.
  """
  path = priors_path(run)
  if path.exists() and not refit:
    # Unchecked against the model's shapes: those of other params may differ.
    cached = load_priors(path)
    if cached.params_sha256 == lineage.params_sha256(run.params):
      return cached
  priors = fit_priors(run)
  try:
    save_priors(priors, path)
  except PnagError as e:
    print(f"pnag: note: {e}; the fitted priors are used without being cached",
          file=sys.stderr)
  return priors
