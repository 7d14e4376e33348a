"""Multi-process benchmark: `pnag generate` of many archs as 2 processes x 4 devices
against one process, and the merged file checked byte for byte.

  python eval/bench_multihost.py --workdir runs/nb201 --num 1000000 \
      --out eval/reports/multihost/million.json

Runs the real commands as child processes on this machine (CPU devices, the runtime
over localhost): the single-process file first, then the P-process run (its wall time
from launch to the last exit, compile and runtime start-up included), then `pnag
generate --merge`, then compares the two files' bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pnag_jax import atomic
from pnag_jax.generation import multihost, parts


def _env(devices: int) -> dict:
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _pnag(*args: str) -> list[str]:
  return [sys.executable, "-m", "pnag_jax.cli", *args]


def _last_lines(text: str, n: int = 3) -> list[str]:
  # Not the runtime's own chatter (Gloo, absl): pnag's lines.
  return [l for l in text.splitlines() if l and not l.startswith(("[Gloo]", "W0", "I0"))][-n:]


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--num", type=int, default=1_000_000)
  ap.add_argument("--processes", type=int, default=2)
  ap.add_argument("--devices", type=int, default=4, help="CPU devices per process")
  ap.add_argument("--single-devices", type=int, default=1,
                  help="CPU devices of the one-process run")
  ap.add_argument("--chunk-size", type=int, default=8192)
  ap.add_argument("--format", default="csv", choices=["csv", "jsonl"])
  ap.add_argument("--data-dir", default=os.environ.get("PNAG_DATA_DIR"))
  ap.add_argument("--out", default="eval/reports/multihost/million.json")
  args = ap.parse_args(argv)
  common = ["generate", "--workdir", args.workdir, "--num", str(args.num),
            "--chunk-size", str(args.chunk_size)]
  if args.data_dir:
    common += ["--data-dir", args.data_dir]
  with tempfile.TemporaryDirectory() as tmp:
    single, multi = Path(tmp) / f"single.{args.format}", Path(tmp) / f"multi.{args.format}"
    t0 = time.perf_counter()
    r = subprocess.run(_pnag(*common, "--out", str(single)), env=_env(args.single_devices),
                       capture_output=True, text=True, check=False)
    single_wall = time.perf_counter() - t0
    if r.returncode != 0:
      print(r.stderr[-2000:], file=sys.stderr)
      return r.returncode
    single_out = _last_lines(r.stdout)

    port = multihost.free_local_port()
    flags = ["--coordinator", f"localhost:{port}", "--num-processes", str(args.processes)]
    t0 = time.perf_counter()
    outs = multihost.run_local(
        [(_pnag(*common, "--out", str(multi), *flags, "--process-id", str(i)),
          _env(args.devices)) for i in range(args.processes)])
    multi_wall = time.perf_counter() - t0
    for _, err, code in outs:
      if code != 0:
        print("\n".join(_last_lines(err, 10)), file=sys.stderr)
        return code or 1
    t0 = time.perf_counter()
    m = subprocess.run(_pnag("generate", "--merge", str(multi)), capture_output=True,
                       text=True, check=False)
    merge_wall = time.perf_counter() - t0
    if m.returncode != 0:
      print(m.stderr, file=sys.stderr)
      return m.returncode
    manifest = json.loads(multi.with_name(multi.name + ".manifest.json").read_text())
    digests = parts.file_sha256(single), parts.file_sha256(multi)
    identical = digests[0] == digests[1] and single.read_bytes() == multi.read_bytes()
    size = single.stat().st_size

  report = {
      "num": args.num, "format": args.format, "chunk_size": args.chunk_size,
      "with_nb201_metrics": bool(args.data_dir),
      "single": {"processes": 1, "devices": args.single_devices, "wall_seconds": single_wall,
                 "archs_per_s": args.num / single_wall, "stdout": single_out},
      "multi": {"processes": args.processes, "devices_per_process": args.devices,
                "wall_seconds": multi_wall, "archs_per_s": args.num / multi_wall,
                "process0_seconds_after_start_up": manifest["seconds"],
                "parts": manifest["part_files"],
                "stdout": [_last_lines(o, 2) for o, _, _ in outs]},
      "merge_wall_seconds": merge_wall,
      "speedup_multi_vs_single": single_wall / multi_wall,
      "file_bytes": size, "sha256": digests[0], "byte_identical": identical,
      "wall_includes": "interpreter and JAX start-up, model load, compilation, writing",
      "machine": platform.platform(), "cpu_count": os.cpu_count(),
      "command": shlex.join(["python", "eval/bench_multihost.py",
                                *(sys.argv[1:] if argv is None else argv)]),
  }
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  atomic.write_json(args.out, report)
  print(json.dumps({k: v for k, v in report.items() if k not in ("single", "multi")}, indent=2))
  print(f"single {single_wall:.1f} s, {args.processes} x {args.devices} devices "
        f"{multi_wall:.1f} s (+ merge {merge_wall:.1f} s); byte-identical: {identical}")
  return 0 if identical else 1


if __name__ == "__main__":
  sys.exit(main())
