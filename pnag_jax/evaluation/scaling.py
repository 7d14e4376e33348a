"""How generation throughput scales with devices and with processes.

  pnag eval scaling --workdir runs/nb201 --out eval/reports/scaling

Two sweeps, each point its own process (`scaling_worker.py`), so that every point
gets the device count it asks for:

  devices    one process with 1, 2, 4, 8 devices (fake CPU devices on a CPU host,
             the first N real ones on an accelerator; counts beyond the host's are
             recorded as skipped);
  processes  1, 2 local processes of JAX's multi-process runtime, each with
             `--process-devices` CPU devices, each drawing its block of the same
             `num` archs (the layout of `pnag generate --num-processes`).

At each chunk size, throughput is archs per second from PRNG key to host arrays
(generation without writing), from a barrier after every process has compiled to
the moment the last one is done. Efficiency is throughput over linear scaling from
the smallest count: 1.0 is perfect, 1/n is no gain at all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.generation import multihost

DEVICES = (1, 2, 4, 8)
PROCESSES = (1, 2)
CHUNK_SIZES = (4096, 16384, 65536)


def _worker_env(devices: int, cpu_only: bool) -> dict:
  env = dict(os.environ)
  # The fake CPU device count is read once, when a process starts its backend.
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
  if cpu_only:
    env["JAX_PLATFORMS"] = "cpu"
  return env


def run_workers(workdir: str, devices: int, processes: int, chunk_sizes, num: int,
                repeats: int = 3, cpu_only: bool = False, timeout: float = 1800) -> list[dict]:
  """Rows of one point: `processes` workers with `devices` each; process 0's rows."""
  cmd = [sys.executable, "-m", "pnag_jax.evaluation.scaling_worker", "--workdir",
         str(workdir), "--devices", str(devices), "--num", str(num), "--repeats", str(repeats),
         "--chunk-sizes", ",".join(map(str, chunk_sizes))]
  if processes > 1:
    cmd += ["--coordinator", f"localhost:{multihost.free_local_port()}", "--num-processes", str(processes)]
  env = _worker_env(devices, cpu_only or processes > 1)
  results = multihost.run_local(
      [(cmd + (["--process-id", str(i)] if processes > 1 else []), env)
       for i in range(processes)], timeout)
  for _, err, code in results:
    if code != 0:
      lines = [l for l in err.splitlines() if "error" in l.lower()] or err.splitlines() or [""]
      raise PnagError(f"scaling worker ({processes} x {devices} devices) failed: {lines[-1]}")
  # The runtime's own libraries (Gloo) print to stdout too: the report is the last line.
  measured = [json.loads(out.strip().splitlines()[-1]) for out, _, _ in results]
  # Process 0's rows, with the slowest process's own time (each process's clock starts
  # at the same barrier).
  return [{**row, "last_process_seconds": max(r[i]["process_seconds"] for r in measured)}
          for i, row in enumerate(measured[0])]


def _with_efficiency(rows: list[dict], axis: str) -> list[dict]:
  """Adds `speedup` and `efficiency` against the smallest `axis` at the same chunk size."""
  out = []
  for row in rows:
    base = min((r for r in rows if r["chunk"] == row["chunk"]), key=lambda r: r[axis])
    speedup = row["archs_per_s"] / base["archs_per_s"]
    out.append({**row, "speedup": speedup, "efficiency": speedup / (row[axis] / base[axis])})
  return out


def run(workdir: str, out: str | Path, *, devices=DEVICES, processes=PROCESSES,
        chunk_sizes=CHUNK_SIZES, num: int = 2**20, process_devices: int = 1,
        repeats: int = 3, progress: bool = True) -> dict:
  # The workers load the run; checked here too (this process imports no JAX), so a
  # wrong --workdir leaves no --out behind.
  if not (Path(workdir) / "stage1").is_dir():
    raise PnagError(f"no stage-1 run under {workdir}; train one with `pnag train stage1`")
  for n in sorted({*devices, process_devices}):
    odd = [c for c in chunk_sizes if c % n]
    if odd:  # it would run on as many devices as divide it (`sampler.batch_mesh`)
      raise PnagError(f"--chunk-sizes {','.join(map(str, odd))}: not a multiple of {n} "
                      "devices; a chunk is split evenly over a process's devices")
  out = reports.out_dir(out)
  device_rows, skipped = [], []
  for n in devices:
    try:
      rows = run_workers(workdir, n, 1, chunk_sizes, num, repeats)
    except PnagError as e:
      if "devices asked for" not in str(e):
        raise
      skipped.append({"devices": n, "reason": str(e)})
      continue
    device_rows += rows
    if progress:
      print("  devices " + ", ".join(f"{n} x chunk {r['chunk']}: {r['archs_per_s']:,.0f}/s"
                                     for r in rows), flush=True)
  process_rows = []
  for p in processes:
    rows = run_workers(workdir, process_devices, p, chunk_sizes, num, repeats, cpu_only=True)
    process_rows += rows
    if progress:
      print("  processes " + ", ".join(f"{p} x chunk {r['chunk']}: {r['archs_per_s']:,.0f}/s"
                                       for r in rows), flush=True)
  first = (device_rows or process_rows)[0]
  report = {
      "workdir": str(workdir), "space": first["space"], "num": num, "repeats": repeats,
      "definition": "archs/s, PRNG key to host arrays (no file), after compilation; "
                    "efficiency = speedup / (count / smallest count)",
      "machine": {"cpu_count": os.cpu_count(), "host": platform.platform(),
                  "platform": first["platform"]},
      "devices": _with_efficiency(device_rows, "devices"), "skipped": skipped,
      "process_devices": process_devices,
      "processes": _with_efficiency(process_rows, "processes"),
  }
  reports.write_outputs(out, "scaling", report, format_table, _plot)
  return report


