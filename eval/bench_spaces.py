"""Throughput of the spaces' batched, jitted primitives; writes a JSON report.

  python eval/bench_spaces.py --out eval/reports/bench_spaces.json
  python eval/bench_spaces.py --spaces nb201 mbv3 --batch-sizes 65536 1048576

Each primitive is timed on device-resident inputs, warm (compiled once beforehand),
as the best of `--repeats` calls with `block_until_ready`. Archs/s = batch / seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from pnag_jax import atomic
from pnag_jax.spaces import SPACE_NAMES, get_space


def _time(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def bench_space(name: str, batch_sizes: list[int], repeats: int) -> dict:
  space = get_space(name)
  primitives = {
      "encode": (jax.jit(space.encode), "genes"),
      "decode": (jax.jit(space.decode), "dense"),
      "format_valid": (jax.jit(space.format_valid), "dense"),
      "strict_valid": (jax.jit(space.strict_valid), "dense"),
      "exact_key": (jax.jit(space.exact_key), "genes"),
      "iso_key": (jax.jit(space.iso_key), "genes"),
  }
  out = {}
  for b in batch_sizes:
    genes = jax.jit(space.sample, static_argnums=1)(jax.random.key(0), b)
    dense = jax.jit(space.encode)(genes)
    row = {}
    for pname, (fn, kind) in primitives.items():
      args = (genes,) if kind == "genes" else dense
      sec = _time(fn, *args, repeats=repeats)
      row[pname] = {"seconds": sec, "archs_per_s": b / sec}
    out[str(b)] = row
    print(f"{name:16s} batch {b:>9,d}: " + "  ".join(
        f"{p} {r['archs_per_s'] / 1e6:6.2f}M/s" for p, r in row.items()), flush=True)
  best = {p: max(out[str(b)][p]["archs_per_s"] for b in batch_sizes) for p in primitives}
  return {"per_batch": out, "best_archs_per_s": best}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--spaces", nargs="+", default=list(SPACE_NAMES), choices=SPACE_NAMES)
  parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2**14, 2**17, 2**20])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="eval/reports/bench_spaces.json")
  args = parser.parse_args()
  if args.repeats < 1 or min(args.batch_sizes) < 1:
    parser.error("--repeats and every --batch-sizes must be >= 1")

  report = {
      "benchmark": "bench_spaces",
      "device": str(jax.devices()[0]),
      "device_kind": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(),
      "cpu_count": os.cpu_count(),
      "platform": platform.platform(),
      "jax": jax.__version__,
      "numpy": np.__version__,
      "batch_sizes": args.batch_sizes,
      "repeats": args.repeats,
      "spaces": {},
  }
  for name in args.spaces:
    report["spaces"][name] = bench_space(name, args.batch_sizes, args.repeats)
  path = Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_json(path, report)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
