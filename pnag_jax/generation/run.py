"""`pnag generate`: a trained workdir -> a file of architectures, streamed in chunks."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from pnag_jax.data import NB201Data
from pnag_jax.errors import DataError, PnagError
from pnag_jax.generation.engine import GenerationConfig, Generator
from pnag_jax.generation.loading import load_stage1
from pnag_jax.generation.output import ArchWriter, output_format
from pnag_jax.generation.priors import fitted_priors


def optional_nb201_data(space_name: str, data_dir: str | None) -> NB201Data | None:
  """The NB201 tables when they can be found; an explicit bad `data_dir` is an error."""
  if space_name != "nb201":
    return None
  try:
    return NB201Data.from_dir(data_dir)
  except DataError:
    if data_dir is not None:
      raise
    return None


def load_generator(workdir: str | Path, cfg: GenerationConfig) -> Generator:
  trained = load_stage1(workdir)
  priors = None if cfg.prior == "latent" else fitted_priors(trained)
  return Generator(trained, priors, cfg)


def generate_to_file(workdir: str | Path, num: int, seed: int, out: str | Path,
                     cfg: GenerationConfig, data_dir: str | None = None,
                     progress: bool = True) -> dict:
  """Writes `num` architectures to `out` (.jsonl or .csv); returns a summary."""
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  output_format(out)  # a bad name fails before the model loads
  gen = load_generator(workdir, cfg)
  data = optional_nb201_data(gen.space.name, data_dir)
  key = jax.random.key(seed)
  n_valid = n_format = 0
  keys = []
  t0 = time.perf_counter()
  with ArchWriter(out, gen.space, data) as writer:
    with tqdm(total=num, unit="arch", unit_scale=True, disable=not progress or num < 100_000,
              desc="generate", dynamic_ncols=True) as bar:
      for chunk in gen.iter_chunks(key, num):
        writer.write(chunk)
        n_valid += int(chunk.valid.sum())
        n_format += int(chunk.format_valid.sum())
        # Exact keys of valid rows only: uniqueness over the whole file without
        # holding the rows (NB201: one uint32 per arch).
        keys.append(np.asarray(gen.space.exact_key(chunk.genes[chunk.valid])))
        bar.update(chunk.genes.shape[0])
  seconds = time.perf_counter() - t0
  keys = np.concatenate(keys) if keys else np.zeros((0, gen.space.key_words), np.uint32)
  n_unique = int(np.unique(keys, axis=0).shape[0]) if keys.size else 0
  return {
      "num": num, "out": str(out), "space": gen.space.name, "prior": cfg.prior,
      "temperature": cfg.tau, "constrained": cfg.constrained, "fused": gen.fused,
      "validity": n_valid / num, "format_validity": n_format / num,
      "uniqueness": n_unique / max(n_valid, 1), "seconds": seconds,
      "with_nb201_metrics": data is not None,
  }
