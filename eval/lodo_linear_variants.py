"""Leave-one-device-out with the linear prior: is 9 of 11 devices at 0.90 within reach?

  PNAG_DATA_DIR=../shared/data python eval/lodo_linear_variants.py \
      --out eval/reports/lodo_linear_variants --draws 10

With only its untied hypothesis, the linear prior (`models/linear_prior.py`) reached 8
of 11 devices with a mean Spearman >= 0.90 at K = 10 in `pnag eval families`, over 3
reference draws. This script asks whether that is the draws, the prior or the model
class, without training a network (the linear prior is a closed-form fit of the
training tasks):

  ceiling     a least-squares fit of each latency column on all 6,466 classes, with the
              one-hot edge ops the prior uses and with all pairwise products of edge
              ops added: the best any linear model of those features ranks;
  untied      one Gaussian over all training tasks' one-hot fits (the prior before the
              tied hypothesis), through the library's own posterior;
  shipped     the prior as `pnag train surrogate` fits it now: the untied and the tied
              hypothesis (one weight per op, the same on every edge), averaged by their
              evidence on the references;
  tied        the tied hypothesis alone;
  family      one Gaussian (untied) per task family with >= 2 training tasks; the new
              task takes the posterior of the family whose evidence on the K
              references is highest (`family_map`) or the evidence-weighted mean
              (`family_mix`);
  jitter      the untied prior with extra diagonal jitter, chosen by evidence.

Training tasks, validation split and reference draws are exactly those of
`pnag eval families` (draws 0-2 are its draws; more draws add seeds 3, 4, ...).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import scipy.stats

from pnag_jax import tasks as tasks_lib
from pnag_jax.evaluation import families, reports
from pnag_jax.guidance import rank
from pnag_jax.models import linear_prior as linear_lib
from pnag_jax.spaces import get_space
from pnag_jax.stages import surrogate as stage
from pnag_jax.training import surrogate as trainer

K = 10
BAR = 0.90
JITTERS = (0.0, 1e-3, 1e-2, 3e-2, 1e-1)  # added to the prior's own PRIOR_JITTER
VARIANTS = ("untied", "shipped", "tied", "family_map", "family_mix", "jitter")


def _posterior(prior: dict, a: np.ndarray, z: np.ndarray) -> tuple[float, np.ndarray]:
  """(log evidence, posterior mean weights) of one Gaussian prior, as the library's."""
  w, _, evidence = linear_lib.gaussian_posterior(
      jnp.asarray(prior["mean"]), jnp.asarray(prior["cov"]), jnp.asarray(a, jnp.float32),
      jnp.asarray(z, jnp.float32), jnp.ones(len(z), jnp.float32))
  return float(evidence), np.asarray(w, np.float64)


def _pairwise(space, genes: np.ndarray) -> np.ndarray:
  cards = space.gene_cardinalities
  cols = [np.asarray(linear_lib.features(space, genes), np.float64)]
  for i, j in itertools.combinations(range(len(cards)), 2):
    cols.append(np.eye(cards[i] * cards[j])[genes[:, i] * cards[j] + genes[:, j]])
  return np.concatenate(cols, 1)