def format_table(report: dict) -> str:
  def rows(key, axis):
    return [[r[axis], f"{r['chunk']:,}", f"{r['archs_per_s']:,.0f}", f"{r['speedup']:.2f}",
             f"{r['efficiency']:.2f}", f"{r['first_call_seconds']:.2f}"]
            for r in report[key]]
  head = ["{}", "chunk", "archs/s", "speedup", "efficiency", "first call s"]
  m = report["machine"]
  return "\n\n".join([
      f"{report['space']}: {report['num']:,} archs per point on {m['platform']} "
      f"({m['cpu_count']} CPUs); {report['definition']}",
      "devices, one process:", reports.table([head[0].format("devices")] + head[1:],
                                             rows("devices", "devices")),
      f"processes, {report['process_devices']} device(s) each:",
      reports.table([head[0].format("processes")] + head[1:], rows("processes", "processes")),
  ] + ([f"skipped: {', '.join(s['reason'] for s in report['skipped'])}"]
       if report["skipped"] else []))


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, key in zip(axes, ("devices", "processes")):
    rows = report[key]
    for cs in sorted({r["chunk"] for r in rows}):
      pts = sorted((r[key], r["archs_per_s"]) for r in rows if r["chunk"] == cs)
      ax.plot(*zip(*pts), marker="o", label=f"chunk {cs:,}")
      base = pts[0]
      ax.plot([x for x, _ in pts], [base[1] * x / base[0] for x, _ in pts], ls=":",
              color=ax.lines[-1].get_color(), alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"{key} (dotted: linear scaling)")
    ax.set_ylabel("archs / s")
    ax.grid(True, alpha=0.3)
    if rows:  # a sweep left out (`run(devices=())`) leaves an empty panel
      ax.legend(fontsize=8)
  axes[0].set_title(f"{report['space']}: one process")
  axes[1].set_title(f"{report['process_devices']} device(s) per process")
  reports.save_figure(fig, path)


def _ints(text: str) -> tuple[int, ...]:
  try:
    values = tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise PnagError(f"expected comma-separated integers, got {text!r}") from None
  if not values or min(values) < 1:
    raise PnagError(f"expected positive integers, got {text!r}")
  return values


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Generation throughput against device count (one process) and against "
                   "process count (JAX's multi-process runtime, local processes), at "
                   "several chunk sizes, with the efficiency against linear scaling.")
  p.epilog = "example:\n  pnag eval scaling --workdir runs/nb201 --out eval/reports/scaling"
  p.add_argument("--workdir", required=True, help="a trained stage-1 run")
  p.add_argument("--devices", default=",".join(map(str, DEVICES)),
                 help="device counts of the one-process sweep")
  p.add_argument("--processes", default=",".join(map(str, PROCESSES)),
                 help="process counts of the multi-process sweep (local processes)")
  p.add_argument("--process-devices", type=int, default=1,
                 help="CPU devices per process in the process sweep")
  p.add_argument("--chunk-sizes", default=",".join(map(str, CHUNK_SIZES)),
                 help="archs per compiled call, each measured apart")
  p.add_argument("--num", type=int, default=2**20, help="archs per point")
  p.add_argument("--repeats", type=int, default=3, help="timed passes per point (median)")
  p.add_argument("--out", required=True, help="output directory (scaling.json, .md, .png)")


def main(args: argparse.Namespace) -> None:
  if min(args.num, args.process_devices, args.repeats) < 1:
    raise PnagError("--num, --process-devices and --repeats must be positive")
  report = run(args.workdir, args.out, devices=_ints(args.devices),
               processes=_ints(args.processes), chunk_sizes=_ints(args.chunk_sizes),
               num=args.num, process_devices=args.process_devices, repeats=args.repeats)
  print(format_table(report))
  print(f"\nwrote {args.out}/scaling.json, scaling.md, scaling.png")
