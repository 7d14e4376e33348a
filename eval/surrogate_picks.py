"""Held-out pick quality of meta-trained surrogates, over more reference draws than
`report.json` takes.

  PNAG_DATA_DIR=../shared/data python eval/surrogate_picks.py \
      --surrogate ridge=runs/sv_ridge --surrogate spread=runs/sv_spread \
      --draws 20 --out eval/reports/surrogate_validation

Each `LABEL=WORKDIR` is a `pnag train surrogate` run. All must share their validation
tasks (the same seed and exclusions), which none of them read in meta-training; only
their model settings may differ. On each validation task, per K, the same uniform
reference draws go to every surrogate (`training.surrogate.rank_metrics`), so the
comparison is paired. The first run's linear prior is a row too. Nothing here reads a
task that a run excluded, so a variant can be chosen on this report without touching
a leave-dataset-out target.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.stages import surrogate as stage
from pnag_jax.training import surrogate as trainer

LINEAR = "linear prior"


def run(surrogates: dict[str, str], out, *, draws: int, data_dir=None) -> dict:
  runs = {label: stage.load(w) for label, w in surrogates.items()}
  first = next(iter(runs.values()))
  if len({r.cfg.space for r in runs.values()}) != 1:
    raise PnagError("the surrogates are of different spaces: "
                    + "; ".join(f"{k}: {r.cfg.space}" for k, r in runs.items()))
  tasks = tasks_lib.builtin_tasks(first.cfg.space, data_dir)
  splits = {label: trainer.split_tasks(r.cfg, tasks)[1] for label, r in runs.items()}
  if len({tuple(v) for v in splits.values()}) != 1:
    raise PnagError("the surrogates hold out different validation tasks: "
                    + "; ".join(f"{k}: {', '.join(v)}" for k, v in splits.items()))
  val_names = next(iter(splits.values()))
  val_tasks = [trainer.task_arrays(tasks[n]) for n in val_names]
  out = reports.out_dir(out)  # only once the runs are known to compare
  binds = {label: functools.partial(stage.predictor, r.model, r.params)
           for label, r in runs.items()}
  if first.linear_prior is not None:
    binds[LINEAR] = functools.partial(stage.linear_predictor, first.space, first.linear_prior)
  ks = first.cfg.eval_ks
  report = {"ks": list(ks), "draws": draws, "val_tasks": list(val_names),
            "metrics": list(trainer.METRICS), "surrogates": {}, "machine": reports.machine()}
  for label, bind in binds.items():
    per_task = {t.name: trainer.rank_metrics(bind, t, ks, seed=first.cfg.seed,
                                             num_archs=first.cfg.eval_archs, repeats=draws)
                for t in val_tasks}
    by_k = {str(k): {m: float(np.mean([per_task[t][k][m] for t in per_task]))
                     for m in trainer.METRICS} for k in ks}
    report["surrogates"][label] = {
        # The linear prior's row is the first run's prior.
        "workdir": surrogates.get(label, next(iter(surrogates.values()))),
        "settings": _settings(runs[label].cfg) if label in runs else {},
        "by_k": by_k,
        "per_task": {t: {str(k): v for k, v in r.items()} for t, r in per_task.items()}}
    # After every surrogate, so a long run that is killed keeps the rows it finished.
    reports.write_outputs(out, "surrogate_picks", report, format_table, _plot)
  return report


def _settings(cfg) -> dict:
  """The run's model and loss settings that differ from the quick preset's."""
  base = stage.make_config("quick", cfg.space, cfg.seed, cfg.exclude, ())
  return {k: getattr(cfg, k) for k in vars(cfg)
          if k not in ("exclude", "encoder_init") and getattr(cfg, k) != getattr(base, k)}


def format_table(report: dict) -> str:
  ks = [str(k) for k in report["ks"]]
  rows = []
  for label, r in report["surrogates"].items():
    for m in report["metrics"]:
      rows.append([label if m == report["metrics"][0] else "", m]
                  + [f"{r['by_k'][k][m]:.3f}" for k in ks])
  return "\n".join([
      f"Held-out validation tasks ({', '.join(report['val_tasks'])}), the same "
      f"{report['draws']} uniform reference draws per task and K for every row, mean over "
      "tasks. top1_quantile: share of the task's archs no better than the first pick "
      "(1 = the optimum); top10_quantile: the same for the best of the first 10.", "",
      reports.table(["surrogate", "metric", *[f"K = {k}" for k in ks]], rows)])


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
  for ax, m in zip(axes, ("spearman", "top1_quantile")):
    for label, r in report["surrogates"].items():
      ax.plot(report["ks"], [r["by_k"][str(k)][m] for k in report["ks"]], marker="o",
              label=label)
    ax.set_xscale("log")
    ax.set_xlabel("K references")
    ax.set_ylabel(m)
  axes[0].legend(fontsize=7)
  reports.save_figure(fig, path)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--surrogate", action="append", required=True, metavar="LABEL=WORKDIR",
                 help="a meta-trained run; repeatable")
  p.add_argument("--draws", type=int, default=20, help="reference draws per task and K")
  p.add_argument("--out", default="eval/reports/surrogate_validation")
  p.add_argument("--data-dir", default=None)
  args = p.parse_args()
  pairs = dict(s.split("=", 1) for s in args.surrogate)
  print(format_table(run(pairs, args.out, draws=args.draws, data_dir=args.data_dir)))


if __name__ == "__main__":
  main()
