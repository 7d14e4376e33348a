"""`pnag demo`: the main job on NB201, end to end on a laptop.

Until stage 1 lands this reports the uniform-random baseline that every PNAG table
is compared against: bulk sampling, validity / uniqueness / novelty (exact and
isomorphism-aware) against the seeded training half, and NB201 accuracy of what was
sampled when the data directory is available.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax import metrics
from pnag_jax.data import NB201Data, nb201 as nb201_data
from pnag_jax.data.splits import nb201_split
from pnag_jax.errors import DataError, PnagError
from pnag_jax.spaces import get_space, nb201


def _sample_and_score(space, key, num, train_keys_exact, train_keys_iso):
  genes = space.sample(key, num)
  ops, adj = space.encode(genes)
  strict = space.strict_valid(ops, adj)
  fmt = space.format_valid(ops, adj)
  exact = metrics.vun(strict, space.exact_key(genes), train_keys_exact)
  iso = metrics.vun(strict, space.iso_key(genes), train_keys_iso)
  return genes, {"format_validity": jnp.mean(fmt), "exact": exact, "iso": iso}


def run(num: int = 100_000, seed: int = 0, data_dir: str | None = None) -> dict:
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  space = get_space("nb201")
  train_codes, _ = nb201_split(seed=0)
  train_genes = jnp.asarray(nb201.genes_of_code(train_codes))
  train_exact, train_iso = space.exact_key(train_genes), space.iso_key(train_genes)

  score = jax.jit(_sample_and_score, static_argnums=(0, 2))
  key = jax.random.key(seed)
  score(space, key, num, train_exact, train_iso)[0].block_until_ready()  # compile
  t0 = time.perf_counter()
  genes, report = score(space, key, num, train_exact, train_iso)
  genes.block_until_ready()
  seconds = time.perf_counter() - t0
  report = jax.tree.map(float, report)
  report.update(num=num, seconds=seconds, archs_per_s=num / seconds, device=str(jax.devices()[0]))

  print(f"pnag demo: NB201, uniform random baseline, {num:,} archs on {report['device']}")
  print(f"  sample + validity + V/U/N: {seconds * 1e3:.1f} ms ({report['archs_per_s']:,.0f} archs/s)")
  print(f"  format validity {100 * report['format_validity']:.2f}%")
  for kind in ("exact", "iso"):
    r = report[kind]
    print(f"  [{kind:5s}] validity {100 * r['validity']:.2f}%  uniqueness "
          f"{100 * r['uniqueness']:.2f}%  novelty {100 * r['novelty']:.2f}% (vs seeded train half)")

  try:
    data = NB201Data.from_dir(data_dir)
    report["accuracy"] = {}
    for col in nb201_data.ACCURACY_COLUMNS:
      acc = np.asarray(data.lookup(col, genes))
      report["accuracy"][col] = {"mean": float(acc.mean()), "max": float(acc.max())}
      print(f"  {col}: mean {acc.mean():.2f}, max {acc.max():.2f}")
  except DataError as e:
    if data_dir is not None:  # asked for explicitly: a bad directory is an error
      raise
    print(f"  (no NB201 accuracies: {e})")
  return report
