"""Where each objective's guided ranking puts the objective's best cells (Table 5's Max).

  PNAG_DATA_DIR=../shared/data python eval/objectives_top.py \
      --surrogates RUNS/surrogates --out eval/reports/objectives_top

`pnag eval objectives` keeps each guided set's top 20. The Max table asks whether a set
holds the objective's very best cells, and on CIFAR-10's FGSM only a handful of cells
separate the sets. This script replays the protocol's rankings (the same reference
draws, surrogate and candidate pool as `pnag eval objectives --pool all`) and reports,
per seed and guiding objective, the Spearman of the whole ranking with each measured
objective and the 1-based positions, among the candidates, of that objective's best
cells. Nothing is trained if the surrogate exists; nothing is tuned.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import stats

from pnag_jax import atomic
from pnag_jax import tasks as tasks_lib
from pnag_jax.evaluation import objectives, reports, transfer
from pnag_jax.guidance import rank
from pnag_jax.spaces import get_space

TOP = 5  # best cells whose positions are reported, per measured objective


def run(out, surrogates, *, dataset="cifar10", seeds=(0, 1, 2), num_refs=50,
        num_picks=20, data_dir=None) -> dict:
  t0 = time.perf_counter()
  out = reports.out_dir(out)
  space = get_space("nb201")
  tasks = tasks_lib.builtin_tasks("nb201", data_dir)
  objs = objectives.objectives_for(dataset)
  srun = transfer.meta_trained(Path(surrogates), objectives.exclusion_for(dataset),
                               preset="quick", seed=0, data_dir=data_dir)
  every = space.enumerate()
  values = {o: tasks[t].by_row() for o, t in objs.items()}
  pool = rank.enumerate_pool(space)
  report = {"dataset": dataset, "objectives": objs, "num_refs": num_refs,
            "num_picks": num_picks, "seeds": list(seeds), "top": TOP, "per_seed": [],
            "surrogate": str(srun.workdir), "machine": reports.machine()}
  for s in seeds:
    row = {}
    for guide in objs:
      # Every candidate, best predicted first: the set of `objectives` is its head.
      ranked = objectives.guided_rows(srun, every, values[guide], pool, seed=s,
                                      objective=guide, num_refs=num_refs, k=len(pool[0]))
      row[guide] = {}
      for m in objs:
        v = values[m][ranked]
        best = np.argsort(-v, kind="stable")[:TOP]
        row[guide][m] = {
            "spearman": float(stats.spearmanr(-np.arange(v.size), v)[0]),
            "best_values": [float(x) for x in v[best]],
            "best_positions": [int(p) + 1 for p in best],
            "set_max": float(v[:num_picks].max())}
    report["per_seed"].append(row)
  report["seconds"] = time.perf_counter() - t0
  reports.write_json(out / "objectives_top.json", report)
  atomic.write_text(out / "objectives_top.md", format_table(report) + "\n")
  return report


def format_table(report: dict) -> str:
  lines = [f"Guided rankings of Table 5's protocol on {report['dataset']}: positions among "
           f"the candidates of each objective's {report['top']} best cells (a set keeps "
           f"positions 1-{report['num_picks']}), and the ranking's Spearman.", ""]
  head = ["seed", "guided for", "measured on", "Spearman", "set max", "best cells",
          "their positions"]
  rows = []
  for s, row in zip(report["seeds"], report["per_seed"]):
    for guide, by_m in row.items():
      for m, r in by_m.items():
        rows.append([s, guide, m, f"{r['spearman']:.3f}", f"{r['set_max']:.2f}",
                     " ".join(f"{x:.2f}" for x in r["best_values"]),
                     " ".join(map(str, r["best_positions"]))])
  return "\n".join(lines + [reports.table(head, rows)])


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--surrogates", required=True,
                  help="the directory of leave-dataset-out surrogates (trained if absent)")
  ap.add_argument("--out", required=True)
  ap.add_argument("--dataset", default="cifar10", choices=list(objectives.DATASETS))
  ap.add_argument("--data-dir", default=None)
  args = ap.parse_args(argv)
  report = run(args.out, args.surrogates, dataset=args.dataset, data_dir=args.data_dir)
  print(format_table(report))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
