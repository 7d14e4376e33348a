"""One process of `pnag eval scaling`: its block of archs, timed, as JSON on stdout.

  python -m pnag_jax.evaluation.scaling_worker --workdir W --devices 4 \
      --chunk-sizes 4096,65536 --num 1048576 [--coordinator H:P --num-processes 2 \
      --process-id I]

The parent sets the fake CPU device count (XLA_FLAGS) before this process imports
JAX; on an accelerator, `--devices` takes the first N real local devices. Per chunk
size: the first call (compile included) is timed apart; then, `--repeats` times,
every process waits at a barrier, draws its block to host arrays (what `pnag
generate` writes, without the writing), and the clock stops when the last process is
done. The median pass is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.generation import multihost, parts
from pnag_jax.generation.run import load_sampler
from pnag_jax.generation.sampler import SamplerConfig


def measure(workdir: str, devices: int, chunk_sizes: list[int], num: int, seed: int = 0,
            cluster: multihost.Cluster | None = None, repeats: int = 3) -> list[dict]:
  """Throughput of this process's block (all of `num` without a cluster), the median
  of `repeats` passes."""
  local = jax.local_devices()
  if devices > len(local):
    raise PnagError(f"{devices} devices asked for, {len(local)} here")
  pid, count = (cluster.process_id, cluster.num_processes) if cluster else (0, 1)
  start, stop = parts.block(num, count, pid)
  _, base = load_sampler(workdir, SamplerConfig(), devices=local[:devices])
  key = jax.random.key(seed)
  rows = []
  for cs in chunk_sizes:
    sampler = base.with_chunk_size(cs)
    t0 = time.perf_counter()
    jax.block_until_ready(sampler.chunk(key, start))
    compile_s = time.perf_counter() - t0
    times, own = [], []
    for rep in range(repeats):
      if cluster:
        multihost.barrier(f"start-{cs}-{rep}")
      t0 = time.perf_counter()
      for _ in sampler.iter_chunks(key, stop - start, start=start):
        pass
      own.append(time.perf_counter() - t0)
      if cluster:
        multihost.barrier(f"done-{cs}-{rep}")
      times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    used = sampler.spec.mesh.devices.size  # as many as divide the chunk
    rows.append({"processes": count, "devices_per_process": used,
                 "devices": count * used, "chunk": cs, "num": num,
                 "seconds": seconds, "archs_per_s": num / seconds, "repeat_seconds": times,
                 "first_call_seconds": compile_s, "process_seconds": float(np.median(own)),
                 "platform": local[0].platform, "space": base.space.name})
  return rows


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--devices", type=int, required=True)
  ap.add_argument("--chunk-sizes", required=True)
  ap.add_argument("--num", type=int, required=True)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--coordinator")
  ap.add_argument("--num-processes", type=int)
  ap.add_argument("--process-id", type=int)
  args = ap.parse_args(argv)
  try:
    cluster = None
    if args.coordinator is not None:
      cluster = multihost.initialize(multihost.Launch(
          args.coordinator, args.num_processes, args.process_id, init_timeout=120))
    rows = measure(args.workdir, args.devices, [int(c) for c in args.chunk_sizes.split(",")],
                   args.num, args.seed, cluster, args.repeats)
    if cluster:
      multihost.shutdown()
  except PnagError as e:
    print(f"scaling worker: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main())
