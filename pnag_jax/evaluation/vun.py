"""Validity, uniqueness and novelty as in the paper's Table 6.

1,000 architectures x 3 seeds per row. Rows: uniform random sampling (the baseline in
every table) and each generation prior of a trained run (stage 2's `ar` prior too,
where the workdir holds a stage 2), on raw output: no constrained decoding,
deduplication or filtering. Figures are means and standard deviations over the seeds,
in percent.

Definitions (DiffusionNAG's, which the paper follows):

* validity: share that passes the space's format rules (`SearchSpace.format_valid`,
  DiffusionNAG's checks: NB201 has no connectivity check, MBV3 checks stage depths);
* uniqueness: distinct valid / valid;  novelty: distinct valid not in the training
  split / distinct valid. `iso_*` merge isomorphic (same-function) architectures.

`strict_validity` is ours and stricter (connected, and every structural rule); it is
reported beside validity, never instead of it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax import metrics
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.generation import Sampler, SamplerConfig
from pnag_jax.spaces import SPACE_NAMES, get_space
from pnag_jax.stages import stage1

COLUMNS = ("validity", "strict_validity", "uniqueness", "novelty", "iso_uniqueness",
           "iso_novelty")

#: The paper's Table 6 (mean over 3 runs of 1,000), for the side-by-side.
PAPER_TABLE6 = {
    "nb201": {
        "GDSS": {"validity": 4.56},
        "POMONAG": {"validity": 99.97, "uniqueness": 34.14, "novelty": 37.41},
        "DiffusionNAG": {"validity": 98.97, "uniqueness": 98.70, "novelty": 49.20},
        "PNAG (paper)": {"validity": 100.00, "uniqueness": 99.70, "novelty": 59.34},
    },
    "mbv3": {
        "GDSS": {"validity": 0.00, "uniqueness": 42.17},
        "POMONAG": {"validity": 72.58, "uniqueness": 91.79, "novelty": 100.00},
        "DiffusionNAG": {"validity": 99.09, "uniqueness": 100.00, "novelty": 100.00},
        "PNAG (paper)": {"validity": 100.00, "uniqueness": 100.00, "novelty": 100.00},
    },
}


@dataclasses.dataclass(frozen=True)
class Reference:
  exact: jax.Array
  iso: jax.Array


def reference_of(space, train_genes: np.ndarray) -> Reference:
  g = jnp.asarray(train_genes)
  return Reference(jax.jit(space.exact_key)(g), jax.jit(space.iso_key)(g))


def score(space, genes, format_valid, strict_valid, ref: Reference) -> dict[str, float]:
  """One sample's figures, in percent."""
  genes = jnp.asarray(genes)
  valid = jnp.asarray(format_valid)
  exact = metrics.vun(valid, space.exact_key(genes), ref.exact)
  iso = metrics.vun(valid, space.iso_key(genes), ref.iso)
  out = {"validity": exact["validity"], "strict_validity": jnp.mean(jnp.asarray(strict_valid)),
         "uniqueness": exact["uniqueness"], "novelty": exact["novelty"],
         "iso_uniqueness": iso["uniqueness"], "iso_novelty": iso["novelty"]}
  return {k: 100.0 * float(v) for k, v in out.items()}


def _aggregate(per_seed: list[dict]) -> dict:
  return {c: {"mean": float(np.mean([s[c] for s in per_seed])),
              "std": float(np.std([s[c] for s in per_seed]))} for c in COLUMNS} | {
                  "per_seed": per_seed}


def random_row(space, ref: Reference, num: int, seeds) -> dict:
  sample = jax.jit(space.sample, static_argnums=1)
  per_seed = []
  for s in seeds:
    genes = sample(jax.random.fold_in(jax.random.key(s), 0xBA5E), num)
    ops, adj = space.encode(genes)
    per_seed.append(score(space, genes, space.format_valid(ops, adj),
                          space.strict_valid(ops, adj), ref))
  return _aggregate(per_seed)


def generator_row(sampler: Sampler, ref: Reference, num: int, seeds) -> dict:
  per_seed = []
  for s in seeds:
    out = sampler.generate(jax.random.key(s), num)
    per_seed.append(score(sampler.space, out.genes, out.format_valid, out.valid, ref))
  return _aggregate(per_seed)


