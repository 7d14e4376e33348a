"""Transfer to unseen task families (DESIGN §5): whole attacks, all devices, one device.

A surrogate is meta-trained with a whole family excluded, then asked to rank the
family's tasks from K measured cells:

  pgd     every PGD and APGD column (they rank alike, so one regex takes both);
  fgsm    every FGSM column;
  lat_    every latency: no device seen at all;
  one device at a time (11 surrogates): all batch settings of that device excluded.

Spearman is over the 6,466 isomorphism-class representatives, mean over seeds of the
reference draw. Beside the network: the same run's linear prior (an additive-cost model
fitted from the same references, `models/linear_prior.py`), and the table oracle: the
allowed task whose ranking, read either way up, agrees best with the K references, and
how well that task ranks the target (`two_way_tables`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import scipy.stats

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.evaluation import transfer
from pnag_jax.guidance import adapt, baselines, rank
from pnag_jax.spaces import get_space

FAMILIES = ("pgd", "fgsm", "lat_")


def devices(names) -> dict[str, str]:
  """Device -> a regex matching exactly its latency columns (all batch settings)."""
  out = {}
  for n in names:
    # HELP's batch settings are the suffixes _1, _32 and _256; other digits are part
    # of the device's name (gold_6240, silver_4114).
    m = re.fullmatch(r"lat_(.+?)(?:_(1|32|256))?", n)
    if m:
      out[m.group(1)] = rf"^lat_{re.escape(m.group(1))}(_(1|32|256))?$"
  return dict(sorted(out.items()))


def two_way_tables(tasks: dict) -> dict[str, np.ndarray]:
  """Every allowed table in its own units and reversed: the oracle of a Spearman study.

  The study ranks raw scores, latency included, so the oracle may read a table either
  way up: another device's latency as it is, or an accuracy as a latency predictor
  (larger nets are slower). It takes the reading most Spearman-similar to the target on
  the K references. (Oriented tables, higher is better, against a raw latency target
  would pick the table whose order is most like the reverse of the target's.)
  """
  raw = {n: t.by_row() for n, t in tasks.items() if not t.is_function}
  return {**raw, **{f"-{n}": -v for n, v in raw.items()}}


def spearman_by_k(srun, space, target: np.ndarray, oracle_tables: dict, ks, seeds,
                  reps: np.ndarray, salt: int, adapt_steps: int = 0) -> dict:
  every = space.enumerate()
  out = {}
  for k in ks:
    ours, linear, oracle = [], [], []
    for s in seeds:
      refs = np.random.default_rng([s, k, salt]).choice(space.size(), k, replace=False)
      pred = adapt.adapted_predictor(srun, every[refs], target[refs], steps=adapt_steps,
                                     seed=s).scores(every[reps])
      ours.append(scipy.stats.spearmanr(pred, target[reps]).statistic)
      if srun.linear_prior is not None:
        pred = srun.linear_predictor(every[refs], target[refs]).scores(every[reps])
        linear.append(scipy.stats.spearmanr(pred, target[reps]).statistic)
      name, _ = baselines.table_oracle_order(oracle_tables, refs, target[refs])
      oracle.append(scipy.stats.spearmanr(oracle_tables[name][reps], target[reps]).statistic)
    out[str(k)] = {"spearman": float(np.mean(ours)), "oracle_spearman": float(np.mean(oracle))}
    if linear:
      out[str(k)]["linear_spearman"] = float(np.mean(linear))
  return out


def _study(root, exclude, tasks, *, preset, overrides, data_dir, ks, seeds, space, reps,
           adapt_steps):
  srun = transfer.meta_trained(root, (exclude,), preset=preset, seed=0, overrides=overrides,
                      data_dir=data_dir)
  kept, excluded = tasks_lib.select_tasks(tasks, (exclude,))
  oracle = two_way_tables(kept)
  per_task = {}
  for i, name in enumerate(excluded):
    target = tasks[name].by_row()
    if np.isnan(target).any():
      continue  # subset tables: Spearman over all classes is undefined
    per_task[name] = spearman_by_k(srun, space, target, oracle, ks, seeds, reps, i,
                                   adapt_steps)
  return {"exclude": exclude, "tasks": per_task, "surrogate": str(srun.workdir)}


def run(out, *, data_dir=None, preset: str = "quick", overrides=(), seeds=(0, 1, 2),
        ks=(2, 5, 10, 20, 50), families=FAMILIES, leave_one_device_out: bool = True,
        surrogates=None, adapt_steps: int = 0) -> dict:
  if not seeds:
    raise PnagError("families needs at least one seed")
  if adapt_steps < 0:
    raise PnagError(f"--adapt-steps must be >= 0, got {adapt_steps}")
  space = get_space("nb201")
  tasks = tasks_lib.builtin_tasks("nb201", data_dir)
  tasks_lib.require_tables(tasks, "pnag eval families")
  if not families:
    raise PnagError("--families lists no exclusion regex")
  folders = {}
  for fam in families:
    # A pattern that matches nothing fails now, not after the surrogates before it.
    tasks_lib.select_tasks(tasks, (fam,))
    # Each family's surrogate has a folder named after its regex (`transfer.slug`).
    other = folders.setdefault(transfer.slug((fam,)), fam)
    if other != fam:
      raise PnagError(f"--families {other!r} and {fam!r} would share the surrogate folder "
                      f"excl_{transfer.slug((fam,))}; study them with separate --surrogates")
  transfer.check_settings(preset, overrides)
  out = reports.out_dir(out)
  root = Path(surrogates) if surrogates else out / "surrogates"
  reps = rank.first_of_each_class(space, space.enumerate())
  common = dict(preset=preset, overrides=overrides, data_dir=data_dir, ks=ks, seeds=seeds,
                space=space, reps=reps, adapt_steps=adapt_steps)
  report = {"preset": preset, "overrides": list(overrides), "seeds": list(seeds),
            "ks": list(ks), "adapt_steps": adapt_steps, "families": {}, "devices": {}, "machine": reports.machine()}
  for fam in families:
    report["families"][fam] = _study(root, fam, tasks, **common)
    reports.write_outputs(out, "families", report, format_table, _plot)
  if leave_one_device_out:
    for dev, pattern in devices(tasks).items():
      r = _study(root, pattern, tasks, **{**common, "ks": (10,)})
      r["mean_spearman_k10"] = float(np.mean([v["10"]["spearman"] for v in r["tasks"].values()]))
      if all("linear_spearman" in v["10"] for v in r["tasks"].values()):
        r["mean_linear_spearman_k10"] = float(np.mean(
            [v["10"]["linear_spearman"] for v in r["tasks"].values()]))
      report["devices"][dev] = r
      reports.write_outputs(out, "families", report, format_table, _plot)
  return report


def format_table(report: dict) -> str:
  lines = [f"Transfer to unseen families (NB201), surrogate preset {report['preset']} "
           f"{' '.join(report['overrides'])}; Spearman over the 6,466 isomorphism classes, "
           f"mean over {len(report['seeds'])} reference draws; oracle: the best allowed "
           "table, read either way up, chosen on the K references.", ""]
  def cell(v):
    linear = f" / {v['linear_spearman']:.3f}" if "linear_spearman" in v else ""
    return f"{v['spearman']:.3f}{linear} ({v['oracle_spearman']:.3f})"

  for fam, r in report["families"].items():
    ks = report["ks"]
    rows = [[t] + [cell(v[str(k)]) for k in ks] for t, v in r["tasks"].items()]
    lines += [f"`--exclude {fam}`: network / linear prior (oracle) by K", "",
              reports.table(["task", *(f"K={k}" for k in ks)], rows), ""]
  if report["devices"]:
    rows = [[d, len(r["tasks"]), f"{r['mean_spearman_k10']:.3f}",
             f"{r['mean_linear_spearman_k10']:.3f}" if "mean_linear_spearman_k10" in r else "",
             f"{np.mean([v['10']['oracle_spearman'] for v in r['tasks'].values()]):.3f}"]
            for d, r in report["devices"].items()]
    lines += ["Leave one device out (all its batch settings), K = 10:", "",
              reports.table(["device", "settings", "network", "linear prior", "oracle"],
                            rows)]
  return "\n".join(lines)


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  fams = list(report["families"])
  n = len(fams) + (1 if report["devices"] else 0)
  fig, axes = plt.subplots(1, max(n, 1), figsize=(4.5 * max(n, 1), 3.8), squeeze=False)
  ks = report["ks"]
  for ax, fam in zip(axes[0], fams):
    tasks = report["families"][fam]["tasks"]
    ours = np.array([[v[str(k)]["spearman"] for k in ks] for v in tasks.values()])
    orc = np.array([[v[str(k)]["oracle_spearman"] for k in ks] for v in tasks.values()])
    ax.plot(ks, ours.mean(0), "o-", label="surrogate (mean over tasks)")
    ax.fill_between(ks, ours.min(0), ours.max(0), alpha=0.2)
    if all("linear_spearman" in v[str(k)] for v in tasks.values() for k in ks):
      lin = np.array([[v[str(k)]["linear_spearman"] for k in ks] for v in tasks.values()])
      ax.plot(ks, lin.mean(0), "s-", label="linear prior (mean over tasks)")
    ax.plot(ks, orc.mean(0), "d--", label="table oracle")
    ax.set_xscale("log")
    ax.set_title(f"--exclude {fam} ({len(tasks)} tasks)")
    ax.set_xlabel("K references")
    ax.set_ylabel("Spearman")
  if report["devices"]:
    ax = axes[0][-1]
    devs = list(report["devices"])
    x = np.arange(len(devs))
    ax.bar(x - 0.2, [report["devices"][d]["mean_spearman_k10"] for d in devs], 0.4,
           label="network")
    ax.bar(x + 0.2, [report["devices"][d].get("mean_linear_spearman_k10", 0.0) for d in devs],
           0.4, label="linear prior")
    ax.legend(fontsize=7)
    ax.axhline(0.9, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, devs, rotation=60, fontsize=7)
    ax.set_title("leave one device out, K = 10")
  axes[0][0].legend(fontsize=7)
  reports.save_figure(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.epilog = "example:\n  pnag eval families --out eval/reports/families --preset quick"
  transfer.add_surrogate_arguments(p, "families", seeds=3)
  p.add_argument("--families", default=None,
                 help="comma-separated exclusion regexes, one surrogate each (default: "
                      f"{','.join(FAMILIES)})")
  p.add_argument("--no-devices", action="store_true", help="skip leave-one-device-out")


def main(args: argparse.Namespace) -> None:
  r = run(args.out, data_dir=args.data_dir, preset=args.preset, overrides=args.set,
          seeds=transfer.seed_range(args.seeds),
          families=FAMILIES if args.families is None
          else tuple(f for f in args.families.split(",") if f),
          leave_one_device_out=not args.no_devices, surrogates=args.surrogates,
          adapt_steps=args.adapt_steps)
  print(format_table(r))
