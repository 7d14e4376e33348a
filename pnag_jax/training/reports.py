"""The end of every training run: the final metrics row and `report.json`."""

from __future__ import annotations

import json
from pathlib import Path


def write_final(out_dir: Path, step: int, report: dict) -> None:
  """Appends the `final` row to `metrics.jsonl` and writes `report.json` atomically
  (a reader never sees half a report; a killed run keeps the old one)."""
  with (out_dir / "metrics.jsonl").open("a") as log:
    log.write(json.dumps({"step": step, "split": "final", **report}) + "\n")
  tmp = out_dir / "report.json.tmp"
  tmp.write_text(json.dumps(report, indent=2))
  tmp.replace(out_dir / "report.json")
