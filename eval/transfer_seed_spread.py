"""How much of the Table 1 figure is the surrogate's seed: one target, N meta-training seeds.

  PNAG_DATA_DIR=../shared/data python eval/transfer_seed_spread.py \
      --stage1 runs/nb201_quick --surrogates runs/seed_spread --seeds 5 \
      --out eval/reports/transfer_seed_spread

`pnag eval transfer` meta-trains one surrogate per target (seed 0) and draws the K
references and the pool with 5 protocol seeds. This script keeps that protocol fixed
(the same references, pools and walk) and varies the other source of chance: the
surrogate's own seed, which sets its init, its episodes and its 4 validation tasks.
Each seed's surrogate (`--surrogates/seed<s>/excl_<regex>`, trained if absent, with
the target's dataset excluded) is scored alone, and the first `n` of them together
as a mean ensemble for every n >= 2 (members are bound to the same references, so the
mean of their predictions is the mean of their standardised predictions, mapped back).
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import jax
import matplotlib
import numpy as np
import scipy.stats

from pnag_jax import tasks as tasks_lib
from pnag_jax.evaluation import reports
from pnag_jax.evaluation import transfer
from pnag_jax.generation.run import load_sampler
from pnag_jax.guidance import rank
from pnag_jax.spaces import get_space

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


class MeanEnsemble:
  """Bound predictors averaged: `scores` as `stage.Predictor`'s."""

  def __init__(self, members):
    self.members = members

  def scores(self, genes: np.ndarray) -> np.ndarray:
    return np.mean([m.scores(genes) for m in self.members], axis=0)


def evaluate(predictors_of, runs, *, space, acc, pools, protocol_seeds, k, salt) -> dict:
  """Top-1, to-optimum and Spearman of `predictors_of(runs, genes, scores)` per seed."""
  genes_all = space.enumerate()
  reps = rank.first_of_each_class(space, genes_all)
  top1, to_opt, rho = [], [], []
  for s in protocol_seeds:
    ref_rows = np.random.default_rng([s, k, salt]).choice(space.size(), k, replace=False)
    ref_genes, ref_acc = genes_all[ref_rows], acc[ref_rows]
    pred = predictors_of(runs, ref_genes, ref_acc)
    pool, drawn = pools[s]
    picks = rank.guided(space, pred, pool, drawn, k=transfer.CAP, minimize=False,
                        ref_genes=ref_genes)
    t, o = transfer._walk(np.asarray(space.index(picks.genes)), acc, k,  # pylint: disable=protected-access
                          bool((ref_acc == np.nanmax(acc)).any()))
    top1.append(t)
    to_opt.append(o)
    rho.append(scipy.stats.spearmanr(pred.scores(genes_all[reps]), acc[reps]).statistic)
  return {"top1_mean": float(np.mean(top1)), "to_optimum_median": float(np.median(to_opt)),
          "spearman": float(np.mean(rho)), "top1": [float(v) for v in top1],
          "to_optimum": [int(v) for v in to_opt]}


def single(runs, genes, scores):
  return runs[0].predictor(genes, scores)


def ensemble(runs, genes, scores):
  return MeanEnsemble([r.predictor(genes, scores) for r in runs])


def format_table(report: dict) -> str:
  rows = [[f"seed {s}", f"{v['top1_mean']:.2f}", f"{v['to_optimum_median']:g}",
           f"{v['spearman']:.3f}"] for s, v in report["single"].items()]
  rows += [[f"ensemble of {n}", f"{v['top1_mean']:.2f}", f"{v['to_optimum_median']:g}",
            f"{v['spearman']:.3f}"] for n, v in report["ensemble"].items()]
  top = np.array([v["top1_mean"] for v in report["single"].values()])
  return "\n".join([
      f"{transfer.LABELS[report['target']]}, K = {report['k']}, pool {report['pool']}, "
      f"protocol seeds {report['protocol_seeds']}, surrogate preset {report['preset']}"
      f"{''.join(' --set ' + o for o in report.get('surrogate_overrides', []))}: "
      "the Table 1 protocol of `pnag eval transfer` with the surrogate's meta-training seed "
      f"varied. Over surrogate seeds, top-1 is {top.mean():.2f} ± {top.std(ddof=1):.2f} "
      "(mean ± std).", "",
      reports.table(["surrogate", "top-1", "to-opt (median)", "Spearman"], rows)])


def plot(report: dict, path: Path) -> None:
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for s, v in report["single"].items():
    ax.scatter(v["to_optimum_median"], v["top1_mean"], c="C0")
    ax.annotate(f"s{s}", (v["to_optimum_median"], v["top1_mean"]), fontsize=8)
  for n, v in report["ensemble"].items():
    ax.scatter(v["to_optimum_median"], v["top1_mean"], c="C1", marker="s")
    ax.annotate(f"ens{n}", (v["to_optimum_median"], v["top1_mean"]), fontsize=8)
  ax.set_xlabel("trained archs to the optimum (median)")
  ax.set_ylabel(f"top-1 accuracy, K = {report['k']}")
  fig.tight_layout()
  reports.save_figure(fig, path)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--stage1", required=True, help="NB201 workdir holding stage1/ (the pool)")
  p.add_argument("--surrogates", required=True, help="root of the per-seed surrogate runs")
  p.add_argument("--out", required=True)
  p.add_argument("--target", default="cifar10_test_acc", choices=list(transfer.TARGETS))
  p.add_argument("--seeds", type=int, default=5, help="surrogate seeds 0..N-1")
  p.add_argument("--protocol-seeds", type=int, default=5)
  p.add_argument("--k", type=int, default=5)
  p.add_argument("--pool", type=int, default=100_000)
  p.add_argument("--preset", default="quick")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="surrogate config override for every seed; repeatable")
  p.add_argument("--data-dir", default=None)
  args = p.parse_args()
  for flag in ("seeds", "protocol_seeds", "k", "pool"):
    if getattr(args, flag) < 1:
      p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")

  space = get_space("nb201")
  tasks = tasks_lib.builtin_tasks("nb201", args.data_dir)
  acc = tasks[args.target].by_row()
  _, sampler = load_sampler(args.stage1)
  protocol_seeds = list(range(args.protocol_seeds))
  pools = {s: rank.draw_pool(sampler, jax.random.key(s), args.pool) for s in protocol_seeds}
  exclude = (transfer.TARGETS[args.target],)
  runs = [transfer.meta_trained(Path(args.surrogates) / f"seed{s}", exclude,
                                preset=args.preset, seed=s, overrides=args.overrides,
                                data_dir=args.data_dir)
          for s in range(args.seeds)]
  common = {"space": space, "acc": acc, "pools": pools, "protocol_seeds": protocol_seeds,
            "k": args.k, "salt": zlib.crc32(args.target.encode())}
  report = {"target": args.target, "k": args.k, "pool": args.pool, "preset": args.preset,
            "surrogate_overrides": args.overrides,
            "protocol_seeds": protocol_seeds, "stage1_workdir": args.stage1,
            "surrogate_workdirs": [str(r.workdir) for r in runs],
            "single": {str(s): evaluate(single, [r], **common) for s, r in enumerate(runs)},
            "ensemble": {str(n): evaluate(ensemble, runs[:n], **common)
                         for n in range(2, len(runs) + 1)},
            "machine": reports.machine()}
  out = reports.out_dir(args.out)
  reports.write_outputs(out, "transfer_seed_spread", report, format_table, plot)
  print(format_table(report))


if __name__ == "__main__":
  main()
