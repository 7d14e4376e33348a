"""The rule the surrogate variant tests were preregistered with, applied to their reports.

  python eval/variant_rule.py eval/reports/meta_training_length

A test's folder holds its `rules.md` and one `eval/surrogate_picks.py --draws 20` report
per surrogate seed and leave-dataset-out exclusion, `seed<S>_validation_excl_<dataset>/`,
each comparing the default with the variants on held-out tasks. Per seed, averaged over
the exclusions, a variant passes if its first pick's quantile rises at K = 5 AND at
K = 10 over the baseline's, and its Spearman at both K is no more than 0.01 lower
(`episode_variants`, `task_mix` and `meta_training_length` ask it of every seed;
`rank_temperature`'s rules.md says how its two seeds were read). It reads only those
reports: no model and no data.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from pnag_jax.errors import PnagError

KS = ("5", "10")
SPEARMAN_SLACK = 0.01
REPORT = re.compile(r"seed(\d+)_validation_excl_(.+)")
#: `eval/surrogate_picks.py`'s row for the first run's linear prior: not a variant.
LINEAR = "linear prior"


def seed_means(folder: Path) -> dict[int, dict[str, dict[str, float]]]:
  """{seed: {label: {"top1@5": .., "top1@10": .., "spearman@5": .., "spearman@10": ..,
  "n": exclusions}}}, each a mean over the seed's exclusions."""
  runs = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
  for sub in sorted(folder.iterdir()):
    match = REPORT.fullmatch(sub.name)
    if not match or not (sub / "surrogate_picks.json").is_file():
      continue
    rows = json.loads((sub / "surrogate_picks.json").read_text())["surrogates"]
    for label, row in rows.items():
      for k in KS:
        runs[int(match[1])][label][f"top1@{k}"].append(row["by_k"][k]["top1_quantile"])
        runs[int(match[1])][label][f"spearman@{k}"].append(row["by_k"][k]["spearman"])
  if not runs:
    raise PnagError(f"{folder}: no seed<S>_validation_excl_<dataset>/surrogate_picks.json")
  return {seed: {label: {**{m: float(np.mean(v)) for m, v in metrics.items()},
                         "n": len(metrics["top1@5"])}
                 for label, metrics in labels.items()}
          for seed, labels in sorted(runs.items())}


def passes(variant: dict[str, float], baseline: dict[str, float]) -> bool:
  return all(variant[f"top1@{k}"] > baseline[f"top1@{k}"] for k in KS) and all(
      variant[f"spearman@{k}"] >= baseline[f"spearman@{k}"] - SPEARMAN_SLACK for k in KS)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("folder", type=Path, help="a test's report folder, with its rules.md")
  parser.add_argument("--baseline", default="default", help="the label compared against")
  args = parser.parse_args()
  try:
    means = seed_means(args.folder)
  except PnagError as e:
    raise SystemExit(f"error: {e}") from None
  for seed, labels in means.items():
    if args.baseline not in labels:
      raise SystemExit(f"error: seed {seed} has no {args.baseline!r} row: {', '.join(labels)}")
    print(f"seed {seed}")
    variants = [v for v in labels if v not in (args.baseline, LINEAR)]
    for label in (args.baseline, *variants):
      m = labels[label]
      print(f"  {label:10s} n={m['n']} " + " ".join(
          f"{key}={m[key]:.4f}" for key in ("top1@5", "top1@10", "spearman@5", "spearman@10")))
    for label in variants:
      print(f"  {label} passes: {passes(labels[label], labels[args.baseline])}")


if __name__ == "__main__":
  main()
