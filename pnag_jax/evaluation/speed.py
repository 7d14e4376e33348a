"""Generation speed, end to end: PRNG key -> decoded int arrays on the host.

For each path (prior x fused/unfused decoding, and stage 2's `ar` prior where the
workdir has one) and each batch size 1, 2, 4, ..., one
compiled call generates a whole batch, and the clock stops when the genes and validity
flags are NumPy arrays on the host. Reported per path: latency at batch 1 (jitted,
warm; median of many calls), throughput per batch size, FLOPs per architecture from
XLA's cost analysis, and the fraction of this machine's matmul peak (measured in the
same run) that the path reaches. A batch whose compiled program would need more memory
than the budget is skipped and recorded as such rather than run out of memory, and a slow
path stops at the batch where one call would take longer than `max_call_seconds`.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.generation import Sampler, SamplerConfig, sample_chunk
from pnag_jax.stages import stage1

#: name -> sampler settings of every prior path (stage 1 only), measured by default.
PATHS = {
    "codes+fused": {"prior": "codes", "fused": True},
    "codes+unfused": {"prior": "codes", "fused": False},
    "fitted+fused": {"prior": "fitted", "fused": True},
    "latent+fused": {"prior": "latent", "fused": True},
}
#: The AR paths, measured by default where the workdir holds a stage 2 (`ar+cfg` only
#: where that stage 2 is conditional: an unconditional one has nothing to guide).
AR_PATHS = {
    "ar": {"prior": "ar", "fused": True},
    "ar+cfg": {"prior": "ar", "fused": True, "cfg_scale": 1.5},
}
#: The path that every other path's throughput is reported against.
BASELINE = "codes+fused"


def default_paths(workdir: str | Path) -> dict[str, dict]:
  """PATHS, plus the AR paths that the workdir's stage 2 (if any) supports."""
  from pnag_jax.stages import stage2  # pylint: disable=g-import-not-at-top
  paths = dict(PATHS)
  cfg2 = stage2.read_config(workdir)
  if cfg2 is not None:
    paths["ar"] = AR_PATHS["ar"]
    if cfg2.condition != "none":
      paths["ar+cfg"] = AR_PATHS["ar+cfg"]
  return paths


def select_paths(workdir: str | Path, names: str | None) -> dict[str, dict]:
  """`--paths a,b`: those of PATHS and AR_PATHS; None: `default_paths`."""
  if names is None:
    return default_paths(workdir)
  known = {**PATHS, **AR_PATHS}
  out = {}
  for name in filter(None, (n.strip() for n in names.split(","))):
    if name not in known:
      raise PnagError(f"unknown path {name!r}; choose from {', '.join(known)}")
    out[name] = known[name]
  if not out:
    raise PnagError("--paths names no path")
  return out


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def available_bytes() -> int:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 8 << 30


def matmul_peak_gflops(n: int = 2048, seconds: float = 1.0) -> float:
  """Best observed float32 matmul rate on the default device, GFLOP/s."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best, t_end = float("inf"), time.perf_counter() + seconds
  while time.perf_counter() < t_end:
    t0 = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best / 1e9


def _cost(compiled) -> tuple[float, int]:
  """(FLOPs, temp bytes) of a compiled call, from XLA's analyses."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = float((cost or {}).get("flops", 0.0))
  mem = compiled.memory_analysis()
  temp = int(getattr(mem, "temp_size_in_bytes", 0) + getattr(mem, "output_size_in_bytes", 0)
             ) if mem is not None else 0
  return flops, temp


def time_call(sampler: Sampler, key, min_seconds: float, min_reps: int = 3,
              max_reps: int = 1000) -> tuple[float, int]:
  """Median seconds of one end-to-end call, and how many calls were timed."""
  jax.device_get(sampler.chunk(key, 0))  # warm
  times, start = [], 0
  t_end = time.perf_counter() + min_seconds
  while len(times) < min_reps or (time.perf_counter() < t_end and len(times) < max_reps):
    start += sampler.chunk_size
    t0 = time.perf_counter()
    out = jax.device_get(sampler.chunk(key, start % (2**31)))
    np.asarray(out.genes)
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), len(times)


#: Archs generated once per path to report its validity beside its speed.
VALIDITY_SAMPLE = 4096


def _validity(gen: Sampler, n: int) -> dict:
  o = gen.generate(jax.random.key(1), n)
  return {"validity": float(o.format_valid.mean()), "strict_validity": float(o.valid.mean()),
          "sample": n}