def run(out, *, data_dir=None, draws: int = 10) -> dict:
  out = reports.out_dir(out)
  space = get_space("nb201")
  tasks = tasks_lib.builtin_tasks("nb201", data_dir)
  every = space.enumerate()
  reps = rank.first_of_each_class(space, every)
  x = np.asarray(linear_lib.features(space, every), np.float64)
  x_pairs = _pairwise(space, np.asarray(every))
  report = {"k": K, "bar": BAR, "draws": draws, "devices": {}, "machine": reports.machine()}
  for device, pattern in families.devices(tasks).items():
    cfg = stage.make_config("quick", "nb201", 0, (pattern,), ())
    train, _, excluded = trainer.split_tasks(cfg, tasks)
    data = {n: (tasks[n].data().genes, tasks[n].data().scores) for n in train}
    fitted = linear_lib.fit_prior(space, data.values())
    priors = {"untied": {k: fitted[k] for k in ("mean", "cov")},
              "shipped": linear_lib.gaussians(fitted),
              "tied": {"mean": fitted["tied_mean"], "cov": fitted["tied_cov"]}}
    by_family = {}
    for n in train:
      by_family.setdefault(tasks[n].family, []).append(data[n])
    components = [linear_lib.fit_prior(space, pairs) for _, pairs in sorted(by_family.items())
                  if linear_lib.usable_tasks(pairs) >= 2]
    # The untied prior with more jitter on its diagonal (it already holds PRIOR_JITTER).
    jittered = [{"mean": fitted["mean"], "cov": fitted["cov"] + j * np.eye(fitted["mean"].size)}
                for j in JITTERS]
    rho = {v: [] for v in VARIANTS}
    ceiling = {}
    for i, name in enumerate(excluded):
      y = tasks[name].by_row()
      ceiling[name] = {
          label: float(scipy.stats.spearmanr(
              feats[reps] @ np.linalg.lstsq(feats[reps], y[reps], rcond=None)[0],
              y[reps]).statistic)
          for label, feats in (("one_hot", x), ("pairwise", x_pairs))}
      for s in range(draws):
        # The draw of `evaluation.families.spearman_by_k`, so draws 0-2 are its own.
        refs = np.random.default_rng([s, K, i]).choice(space.size(), K, replace=False)
        a = x[refs]
        z = (y[refs] - y[refs].mean()) / y[refs].std()
        preds = {}
        for v, prior in priors.items():
          w, _, _ = linear_lib.posterior({k: jnp.asarray(p) for k, p in prior.items()},
                                         jnp.asarray(a, jnp.float32),
                                         jnp.asarray(z, jnp.float32), jnp.ones(K, bool))
          preds[v] = x[reps] @ np.asarray(w, np.float64)
        fits = [_posterior(c, a, z) for c in components]
        evidence = np.array([e for e, _ in fits])
        preds["family_map"] = x[reps] @ fits[int(evidence.argmax())][1]
        p = np.exp(evidence - evidence.max())
        preds["family_mix"] = x[reps] @ sum(pi * wi for pi, (_, wi) in zip(p / p.sum(), fits))
        preds["jitter"] = x[reps] @ max((_posterior(j, a, z) for j in jittered),
                                        key=lambda f: f[0])[1]
        for v in VARIANTS:
          rho[v].append(float(scipy.stats.spearmanr(preds[v], y[reps]).statistic))
    report["devices"][device] = {
        "settings": list(excluded), "ceiling": ceiling,
        **{f"{v}_first3": float(np.mean(np.reshape(rho[v], (len(excluded), draws))[:, :3]))
           for v in VARIANTS},
        **{v: float(np.mean(rho[v])) for v in VARIANTS}}
    reports.write_outputs(out, "lodo_linear_variants", report, format_table, _plot)
  report["devices_at_bar"] = {v: sum(d[v] >= BAR for d in report["devices"].values())
                              for v in VARIANTS}
  report["devices_at_bar_first3"] = {
      v: sum(d[f"{v}_first3"] >= BAR for d in report["devices"].values()) for v in VARIANTS}
  reports.write_outputs(out, "lodo_linear_variants", report, format_table, _plot)
  return report


def format_table(report: dict) -> str:
  rows = []
  for device, d in report["devices"].items():
    ceil = [np.mean([c[k] for c in d["ceiling"].values()]) for k in ("one_hot", "pairwise")]
    rows.append([device, len(d["settings"]), f"{ceil[0]:.3f}", f"{ceil[1]:.3f}",
                 f"{d['untied_first3']:.3f}"] + [f"{d[v]:.3f}" for v in VARIANTS])
  lines = [f"Leave one device out, linear prior, K = {report['k']}: mean Spearman over the "
           f"device's settings and {report['draws']} reference draws (\"first 3\": "
           "`pnag eval families`' own draws). Ceiling: least squares on all 6,466 "
           "classes.", "",
           reports.table(["device", "settings", "ceiling, one-hot", "ceiling, pairwise",
                          "untied, first 3", *VARIANTS], rows)]
  if "devices_at_bar" in report:
    lines += ["", f"Devices at >= {report['bar']}: " + ", ".join(
        f"{v} {report['devices_at_bar'][v]} ({report['devices_at_bar_first3'][v]} on the "
        "first 3 draws)" for v in VARIANTS)]
  return "\n".join(lines)


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  devs = list(report["devices"])
  fig, ax = plt.subplots(figsize=(8, 3.6))
  xs = np.arange(len(devs))
  width = 0.8 / (len(VARIANTS) + 1)
  ceil = [np.mean([c["one_hot"] for c in report["devices"][d]["ceiling"].values()])
          for d in devs]
  ax.bar(xs - 0.4, ceil, width, label="ceiling (one-hot, full table)", color="0.8",
         align="edge")
  for i, v in enumerate(VARIANTS):
    ax.bar(xs - 0.4 + (i + 1) * width, [report["devices"][d][v] for d in devs], width,
           label=v, align="edge")
  ax.axhline(report["bar"], color="k", lw=0.8, ls="--")
  ax.set_ylim(0.7, 1.0)
  ax.set_xticks(xs, devs, rotation=60, fontsize=7)
  ax.set_ylabel(f"Spearman, K = {report['k']}")
  ax.legend(fontsize=7, ncol=3, loc="lower left")
  reports.save_figure(fig, path)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default="eval/reports/lodo_linear_variants")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--draws", type=int, default=10, help="reference draws per setting")
  args = p.parse_args()
  print(format_table(run(args.out, data_dir=args.data_dir, draws=args.draws)))


if __name__ == "__main__":
  main()
