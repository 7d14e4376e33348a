"""Memory benchmark: `pnag generate` of many archs to a file, peak RSS of the process.

  python eval/bench_generate_file.py --workdir RUN --num 10000000 \
      --out eval/reports/generate_file.json

Runs the real command in a child process and reads the child's peak RSS from
`getrusage(RUSAGE_CHILDREN)`, so nothing in this script's own memory counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pnag_jax import atomic


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--num", type=int, default=10_000_000)
  ap.add_argument("--format", default="csv", choices=["csv", "jsonl"])
  ap.add_argument("--data-dir", default=os.environ.get("PNAG_DATA_DIR"))
  ap.add_argument("--out", default="eval/reports/generate_file.json")
  args = ap.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    target = Path(tmp) / f"archs.{args.format}"
    cmd = [sys.executable, "-m", "pnag_jax.cli", "generate", "--workdir", args.workdir,
           "--num", str(args.num), "--out", str(target)]
    if args.data_dir:
      cmd += ["--data-dir", args.data_dir]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
      print(r.stderr[-2000:], file=sys.stderr)
      return r.returncode
    size = target.stat().st_size
    with target.open() as f:
      lines = sum(1 for _ in f)
  peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
  # The file went to a temporary directory: name it by a placeholder, not this machine's path.
  def shown(text: str) -> str:
    return text.replace(str(target), f"<tmp>/{target.name}")

  report = {"command": shown(" ".join(cmd[1:])), "num": args.num, "format": args.format,
            "wall_seconds": wall, "archs_per_s_incl_writing": args.num / wall,
            "file_bytes": size, "rows_incl_header": lines, "peak_rss_mb": peak_mb,
            "with_nb201_metrics": bool(args.data_dir), "machine": platform.platform(),
            "cpu_count": os.cpu_count(), "stdout": shown(r.stdout).strip().splitlines()}
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  atomic.write_json(args.out, report)
  print(json.dumps({k: v for k, v in report.items() if k != "stdout"}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