def run(workdir: str, out: str | Path, *, max_log2: int = 20, paths: dict | None = None,
        min_seconds: float = 0.3, memory_fraction: float = 0.5, max_call_seconds: float = 30.0,
        progress: bool = True) -> dict:
  """Measures every path in `paths` at batch sizes 1 .. 2**max_log2.

  A path stops growing its batch when the next call is predicted (twice the last) to
  exceed `max_call_seconds`, or when its compiled program exceeds the memory budget;
  both are recorded under `skipped`.
  """
  if max_log2 < 0:
    raise PnagError(f"--max-log2 must be >= 0 (batch 1 only), got {max_log2}")
  paths = default_paths(workdir) if paths is None else paths
  trained = stage1.load(workdir)
  out = reports.out_dir(out)  # once the run is known to load
  peak = matmul_peak_gflops()
  budget = int(available_bytes() * memory_fraction)
  key = jax.random.key(0)
  report = {"workdir": str(workdir), "space": trained.space.name,
            "definition": "PRNG key -> decoded int arrays (genes, validity) on the host",
            "machine": reports.machine(), "matmul_peak_gflops": peak,
            "memory_budget_bytes": budget, "paths": {}}
  for name, settings in paths.items():
    rows, skipped = [], []
    validity = None
    # The arrays (fused table, prior tables) are built once per path; each batch size
    # is only another static spec.
    base = Sampler.from_run(trained, SamplerConfig(**settings, chunk_size=1))
    for log2 in range(max_log2 + 1):
      b = 2**log2
      gen = base.with_chunk_size(b)
      compiled = sample_chunk.lower(gen.consts, key, jnp.uint32(0), (), spec=gen.spec).compile()
      flops, temp = _cost(compiled)
      if temp > budget:
        skipped.append({"batch": b, "needs_bytes": temp, "reason": "over memory budget"})
        break
      sec, reps = time_call(gen, key, min_seconds if b > 1 else 2 * min_seconds,
                            min_reps=3 if b < 2**16 else 2)
      rows.append({"batch": b, "seconds": sec, "archs_per_s": b / sec, "reps": reps,
                   "flops_per_arch": flops / b,
                   "fraction_of_matmul_peak": (flops / sec / 1e9) / peak})
      if b >= VALIDITY_SAMPLE and validity is None:
        validity = _validity(gen, b)
      if progress:
        print(f"  {name:15s} batch {b:8d}: {b / sec:12,.0f} archs/s", flush=True)
      if 2 * sec > max_call_seconds and log2 < max_log2:
        skipped.append({"batch": 2 * b, "reason": f"predicted call > {max_call_seconds} s"})
        break
    if validity is None and rows:
      # The path stopped below the sample size (a small --max-log2, the memory budget or
      # the call cutoff): sample at its largest batch, or at the full sample where its
      # measured rate makes that affordable.
      last = rows[-1]
      full = VALIDITY_SAMPLE / last["archs_per_s"] <= max_call_seconds
      validity = _validity(base.with_chunk_size(last["batch"]),
                           VALIDITY_SAMPLE if full else last["batch"])
    best = max(rows, key=lambda r: r["archs_per_s"])
    report["paths"][name] = {
        "prior": settings["prior"], "fused": settings["fused"],
        "settings": settings, "latency_batch1_ms": rows[0]["seconds"] * 1e3,
        "best_archs_per_s": best["archs_per_s"], "best_batch": best["batch"],
        "fraction_of_matmul_peak_at_best": best["fraction_of_matmul_peak"],
        "validity_sample": validity, "throughput": rows, "skipped": skipped,
    }
  if BASELINE in report["paths"]:
    base_rate = report["paths"][BASELINE]["best_archs_per_s"]
    for p in report["paths"].values():
      p["throughput_ratio_to_" + BASELINE.replace("+", "_")] = p["best_archs_per_s"] / base_rate
  report["peak_rss_mb"] = peak_rss_mb()
  reports.write_outputs(out, "speed", report, format_table, _plot)
  return report


def format_table(report: dict) -> str:
  rows = []
  for name, p in report["paths"].items():
    v = p["validity_sample"] or {}
    rows.append([name, f"{p['latency_batch1_ms']:.3f}", f"{p['best_archs_per_s']:,.0f}",
                 f"{p['best_batch']:,}", f"{100 * p['fraction_of_matmul_peak_at_best']:.2f}",
                 f"{100 * v.get('validity', float('nan')):.2f}",
                 f"{100 * v.get('strict_validity', float('nan')):.2f}"])
  head = (f"{report['space']} on {report['machine']['device_kind']} "
          f"({report['machine']['cpu_count']} CPUs), matmul peak "
          f"{report['matmul_peak_gflops']:.1f} GFLOP/s, peak RSS {report['peak_rss_mb']:.0f} MB")
  return head + "\n\n" + reports.table(
      ["path", "batch-1 latency ms", "best archs/s", "at batch", "% matmul peak",
       "validity %", "strict valid %"], rows)


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for name, p in report["paths"].items():
    t = p["throughput"]
    ax.plot([r["batch"] for r in t], [r["archs_per_s"] for r in t], marker="o", ms=3,
            label=name)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("batch size (archs per call)")
  ax.set_ylabel("archs / s, key to host arrays")
  ax.set_title(f"{report['space']} generation, {report['machine']['device_kind']}")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  reports.save_figure(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Generation speed, PRNG key to decoded int arrays on the host: batch-1 "
                   "latency and throughput at batch 1 .. 2**MAX_LOG2 for each path (prior x "
                   "fused/unfused decoding), peak RSS and the share of the machine's "
                   "measured matmul peak.")
  p.epilog = "example:\n  pnag eval speed --workdir runs/nb201 --out eval/reports/speed"
  p.add_argument("--workdir", required=True, help="a trained stage-1 run")
  p.add_argument("--max-log2", type=int, default=20, help="largest batch is 2**this")
  p.add_argument("--paths", default=None,
                 help="comma-separated paths to measure, of " + ", ".join({**PATHS, **AR_PATHS})
                      + " (default: every prior path, and ar where WORKDIR holds a stage 2)")
  p.add_argument("--out", required=True, help="output directory (speed.json, .md, .png)")


def main(args: argparse.Namespace) -> None:
  report = run(args.workdir, args.out, max_log2=args.max_log2,
               paths=select_paths(args.workdir, args.paths))
  print(format_table(report))
  print(f"\nwrote {args.out}/speed.json, speed.md, speed.png")
