"""Collects stage-1 reports into one JSON file and a Markdown table.

  python eval/summarize_stage1.py runs --out eval/reports/stage1_runs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pnag_jax import atomic


def _fmt(values: list[float], digits: int) -> str:
  return " ".join(f"{v:.{digits}f}" for v in values)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", help="directory holding <name>/stage1/report.json")
  parser.add_argument("--out", default="eval/reports/stage1_runs.json")
  args = parser.parse_args()

  rows = {}
  for report in sorted(Path(args.runs).glob("*/stage1/report.json")):
    name = report.parent.parent.name
    config = json.loads((report.parent / "config.json").read_text())
    rows[name] = {"report": json.loads(report.read_text()), "config": config}
  if not rows:
    raise SystemExit(f"no */stage1/report.json under {args.runs}")

  print("| run | steps | train s | held-out exact | train exact | step validity t=1..T "
        "| prefix error t=1..T |")
  print("|---|---|---|---|---|---|---|")
  for name, row in rows.items():
    r = row["report"]
    print(f"| {name} | {r['steps']} | {r['train_seconds']:.1f} | {r['heldout_exact_match']:.4f} "
          f"| {r['train_exact_match']:.4f} | {_fmt(r['step_validity'], 3)} "
          f"| {_fmt(r['prefix_error'], 4)} |")
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_json(out, rows)
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
