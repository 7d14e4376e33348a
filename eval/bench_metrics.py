"""Bulk metrics benchmark: V/U/N and the NB201 look-up over millions of archs, jitted.

  python eval/bench_metrics.py --out eval/reports/bench_metrics.json [--data-dir D]

Archs are uniform NB201 samples (the metric cost does not depend on where they came
from); timings are warm, device arrays in, scalars out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax

from pnag_jax import atomic, metrics
from pnag_jax.data import NB201Data
from pnag_jax.data.splits import nb201_split
from pnag_jax.spaces import get_space, nb201


def _time(f, *args, reps=3):
  jax.block_until_ready(f(*args))
  best = float("inf")
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--sizes", type=int, nargs="*", default=[10**5, 10**6, 10**7])
  ap.add_argument("--data-dir", default=os.environ.get("PNAG_DATA_DIR"))
  ap.add_argument("--out", default="eval/reports/bench_metrics.json")
  args = ap.parse_args(argv)
  space = get_space("nb201")
  train = nb201.genes_of_code(nb201_split(0)[0])
  ref = jax.jit(space.exact_key)(train)
  table = NB201Data.from_dir(args.data_dir).metric("cifar10_test_acc") if args.data_dir else None

  @jax.jit
  def vun_fn(genes, reference):
    ops, adj = space.encode(genes)
    return metrics.vun(space.strict_valid(ops, adj), space.exact_key(genes), reference)

  @jax.jit
  def iso_vun_fn(genes, reference):
    ops, adj = space.encode(genes)
    return metrics.vun(space.strict_valid(ops, adj), space.iso_key(genes), reference)

  rows = []
  for n in args.sizes:
    genes = jax.jit(space.sample, static_argnums=1)(jax.random.key(0), n)
    row = {"num": n, "vun_exact_s": _time(vun_fn, genes, ref),
           "vun_iso_s": _time(iso_vun_fn, genes, jax.jit(space.iso_key)(train))}
    if table is not None:
      look = jax.jit(lambda g, t: t[nb201.code_of_genes(g)].mean())
      row["nb201_lookup_s"] = _time(look, genes, jax.numpy.asarray(table))
    rows.append(row)
    print(json.dumps(row), flush=True)
  report = {"device": str(jax.devices()[0]), "cpu_count": os.cpu_count(), "rows": rows}
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  atomic.write_json(args.out, report)
  return 0


if __name__ == "__main__":
  sys.exit(main())
