"""The SCC ablation (the paper's Fig. 3): validity and quality against t_max.

For t_max = 0 .. T (the number of MSQ steps whose prefix reconstruction is
constrained), stage 1 is trained on a reduced budget for each seed, then 1,000
architectures are generated (code prior, raw output) and scored:

* final validity (the paper's format rules, and strict);
* per-step validity: the code maps are decoded prefix by prefix, `ê_{<=t}` for every t,
  which is the curve SCC is meant to raise;
* the mean NB201 test accuracy of the generated cells (NB201 only).

Runs live under `OUT/runs/` and resume, so an interrupted ablation picks up where it
stopped. Every run has the same structure, so they all share one compile of the
training step, the evaluation, the prior fit and the sampler.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from pnag_jax import config as config_lib
from pnag_jax.data import DATA_DIR_HELP, NB201Data
from pnag_jax.data.nb201 import ACCURACY_COLUMNS
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.generation import SamplerConfig, load_sampler
from pnag_jax.generation.steps import step_validity
from pnag_jax.spaces import get_space
from pnag_jax.stages.stage1 import make_config, read_config
from pnag_jax.training import stage1 as stage1_training

#: The reduced budgets (issue 3's documented budget for MBV3, shortened).
BUDGETS = {
    "nb201": ["max_steps=200", "eval_every=100000", "checkpoint_every=100"],
    "mbv3": ["num_scales=6", "dim=16", "max_steps=300", "train_size=100000",
             "heldout_size=2000", "eval_every=100000", "checkpoint_every=100"],
}


def run(space_name: str, out: str | Path, *, seeds=(0, 1), t_max_values=None,
        num: int = 1000, data_dir: str | None = None, extra_overrides=(),
        progress: bool = True) -> dict:
  if space_name not in BUDGETS:
    raise PnagError(f"scc-ablation supports {', '.join(BUDGETS)}, not {space_name!r}")
  reports.check_sizes(num, len(seeds))
  if any(o.partition("=")[0].strip() == "scc_t_max" for o in extra_overrides):
    # Each run's own t_max is set after the overrides, and would win silently.
    raise PnagError("--set scc_t_max: the ablation sets it per run itself (use --t-max)")
  space = get_space(space_name)
  data = NB201Data.from_dir(data_dir) if space_name == "nb201" else None
  overrides = list(BUDGETS[space_name]) + list(extra_overrides)
  t_steps = len(make_config("quick", space_name, 0, overrides).scales(space.num_nodes))
  t_max_values = list(range(t_steps + 1)) if t_max_values is None else list(t_max_values)
  if not t_max_values or any(not 0 <= t <= t_steps for t in t_max_values):
    raise PnagError(f"t_max values must be in 0..{t_steps}, at least one")
  config_lib.check_distinct(t_max_values, "--t-max", "a value")
  out = reports.out_dir(out)  # once the settings are known to be good
  results = []
  for t_max in t_max_values:
    for seed in seeds:
      cfg = make_config("quick", space_name, seed, overrides + [f"scc_t_max={t_max}"])
      workdir = out / "runs" / f"tmax{t_max}_seed{seed}"
      rep_path = workdir / "stage1" / "report.json"
      # A run, finished or not, is reused (or resumed) only if it was trained as this
      # report will say: resumed under other settings, its steps would mix two configs.
      saved = read_config(workdir)
      if saved is not None and saved != cfg:
        raise PnagError(f"{workdir} holds a run trained with other settings than "
                        f"t_max={t_max}, seed {seed} and {' '.join(overrides)}; remove it "
                        "or use another --out")
      if saved is not None and rep_path.exists():
        rep = json.loads(rep_path.read_text())
      else:
        rep = stage1_training.train_and_evaluate(cfg, workdir, progress=False)
      trained, gen = load_sampler(workdir, SamplerConfig().for_num(num))
      g = gen.generate(jax.random.key(seed), num)
      fmt_t, strict_t = step_validity(gen, trained.params, jax.random.key(seed), num)
      row = {"t_max": t_max, "seed": seed, "validity": float(g.format_valid.mean()),
             "strict_validity": float(g.valid.mean()),
             "step_validity": fmt_t.tolist(), "step_strict_validity": strict_t.tolist(),
             "heldout_exact_match": rep["heldout_exact_match"],
             "heldout_step_validity": rep["step_validity"]}
      if data is not None:
        row["accuracy"] = {c: float(np.mean(np.asarray(data.lookup(c, g.genes))))
                           for c in ACCURACY_COLUMNS}
      results.append(row)
      if progress:
        print(f"  t_max={t_max} seed={seed}: validity {100 * row['validity']:.2f}% "
              f"(strict {100 * row['strict_validity']:.2f}%), step validity "
              f"{' '.join(f'{v:.3f}' for v in strict_t)}", flush=True)
  report = {"space": space_name, "steps": t_steps, "overrides": overrides,
            "seeds": list(seeds), "num": num, "machine": reports.machine(),
            "results": results, "summary": _summary(results, t_max_values)}
  reports.write_outputs(out, "scc_ablation", report, format_table, _plot)
  return report


def _summary(results, t_max_values) -> list[dict]:
  rows = []
  for t in t_max_values:
    rs = [r for r in results if r["t_max"] == t]
    row = {"t_max": t}
    for k in ("validity", "strict_validity", "heldout_exact_match"):
      row[k] = float(np.mean([r[k] for r in rs]))
    for k in ("step_validity", "step_strict_validity"):
      row[k] = np.mean([r[k] for r in rs], axis=0).tolist()
    if "accuracy" in rs[0]:
      row["accuracy"] = {c: float(np.mean([r["accuracy"][c] for r in rs]))
                         for c in rs[0]["accuracy"]}
    rows.append(row)
  return rows


def format_table(report: dict) -> str:
  rows = []
  for r in report["summary"]:
    acc = r.get("accuracy", {})
    rows.append([r["t_max"], f"{100 * r['validity']:.2f}", f"{100 * r['strict_validity']:.2f}",
                 " ".join(f"{v:.3f}" for v in r["step_strict_validity"]),
                 f"{acc['cifar10_test_acc']:.2f}" if acc else "–",
                 f"{r['heldout_exact_match']:.4f}"])
  return (f"SCC ablation, {report['space']}, seeds {report['seeds']}, budget "
          f"{' '.join(report['overrides'])}\n\n" + reports.table(
              ["t_max", "validity %", "strict %", "per-step strict validity",
               "C10 acc (mean)", "held-out exact"], rows))


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  summ = report["summary"]
  has_acc = "accuracy" in summ[0]
  fig, axes = plt.subplots(1, 3 if has_acc else 2, figsize=(13 if has_acc else 9, 3.8))
  t = [r["t_max"] for r in summ]
  axes[0].plot(t, [100 * r["validity"] for r in summ], "o-", label="validity (format)")
  axes[0].plot(t, [100 * r["strict_validity"] for r in summ], "s--", label="strict validity")
  axes[0].set_xlabel("t_max (constrained steps)")
  axes[0].set_ylabel("% of generated")
  axes[0].legend(fontsize=8)
  cmap = plt.get_cmap("viridis")
  for i, r in enumerate(summ):
    steps = np.arange(1, len(r["step_strict_validity"]) + 1)
    axes[1].plot(steps, 100 * np.asarray(r["step_strict_validity"]), "o-", ms=3,
                 color=cmap(i / max(len(summ) - 1, 1)), label=f"t_max={r['t_max']}")
  axes[1].set_xlabel("step t (prefix ê_{<=t} decoded)")
  axes[1].set_ylabel("strict validity %")
  axes[1].legend(fontsize=7)
  if has_acc:
    for c in ACCURACY_COLUMNS:
      axes[2].plot(t, [r["accuracy"][c] for r in summ], "o-", label=c)
    axes[2].set_xlabel("t_max")
    axes[2].set_ylabel("mean test accuracy % of generated")
    axes[2].legend(fontsize=7)
  fig.suptitle(f"SCC ablation ({report['space']})")
  reports.save_figure(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("The paper's Fig. 3: for t_max = 0 .. T constrained MSQ steps, train "
                   "stage 1 on a reduced budget per seed, generate NUM archs (code prior, raw "
                   "output) and report validity (final and per step) and, on NB201, "
                   "accuracy. Runs resume from OUT/runs/.")
  p.epilog = ("example:\n  pnag eval scc-ablation --space nb201 --seeds 2 "
              "--out eval/reports/scc_ablation_nb201")
  p.add_argument("--space", default="nb201", choices=tuple(BUDGETS),
                 help="space to ablate (each has a reduced training budget)")
  p.add_argument("--seeds", type=int, default=2, help="seeds 0 .. SEEDS-1 per t_max")
  p.add_argument("--t-max", type=int, nargs="*", default=None,
                 help="t_max values to train (default: every value 0..T); the report "
                      "covers these alone (runs of others stay in OUT/runs/)")
  p.add_argument("--num", type=int, default=1000, help="generated archs per run")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override the reduced training budget (a stage-1 config key)")
  p.add_argument("--data-dir", help=DATA_DIR_HELP)
  p.add_argument("--out", required=True,
                 help="output directory (scc_ablation.json, .md, .png; runs/)")


def main(args: argparse.Namespace) -> None:
  report = run(args.space, args.out, seeds=tuple(range(args.seeds)), t_max_values=args.t_max,
               num=args.num, data_dir=args.data_dir, extra_overrides=args.set)
  print(format_table(report))
  print(f"\nwrote {args.out}/scc_ablation.json, scc_ablation.md, scc_ablation.png")
