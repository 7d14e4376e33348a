"""Quality of generated architectures against random ones (the paper's Fig. 4b/c).

100 generated and 100 uniformly random NB201 cells per seed; their test accuracies on
CIFAR-10, CIFAR-100 and ImageNet16-120 are looked up in the benchmark tables. Raw
output: every generated cell counts, valid or not (a disconnected cell has its real,
poor, table entry).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from pnag_jax.data import DATA_DIR_HELP, NB201Data
from pnag_jax.data.nb201 import ACCURACY_COLUMNS
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.generation import PRIORS, Sampler, SamplerConfig
from pnag_jax.stages import stage1

LABELS = {"cifar10_test_acc": "CIFAR-10", "cifar100_test_acc": "CIFAR-100",
          "imagenet16_120_test_acc": "ImageNet16-120"}


def run(workdir: str, out: str | Path, *, data_dir: str | None = None, num: int = 100,
        seeds=(0,), prior: str = "codes") -> dict:
  reports.check_sizes(num, len(seeds))
  data = NB201Data.from_dir(data_dir)
  trained = stage1.load(workdir)
  if trained.space.name != "nb201":
    raise PnagError(f"quality needs an NB201 run; {workdir} holds {trained.space.name}")
  gen = Sampler.from_run(trained, SamplerConfig(prior=prior).for_num(num))
  out = reports.out_dir(out)  # once the run and settings are known to be good
  space = trained.space
  sample = jax.jit(space.sample, static_argnums=1)
  groups = {"random": [], "generated": []}
  valid = []
  for s in seeds:
    g = gen.generate(jax.random.key(s), num)
    valid.append(float(g.format_valid.mean()))
    groups["generated"].append(g.genes)
    groups["random"].append(np.asarray(sample(jax.random.fold_in(jax.random.key(s), 0xBA5E),
                                              num)))
  report = {"workdir": str(workdir), "prior": prior, "num": num, "seeds": list(seeds),
            "generated_validity": float(np.mean(valid)), "datasets": {}}
  for col in ACCURACY_COLUMNS:
    entry = {}
    for name, genes in groups.items():
      acc = np.asarray(data.lookup(col, np.concatenate(genes)), np.float64)
      per_seed = acc.reshape(len(seeds), num)
      entry[name] = {"mean": float(per_seed.mean()), "max": float(per_seed.max(1).mean()),
                     "std": float(acc.std()), "values": acc.round(4).tolist()}
    entry["best_in_space"] = data.best(col)[1]
    report["datasets"][col] = entry
  for name in groups:
    report[f"{name}_archs"] = [s for g in groups[name] for s in space.to_strings(g)]
  reports.write_outputs(out, "quality", report, format_table, _plot)
  return report


def format_table(report: dict) -> str:
  rows = []
  for col, e in report["datasets"].items():
    rows.append([LABELS[col], f"{e['generated']['mean']:.2f}", f"{e['random']['mean']:.2f}",
                 f"{e['generated']['max']:.2f}", f"{e['random']['max']:.2f}",
                 f"{e['best_in_space']:.2f}"])
  return (f"{report['num']} generated ({report['prior']} prior) vs {report['num']} random "
          f"NB201 cells, {len(report['seeds'])} seed(s); test accuracy %\n\n" + reports.table(
              ["dataset", "generated mean", "random mean", "generated max", "random max",
               "best in NB201"], rows))


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  cols = list(report["datasets"])
  fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 4))
  rng = np.random.default_rng(0)
  for ax, col in zip(np.atleast_1d(axes), cols):
    e = report["datasets"][col]
    for x, name in enumerate(("random", "generated")):
      v = np.asarray(e[name]["values"])
      ax.scatter(x + rng.uniform(-0.15, 0.15, v.size), v, s=8, alpha=0.5)
      ax.hlines(e[name]["mean"], x - 0.3, x + 0.3, colors="k")
    ax.set_xticks([0, 1], ["random", "PNAG-jax"])
    ax.set_title(f"{LABELS[col]} (mean: line)")
    ax.set_ylabel("test accuracy %")
  reports.save_figure(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("The paper's Fig. 4b/c: NB201 test accuracy (CIFAR-10, CIFAR-100, "
                   "ImageNet16-120) of NUM generated cells against NUM uniformly random ones, "
                   "per seed, looked up in the benchmark tables.")
  p.epilog = "example:\n  pnag eval quality --workdir runs/nb201 --out eval/reports/quality"
  p.add_argument("--workdir", required=True, help="a trained NB201 stage-1 run")
  p.add_argument("--num", type=int, default=100, help="generated (and random) cells per seed")
  p.add_argument("--seeds", type=int, default=1, help="seeds 0 .. SEEDS-1")
  p.add_argument("--prior", default="codes", choices=tuple(PRIORS), help="generation prior")
  p.add_argument("--data-dir", help=DATA_DIR_HELP)
  p.add_argument("--out", required=True, help="output directory (quality.json, .md, .png)")


def main(args: argparse.Namespace) -> None:
  report = run(args.workdir, args.out, data_dir=args.data_dir, num=args.num,
               seeds=tuple(range(args.seeds)), prior=args.prior)
  print(format_table(report))
  print(f"\nwrote {args.out}/quality.json, quality.md, quality.png")
