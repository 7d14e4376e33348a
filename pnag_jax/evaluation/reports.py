"""Writing reports: atomic JSON, PNG figures (matplotlib, headless) and text tables."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Sequence

import jax

from pnag_jax import atomic
from pnag_jax.atomic import write_json  # re-exported: every protocol writes its JSON here
from pnag_jax.errors import PnagError


def check_sizes(num: int, num_seeds: int) -> None:
  """A one-line error unless a protocol has archs and seeds to measure (before `out_dir`)."""
  if num < 1 or num_seeds < 1:
    raise PnagError(f"--num and --seeds must be >= 1, got {num} and {num_seeds}")


def out_dir(path: str | Path) -> Path:
  path = Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise PnagError(f"cannot create output directory {path}: {e.strerror}") from e
  return path


def write_outputs(out: Path, name: str, report: dict, format_table, plot) -> None:
  """`out/name.json`, `name.md` (`format_table(report)`) and `name.png` (`plot(report, path)`)."""
  write_json(out / f"{name}.json", report)
  atomic.write_text(out / f"{name}.md", format_table(report) + "\n")
  plot(report, out / f"{name}.png")


def figure():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure(fig, path: Path) -> Path:
  try:
    with atomic.replacing(path) as tmp:
      fig.savefig(tmp, dpi=120, bbox_inches="tight")
  finally:
    figure().close(fig)
  return path


def machine() -> dict:
  dev = jax.devices()[0]
  return {
      "device": str(dev), "device_kind": getattr(dev, "device_kind", dev.platform),
      "num_devices": jax.device_count(), "platform": dev.platform,
      "cpu_count": os.cpu_count(), "host": platform.platform(),
      "jax": jax.__version__,
  }


def table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
  """A Markdown table (also readable as plain text)."""
  cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  align = align or "l" + "r" * (len(header) - 1)
  def line(r):
    return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                             for c, w, a in zip(r, widths, align)) + " |"
  sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                       for w, a in zip(widths, align)) + "|"
  return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])