def run(runs: dict[str, str], out: str | Path, *, spaces: tuple[str, ...] = (),
        num: int = 1000, seeds=(0, 1, 2), priors=("codes", "fitted", "latent"),
        constrained: bool = True, progress: bool = True) -> dict:
  """V/U/N rows for each space: random, then every prior of the space's run.

  Args:
    runs: space name -> stage-1 workdir.
    out: output directory (vun.json, vun.png, vun.md).
    spaces: extra spaces that get the random row only (novelty against the
      default config's training set).
    constrained: add a code-prior row with constrained decoding, beside the raw rows.
  """
  names = list(dict.fromkeys(list(runs) + list(spaces)))
  if not names:
    raise PnagError("nothing to evaluate: give --run SPACE=WORKDIR or --space SPACE")
  loaded = {}
  for name in names:  # every run checked before --out is made
    space = get_space(name)
    if name in runs:
      loaded[name] = stage1.load(runs[name])
      if loaded[name].space.name != space.name:
        raise PnagError(f"workdir {runs[name]} holds a {loaded[name].space.name} run, "
                        f"not {name}")
  out = reports.out_dir(out)
  report = {"protocol": "paper Table 6: %d archs x %d seeds" % (num, len(seeds)),
            "machine": reports.machine(), "spaces": {}}
  for name in names:
    space = get_space(name)
    if name in runs:
      trained = loaded[name]
      train = trained.train_genes()
    else:
      trained, train = None, stage1.datasets(stage1.make_config("paper", name))[0]
    ref = reference_of(space, train)
    rows = {"random (uniform)": random_row(space, ref, num, seeds)}
    if trained is not None:
      from pnag_jax.stages import stage2  # pylint: disable=g-import-not-at-top
      has_ar = "ar" not in priors and stage2.read_config(runs[name]) is not None
      for prior in tuple(priors) + (("ar",) if has_ar else ()):
        sampler = Sampler.from_run(trained, SamplerConfig(prior=prior).for_num(num))
        rows[f"PNAG-jax, {prior} prior"] = generator_row(sampler, ref, num, seeds)
        if progress:
          print(f"  {name}: {prior} prior done", flush=True)
      if constrained:
        sampler = Sampler.from_run(trained, SamplerConfig(prior="codes",
                                                          constrained=True).for_num(num))
        rows["PNAG-jax, codes prior, constrained"] = generator_row(sampler, ref, num, seeds)
    report["spaces"][name] = {
        "workdir": runs.get(name), "num_train": int(train.shape[0]), "rows": rows,
        "paper": PAPER_TABLE6.get(name, {}),
    }
  reports.write_outputs(out, "vun", report, format_table, _plot)
  return report


def format_table(report: dict) -> str:
  parts = []
  for name, sp in report["spaces"].items():
    rows = []
    for label, r in sp["rows"].items():
      rows.append([label] + [f"{r[c]['mean']:.2f} ± {r[c]['std']:.2f}" for c in COLUMNS])
    for label, r in sp["paper"].items():
      rows.append([label] + [f"{r[c]:.2f}" if c in r else "–" for c in COLUMNS])
    parts.append(f"**{name}** ({sp['num_train']:,} training archs)\n\n" + reports.table(
        ["method", "validity %", "strict valid %", "uniq %", "novelty %", "iso uniq %",
         "iso novelty %"], rows))
  return "\n\n".join(parts)


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  spaces = list(report["spaces"])
  fig, axes = plt.subplots(1, len(spaces), figsize=(5.5 * len(spaces), 3.8), squeeze=False)
  cols = ("validity", "uniqueness", "novelty")
  for ax, name in zip(axes[0], spaces):
    rows = report["spaces"][name]["rows"]
    width = 0.8 / len(rows)
    for i, (label, r) in enumerate(rows.items()):
      xs = np.arange(len(cols)) + i * width
      ax.bar(xs, [r[c]["mean"] for c in cols], width, yerr=[r[c]["std"] for c in cols],
             label=label)
    paper = report["spaces"][name]["paper"].get("PNAG (paper)")
    if paper:
      for j, c in enumerate(cols):
        ax.hlines(paper[c], j - 0.1, j + 0.9, colors="k", linestyles="dashed",
                  label="PNAG (paper)" if j == 0 else None)
    ax.set_xticks(np.arange(len(cols)) + 0.4 - width / 2, cols)
    ax.set_ylim(0, 105)
    ax.set_title(name)
    ax.set_ylabel("%")
  axes[0][0].legend(fontsize=7, loc="lower left")
  reports.save_figure(fig, path)


# ---- `pnag eval vun` ----------------------------------------------------------------------


def _parse_runs(items) -> dict[str, str]:
  runs = {}
  for item in items:
    space, sep, workdir = item.partition("=")
    if not sep or not space or not workdir:
      raise PnagError(f"--run expects SPACE=WORKDIR, got {item!r}")
    get_space(space)
    if space in runs:  # else the last would win silently, the first never read
      raise PnagError(f"--run gives {space} twice ({runs[space]} and {workdir}); one run "
                      "per space")
    runs[space] = workdir
  return runs


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Validity, uniqueness and novelty as in the paper's Table 6: NUM archs x "
                   "SEEDS per prior of each run, raw output, beside uniform random sampling "
                   "and a constrained-decoding row. Validity is DiffusionNAG's format "
                   "validity; strict validity (connected, every rule) is reported beside it.")
  p.epilog = ("example:\n  pnag eval vun --run nb201=runs/nb201 --run mbv3=runs/mbv3 "
              "--out eval/reports/vun\n  pnag eval vun --space darts --out /tmp/vun  "
              "# the random row only")
  p.add_argument("--run", action="append", default=[], metavar="SPACE=WORKDIR",
                 help="a trained stage-1 run; repeatable, one per space")
  p.add_argument("--space", action="append", default=[],
                 help="a space with the random baseline only; repeatable "
                      f"({', '.join(SPACE_NAMES)})")
  p.add_argument("--num", type=int, default=1000, help="archs per seed")
  p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. SEEDS-1")
  p.add_argument("--out", required=True, help="output directory (vun.json, vun.md, vun.png)")


def main(args: argparse.Namespace) -> None:
  for name in args.space:
    get_space(name)
  reports.check_sizes(args.num, args.seeds)
  report = run(_parse_runs(args.run), args.out, spaces=tuple(args.space), num=args.num,
               seeds=tuple(range(args.seeds)))
  print(format_table(report))
  print(f"\nwrote {args.out}/vun.json, vun.md, vun.png")
