"""Conditional fidelity of stage 2: does the target quantile q steer what is drawn?

  pnag eval conditional --workdir runs/nb201 --task cifar10_test_acc \
      --task imagenet16_120_test_acc --out eval/reports/conditional

For each task, K reference archs (seeded, strictly valid) and their scores make the
task vector, exactly as a user's `--refs` file would; for each target q of the sweep,
`--num` archs are drawn from the task-conditioned `ar` prior (one key for every q, so
the targets share their random numbers), and each strictly valid one is looked up in
the task's table: its achieved quantile among the space's strictly valid archs (1 =
the best) and its score. Reported per target: mean achieved quantile, mean and max
score, strict validity and uniqueness, and for the first 100 archs the mean and max
score and unique share (issue 12's q = 0.99 check); per task, the Spearman
correlation between q and the mean achieved quantile, and the unconditional (null
condition) draw as a baseline. A task the surrogate (and so stage 2) excluded is
marked as such: it reaches the model only through its references.

A budget-conditioned stage 2 (`--set condition=budget`) gets a budget sweep instead:
for each count of `--budget` (default: the first it was trained on), 5 targets spread
log-evenly across the training archs' range (at 10, 30, 50, 70 and 90% of the log
range), `--num` archs each; reported per target: the share of strictly valid archs
within ±10% of the target, their median count, strict validity and uniqueness, and
the null draw as a baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
from scipy import stats

from pnag_jax import config as config_lib
from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.generation import Sampler, SamplerConfig
from pnag_jax.stages import stage2
from pnag_jax.training.task_conditions import oriented_quantiles, valid_rows

TARGETS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
BUDGET_POINTS = (0.1, 0.3, 0.5, 0.7, 0.9)
TOLERANCE = 0.10


def _summary(space, genes: np.ndarray, valid: np.ndarray, quantile: np.ndarray,
             raw: np.ndarray) -> dict:
  rows = np.asarray(space.index(genes[valid])) if valid.any() else np.zeros(0, int)
  first = np.asarray(space.index(genes[:100][valid[:100]])) if valid[:100].any() else rows[:0]
  nan = float("nan")
  return {
      "strict_validity": float(valid.mean()),
      "uniqueness": float(np.unique(rows).size / max(rows.size, 1)),
      "mean_quantile": float(quantile[rows].mean()) if rows.size else nan,
      "mean_score": float(raw[rows].mean()) if rows.size else nan,
      "max_score": float(raw[rows].max()) if rows.size else nan,
      "min_score": float(raw[rows].min()) if rows.size else nan,
      "first100_mean_score": float(raw[first].mean()) if first.size else nan,
      "first100_max_score": float(raw[first].max()) if first.size else nan,
      "first100_unique": float(np.unique(first).size / min(100, genes.shape[0])),
  }


def run(workdir: str | Path, out: str | Path, *, task_names=None, targets=TARGETS,
        num: int = 1000, k: int | None = None, seed: int = 0, cfg_scale: float = 0.0,
        data_dir=None, budgets: tuple[str, ...] | None = None) -> dict:
  """The target sweep for each task (default CIFAR-10, K = 10), or the budget sweep of
  a budget-conditioned stage 2; writes conditional.{json,md,png} under `out`."""
  # numpy reads the whole seed, JAX its low 32 bits: past 2**32 the two would disagree.
  config_lib.check_seed(seed, "--seed")
  run2 = stage2.load(workdir)
  if run2.cfg.condition == "budget":
    for flag, given in (("--task", task_names), ("--k", k)):
      if given is not None:
        raise PnagError(f"{flag} is for a task-conditioned stage 2; the one in {workdir} "
                        "is budget-conditioned (see --budget)")
    for count in budgets or ():
      if count not in run2.cfg.budget_keys:
        raise PnagError(f"stage 2 in {workdir} was trained on the budgets "
                        f"{', '.join(run2.cfg.budget_keys)}, not {count!r}")
    return budget_sweep(run2, out, num=num, seed=seed, cfg_scale=cfg_scale, counts=budgets)
  if run2.cfg.condition != "task":
    raise PnagError(f"stage 2 in {workdir} is unconditional; `pnag eval conditional` needs "
                    "one trained with --set condition=task or condition=budget")
  if budgets:
    raise PnagError(f"--budget is for a budget-conditioned stage 2; the one in {workdir} is "
                    "task-conditioned")
  task_names = tuple(task_names or ("cifar10_test_acc",))
  config_lib.check_distinct(task_names, "--task", "a task")  # else swept twice, the second kept
  k = 10 if k is None else k
  run1, srun = run2.stage1, run2.surrogate
  space = run1.space
  known = tasks_lib.builtin_tasks(space.name, data_dir)
  valid = valid_rows(space)
  raws = {}
  for name in task_names:
    tasks_lib.require_known(known, name, f"task {name!r}",
                            f"unknown task {name!r}; see `pnag tasks --space {space.name}`")
    raws[name] = known[name].by_row()
    # Every task before the first sweep: the references and quantiles need all of them.
    if np.isnan(raws[name][valid]).any():
      raise PnagError(f"task {name!r} has no score for every valid arch; choose a table "
                      "task with full coverage")
  if not 1 <= k <= int(valid.sum()):
    raise PnagError(f"--k must be in [1, {int(valid.sum()):,}] (the strictly valid archs "
                    f"references are drawn from), got {k}")
  genes_all = space.enumerate()
  sampler = Sampler.from_run(run1, SamplerConfig(prior="ar", cfg_scale=cfg_scale,
                                                 chunk_size=min(num, 1000)))
  out = reports.out_dir(out)  # once the settings are known to be good
  key = jax.random.key(seed)
  report = {"workdir": str(workdir), "space": space.name, "num": num, "k": k, "seed": seed,
            "cfg_scale": cfg_scale, "targets": list(targets),
            "excluded_tasks": list(srun.excluded_tasks), "machine": reports.machine(),
            "tasks": {}}
  for ti, name in enumerate(task_names):
    task = known[name]
    raw = raws[name]
    q_all = oriented_quantiles(-raw if task.minimize else raw, valid)
    rng = np.random.default_rng([seed, 23, ti])
    refs = rng.choice(np.flatnonzero(valid), k, replace=False)
    rows = {}
    null = sampler.generate(key, num)
    rows["null"] = _summary(space, null.genes, null.valid, q_all, raw)
    for q in targets:
      cond = stage2.task_condition(srun, genes_all[refs], raw[refs], minimize=task.minimize,
                                   target=float(q))
      o = sampler.generate(key, num, cond)
      rows[f"{q:g}"] = _summary(space, o.genes, o.valid, q_all, raw)
      print(f"  {name} q={q:g}: achieved quantile {rows[f'{q:g}']['mean_quantile']:.3f}",
            flush=True)
    achieved = [rows[f"{q:g}"]["mean_quantile"] for q in targets]
    report["tasks"][name] = {
        "status": "excluded (references only)" if name in srun.excluded_tasks else "seen",
        "minimize": task.minimize, "reference_rows": refs.tolist(),
        "spearman_target_vs_achieved": float(stats.spearmanr(targets, achieved).statistic),
        "best_valid_score": float(np.nanmin(raw[valid]) if task.minimize
                                  else np.nanmax(raw[valid])),
        "rows": rows,
    }
  reports.write_outputs(out, "conditional", report, format_table, _plot)
  return report


def _budget_summary(space, genes: np.ndarray, valid: np.ndarray, count: str,
                    target: float | None) -> dict:
  from pnag_jax.tasks import costs  # pylint: disable=g-import-not-at-top
  kept = genes[valid]
  values = (costs.params_of if count == "params" else costs.flops_of)(space, kept) \
      if len(kept) else np.zeros(0)
  keys = np.asarray(space.exact_key(kept)) if len(kept) else np.zeros((0, 1))
  out = {"strict_validity": float(valid.mean()),
         "uniqueness": float(np.unique(keys, axis=0).shape[0] / max(len(kept), 1)),
         "median": float(np.median(values)) if len(values) else float("nan"),
         "p10": float(np.percentile(values, 10)) if len(values) else float("nan"),
         "p90": float(np.percentile(values, 90)) if len(values) else float("nan")}
  if target is not None:
    # Over every draw: an invalid arch is not within budget.
    within = np.abs(values / target - 1.0) <= TOLERANCE
    out["target"] = float(target)
    out["within_10pct"] = float(within.sum() / genes.shape[0])
  return out


def budget_sweep(run2, out, *, num: int, seed: int, cfg_scale: float,
                 counts: tuple[str, ...] | None = None) -> dict:
  """The budget sweep of a budget-conditioned stage 2; writes conditional.{json,md,png}."""
  import math  # pylint: disable=g-import-not-at-top
  space = run2.stage1.space
  counts = counts or run2.cfg.budget_keys[:1]
  sampler = Sampler.from_run(run2.stage1, SamplerConfig(prior="ar", cfg_scale=cfg_scale,
                                                        chunk_size=min(num, 1000)))
  out = reports.out_dir(out)  # once the settings are known to be good
  key = jax.random.key(seed)
  report = {"workdir": str(run2.workdir), "space": space.name, "num": num, "seed": seed,
            "cfg_scale": cfg_scale, "condition": "budget", "tolerance": TOLERANCE,
            "budget_range": run2.budget_range, "machine": reports.machine(), "budgets": {}}
  null = sampler.generate(key, num)
  for count in counts:
    lo, hi = run2.budget_range[count]
    rows = {"null": _budget_summary(space, null.genes, null.valid, count, None)}
    for f in BUDGET_POINTS:
      target = math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo)))
      cond = stage2.budget_condition(run2.budget_range, run2.cfg.budget_keys,
                                     **{count: target})
      o = sampler.generate(key, num, cond)
      rows[f"{target:.4g}"] = _budget_summary(space, o.genes, o.valid, count, target)
      print(f"  {count} {target:.4g}: {100 * rows[f'{target:.4g}']['within_10pct']:.1f}% "
            f"within ±10%", flush=True)
    report["budgets"][count] = {"range": [lo, hi], "rows": rows}
  reports.write_outputs(out, "conditional", report, format_table, _plot)
  return report


def _format_budgets(report: dict) -> str:
  parts = []
  for count, b in report["budgets"].items():
    rows = [[label, f"{r.get('target', float('nan')):.4g}",
             f"{100 * r['within_10pct']:.1f}" if "within_10pct" in r else "",
             f"{r['median']:.4g}", f"{r['p10']:.4g} – {r['p90']:.4g}",
             f"{100 * r['strict_validity']:.2f}", f"{100 * r['uniqueness']:.1f}"]
            for label, r in b["rows"].items()]
    parts.append(f"**{count}** budget sweep ({report['space']}; trained range "
                 f"{b['range'][0]:.4g} to {b['range'][1]:.4g}; {report['num']} archs per "
                 "target; within ±10% counts every draw, an invalid one as a miss)\n\n" +
                 reports.table(["target", "value", "within ±10% %", "median", "p10 – p90",
                                "strict valid %", "unique %"], rows))
  return "\n\n".join(parts)


def format_table(report: dict) -> str:
  if report.get("condition") == "budget":
    return _format_budgets(report)
  parts = []
  for name, t in report["tasks"].items():
    rows = []
    for label, r in t["rows"].items():
      rows.append([label, f"{r['mean_quantile']:.3f}", f"{r['mean_score']:.3f}",
                   f"{r['max_score']:.3f}", f"{100 * r['strict_validity']:.1f}",
                   f"{100 * r['uniqueness']:.1f}", f"{r['first100_mean_score']:.3f}",
                   f"{r['first100_max_score']:.3f}", f"{100 * r['first100_unique']:.0f}"])
    parts.append(
        f"**{name}** ({t['status']}; Spearman(q, achieved) "
        f"{t['spearman_target_vs_achieved']:.3f}; best valid score "
        f"{t['best_valid_score']:.3f}; {report['num']} archs per target, K = {report['k']})"
        "\n\n" + reports.table(
            ["target q", "achieved q", "mean score", "max score", "strict valid %",
             "unique %", "first 100 mean", "first 100 max", "first 100 unique %"], rows))
  return "\n\n".join(parts)


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  fig, ax = plt.subplots(figsize=(5.2, 4.6))
  if report.get("condition") == "budget":
    for count, b in report["budgets"].items():
      rows = [r for r in b["rows"].values() if "target" in r]
      t = [r["target"] for r in rows]
      ax.errorbar(t, [r["median"] for r in rows],
                  yerr=[[r["median"] - r["p10"] for r in rows],
                        [r["p90"] - r["median"] for r in rows]], marker="o", label=count)
      ax.plot(t, t, "k--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("target")
    ax.set_ylabel("generated (median, p10 – p90)")
    ax.set_title(f"stage 2, {report['space']}: budget fidelity")
    ax.legend(fontsize=7)
    reports.save_figure(fig, path)
    return
  for name, t in report["tasks"].items():
    qs = report["targets"]
    ax.plot(qs, [t["rows"][f"{q:g}"]["mean_quantile"] for q in qs], marker="o",
            label=f"{name} ({t['status'].split()[0]})")
    ax.axhline(t["rows"]["null"]["mean_quantile"], ls=":", lw=0.8, color="grey")
  ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="achieved = target")
  ax.set_xlabel("target quantile q")
  ax.set_ylabel("mean achieved quantile")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_title(f"stage 2, {report['space']}: conditional fidelity")
  ax.legend(fontsize=7)
  reports.save_figure(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Conditional fidelity of a task-conditioned stage 2: a target-quantile "
                   "sweep per task, each task given by K seeded reference archs; achieved "
                   "quantile, scores, validity and uniqueness per target. For a "
                   "budget-conditioned stage 2: a sweep of 5 budgets across its range, and "
                   "the share of archs within ±10% of each.")
  p.epilog = ("example:\n  pnag eval conditional --workdir runs/nb201 --task cifar10_test_acc "
              "--task imagenet16_120_test_acc --out eval/reports/conditional")
  p.add_argument("--workdir", required=True, help="a run with stage1/, surrogate/, stage2/")
  p.add_argument("--task", action="append", default=None,
                 help="a built-in task (repeatable; default cifar10_test_acc)")
  p.add_argument("--budget", action="append", default=None, choices=stage2.BUDGETS,
                 help="budget-conditioned stage 2: the count to sweep (repeatable; default "
                      "its first, params)")
  p.add_argument("--num", type=int, default=1000, help="archs per target")
  p.add_argument("--k", type=int, default=None, help="reference archs per task (default 10)")
  p.add_argument("--seed", type=int, default=0,
                 help="seed of the references and of the draws (one key for every target)")
  p.add_argument("--cfg-scale", type=float, default=0.0, help="classifier-free guidance")
  p.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR)")
  p.add_argument("--out", required=True, help="output directory (conditional.json, .md, .png)")


def main(args: argparse.Namespace) -> None:
  if args.num < 1 or (args.k is not None and args.k < 1):
    raise PnagError("--num and --k must be positive")
  report = run(args.workdir, args.out, task_names=tuple(args.task) if args.task else None,
               num=args.num, k=args.k, seed=args.seed, cfg_scale=args.cfg_scale,
               data_dir=args.data_dir,
               budgets=tuple(args.budget) if args.budget else None)
  print(format_table(report))
  print(f"\nwrote {args.out}/conditional.json, conditional.md, conditional.png")
