"""Transfer to an unseen dataset from K measured archs: the paper's Table 1, leave-dataset-out.

For each target (CIFAR-10, CIFAR-100, ImageNet16-120 test accuracy) a surrogate is
meta-trained with every task of that dataset excluded (its test and validation
accuracy and all its robustness columns: the regex `cifar10(?!0)`, `cifar100`,
`imagenet16_120`), so neither the target nor a near-copy of it is ever read. Then, per
seed and K:

  * K reference cells are drawn uniformly and "trained" (their accuracy looked up);
    they count as trained archs;
  * guided generation ranks a pool drawn from the stage-1 prior (`--pool N`; or every
    cell, `--pool all`) and "trains" its picks in surrogate order;
  * top-1 is the first pick's accuracy, with K+1 trained archs; to-optimum is K plus
    the rank of the first pick that ties the dataset's best (capped at 100).

Baselines in the same run: random search (exact expectation), the surrogate trained
from scratch on the K references alone, the pool of every cell, the table oracle
(the allowed task most Spearman-similar on the K references, its best cells), and the
paper's printed Table 1 rows.

Guides (`--guide`, comma-separated; `rank` is always run, as the main row):

  * `rank`: the stage-1 pool ranked by the surrogate (above);
  * `feedback`: the same pool and surrogate, but picks are trained one at a time and
    each is handed back as a reference before the next is chosen
    (`guidance/feedback.py`); its first pick is `rank`'s, so only to-optimum differs;
  * `ar`: stage 2 conditioned on the task (its K references) and `--target-q` draws
    `--ar-pool` archs; they are "trained" in draw order, each isomorphism class once;
  * `ar+rank`: the same conditioned draws, ranked by the surrogate.

Stage 2 must never read the target either: for each target it is the stage 2 of the
surrogate's own workdir (`--surrogates`/excl_<regex>), which inherits its
exclusions. Where that workdir holds none, the stage-1 checkpoint of `--workdir` is
copied in and stage 2 trained there (`--stage2-preset`, `--stage2-set`; the task
condition is implied). A workdir made by hand (stage 1, `pnag train surrogate
--exclude REGEX`, `pnag train stage2 --set condition=task`) is used as it is.
"""

from __future__ import annotations

import argparse
import re
import shutil
import zlib
from pathlib import Path

import jax
import numpy as np
import scipy.stats

from pnag_jax import config as config_lib
from pnag_jax import tasks as tasks_lib
from pnag_jax.data import DATA_DIR_HELP
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.guidance import adapt, baselines, feedback, rank
from pnag_jax.guidance import run as guided
from pnag_jax.spaces import get_space
from pnag_jax.stages import lineage, stage1
from pnag_jax.stages import stage2 as stage2_lib
from pnag_jax.stages import surrogate as stage

#: Target task -> the regex that excludes its whole dataset.
TARGETS = {"cifar10_test_acc": "cifar10(?!0)", "cifar100_test_acc": "cifar100",
           "imagenet16_120_test_acc": "imagenet16_120"}
LABELS = {"cifar10_test_acc": "CIFAR-10", "cifar100_test_acc": "CIFAR-100",
          "imagenet16_120_test_acc": "ImageNet16-120"}
CAP = 100
AR_GUIDES = ("ar", "ar+rank")
GUIDES = ("rank", "feedback", *AR_GUIDES)
GUIDE_LABELS = {"feedback": "ours, trained picks fed back", "ar": "stage 2, draw order",
                "ar+rank": "stage 2 pool, ranked"}

#: The paper's Table 1 (accuracy / trained archs), as printed; no ImageNet16-120 column.
PAPER_TABLE1 = {
    "PNAG": {"cifar10_test_acc": [94.37, 1], "cifar100_test_acc": [73.51, 1]},
    "DiffusionNAG": {"cifar10_test_acc": [94.37, 1], "cifar100_test_acc": [73.51, 2]},
    "MetaD2A": {"cifar10_test_acc": [94.37, 100], "cifar100_test_acc": [73.34, 100]},
    "TNAS": {"cifar10_test_acc": [94.37, 29], "cifar100_test_acc": [73.51, 59]},
    "BANANAS": {"cifar10_test_acc": [94.37, 46], "cifar100_test_acc": [73.51, 88]},
}


#: Surrogate settings that change only what a run reports, not the model it trains.
REPORT_ONLY = stage.SurrogateConfig.AFTER_TRAINING


def slug(patterns) -> str:
  return re.sub(r"[^A-Za-z0-9]+", "_", "-".join(patterns)).strip("_") or "all"


def check_settings(preset: str, overrides) -> None:
  """Parses a protocol's surrogate preset and `--set` before it creates its output
  directory, so that a typo fails in one line and leaves nothing behind."""
  stage.make_config(preset, "nb201", 0, (), overrides)


def meta_trained(root: Path, exclude: tuple[str, ...], *, preset: str, seed: int,
                 overrides=(), data_dir=None, tasks=None) -> stage.SurrogateRun:
  """The surrogate meta-trained without `exclude`, under `root/<slug>`; trained if absent.

  An existing one is reused only if it was trained with the same exclusions.
  """
  from pnag_jax.training import surrogate as trainer  # pylint: disable=g-import-not-at-top
  workdir = root / f"excl_{slug(exclude)}"
  cfg = stage.make_config(preset, "nb201", seed, exclude, overrides)
  saved = stage.read_config(workdir)
  if saved is not None:
    if saved.exclude != tuple(exclude):
      raise PnagError(f"{workdir} holds a surrogate trained without {saved.exclude}, "
                      f"not {tuple(exclude)}; remove it or use another --surrogates")
    _check_reused(saved, cfg, REPORT_ONLY, f"{workdir} holds a surrogate", workdir)
    # On this data dir's tasks: another one (a table missing or added) has other ones.
    train, val, _ = trainer.split_tasks(
        cfg, tasks if tasks is not None else tasks_lib.builtin_tasks("nb201", data_dir))
    lineage.check_recorded(stage.read_meta(workdir),
                           {"train_tasks": tuple(train), "val_tasks": tuple(val)},
                           where=f"the surrogate in {workdir}",
                           remedy=f"give the data dir it read, or remove {workdir}")
  # A run from before the linear prior existed is completed by a rerun: it resumes at
  # its last step, adds the prior (a fit of the same training tasks) and re-evaluates.
  # So is one whose last checkpoint was removed (as a corrupt one's error advises): it
  # trains on from the one before to its end, as it would have.
  if not ((workdir / stage.NAME / "report.json").is_file()
          and stage.linear_prior_path(workdir).is_file()
          and stage.latest_step(workdir) == cfg.steps):
    trainer.train_and_evaluate(cfg, workdir, data_dir=data_dir, tasks=tasks, progress=False)
  return stage.load(workdir, space="nb201")


def _check_reused(saved, asked, report_only: tuple[str, ...], holds: str, remove) -> None:
  """Refuses a run trained, or killed and so about to be resumed, under other settings
  than `asked`: a report names the preset and --set it asked for, and the trainers
  check only the settings a resume must share (a resumed run would mix two configs).

  Raises:
    PnagError: `holds` (what is where) and each setting that differs.
  """
  differ = [f"{k}={getattr(saved, k)!r} (asked: {getattr(asked, k)!r})"
            for k in config_lib.differing(saved, asked, report_only)]
  if differ:
    raise PnagError(f"{holds} trained with {', '.join(differ)}; remove {remove} or use "
                    "another --surrogates")


def nb201_sampler(workdir, protocol: str):
  """The sampler of `workdir`'s stage 1, which must be NB201's: the protocols look its
  draws up in NB201's tables (another space's genes would not even broadcast).

  The space is read from the run's config first, so another space's weights are never
  restored for nothing.
  """
  from pnag_jax.generation.run import load_sampler  # pylint: disable=g-import-not-at-top
  check_nb201_stage1(workdir, protocol)
  _, sampler = load_sampler(workdir)
  return sampler


def check_nb201_stage1(workdir, protocol: str) -> None:
  """A one-line error unless `workdir` holds an NB201 stage-1 run."""
  saved = stage1.read_config(workdir)
  if saved is None:
    stage1.load(workdir)  # raises, naming what is missing (or what was given instead)
  if saved.space != "nb201":
    raise PnagError(f"{protocol} needs an NB201 stage-1 run; {workdir} is {saved.space}")


# Stage-2 settings that change what is logged or how a step is sliced, not the model;
# not keep_best, which picks the params served.
STAGE2_REPORT_ONLY = tuple(k for k in stage2_lib.Stage2Config.AFTER_TRAINING
                           if k != "keep_best")
#: The ar guides' settings when not given (None below): given without an ar guide,
#: each is refused rather than ignored.
AR_DEFAULTS = {"target_q": 0.99, "ar_pool": 1000, "cfg_scale": 0.0, "stage2_preset": "quick"}


def stage2_config(preset: str, overrides=()) -> stage2_lib.Stage2Config:
  """The task-conditioned stage 2 the ar guides train, checked before any work."""
  if any(o.partition("=")[0].strip() == "condition" for o in overrides):
    raise PnagError("--stage2-set cannot set condition: the ar guides need condition=task")
  # On top of the preset's config, as a resume's --set: this stage 2 has no --seed of
  # its own, so seed is a key here (`make_config` refuses it beside its seed field).
  return config_lib.with_overrides(stage2_lib.make_config(preset, overrides=("condition=task",)),
                                   overrides, where="--stage2-set")


def conditional_stage2(workdir: Path, stage1_workdir, exclude: tuple[str, ...],
                       cfg: stage2_lib.Stage2Config, *, data_dir=None) -> stage2_lib.Stage2Run:
  """The task-conditioned stage 2 of the surrogate workdir `workdir`, trained to its end.

  A new one is trained on a copy of `stage1_workdir`'s stage 1; one killed halfway (no
  final report) is resumed. It must have inherited exactly `exclude` from the surrogate
  beside it, and have been trained as `cfg` asks: a report names the preset and
  --stage2-set it asked for.
  """
  from pnag_jax.training import stage2 as trainer  # pylint: disable=g-import-not-at-top
  saved = stage2_lib.read_config(workdir)
  if saved is not None:
    _check_reused(saved, cfg, STAGE2_REPORT_ONLY, f"{workdir} holds a stage 2",
                  workdir / stage2_lib.NAME)
  copy = workdir / "stage1"
  # The params' hashes in the checkpoints' metadata: nothing restored to compare them.
  if copy.is_dir() and (stage1.read_meta(workdir) or {}).get("params_sha256") != (
      stage1.read_meta(stage1_workdir) or {}).get("params_sha256"):
    # Its stage 2 was trained on that copy: guides drawn from it are not --workdir's.
    raise PnagError(f"{copy} is a copy of another stage-1 run than {stage1_workdir}'s; "
                    f"remove it and {workdir / stage2_lib.NAME}, or use another --surrogates")
  if not (workdir / stage2_lib.NAME / "report.json").is_file():
    if not copy.is_dir():
      shutil.copytree(Path(stage1_workdir) / "stage1", copy,
                      ignore=shutil.ignore_patterns("metrics*.jsonl"))
    trainer.train_and_evaluate(cfg, workdir, data_dir=data_dir, progress=False)
  run2 = stage2_lib.load_conditioned(workdir, "task", "the ar guides need")
  if run2.surrogate.cfg.exclude != tuple(exclude):
    raise PnagError(f"stage 2 in {workdir} sits on a surrogate trained without "
                    f"{run2.surrogate.cfg.exclude}, not {tuple(exclude)}")
  return run2


def _ar_pool(sampler, run2, ref_genes, ref_acc, *, q: float, key, num: int):
  """(strictly valid genes in draw order, drawn): stage 2 given the references and q."""
  cond = stage2_lib.task_condition(run2.surrogate, ref_genes, ref_acc, minimize=False,
                                   target=q)
  return rank.draw_pool(sampler, key, num, cond)


def _as_picks(space, genes_all: np.ndarray, rows: np.ndarray, valid: np.ndarray,
              ref_genes: np.ndarray) -> np.ndarray:
  """Rows of an order over the whole space (`genes_all`), trained as picks are: strictly
  valid cells (`valid` bool[size]), each isomorphism class once (its first cell in the
  order), no reference's class."""
  cand, _ = rank.candidates(space, genes_all[rows[valid[rows]]], ref_genes=ref_genes)
  return np.asarray(space.index(cand))


def _ci95(x) -> float:
  x = np.asarray(x, np.float64)
  if x.size < 2:
    return float("nan")
  return float(scipy.stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def _summary(k: int, top1, best_of, to_opt, rho=None, tau=None) -> dict:
  out = {"top1_mean": float(np.mean(top1)), "top1_ci95": _ci95(top1),
         "best_of_refs_and_pick_mean": float(np.mean(best_of)), "trained_archs": k + 1,
         "to_optimum_median": float(np.median(to_opt)), "top1": [float(v) for v in top1],
         "to_optimum": [int(v) for v in to_opt]}
  if rho is not None:
    out["spearman"] = float(np.mean(rho))
    out["kendall"] = float(np.mean(tau))
  return out


def _walk(order_rows: np.ndarray, acc: np.ndarray, k: int, ref_best: bool) -> tuple[float, int]:
  """(first pick's accuracy, trained archs to the optimum) of picks in order.

  No picks (an empty pool) give a NaN top-1 (and so a visibly NaN mean).
  """
  best = np.nanmax(acc)
  if not len(order_rows):
    return float("nan"), (k if ref_best else CAP)
  if ref_best:
    return float(acc[order_rows[0]]), k
  hit = np.flatnonzero(acc[order_rows[:CAP - k]] == best)
  return float(acc[order_rows[0]]), (k + int(hit[0]) + 1) if hit.size else CAP


def _record(row: dict, top1: float, to_opt: int, ref_acc: np.ndarray) -> dict:
  """Appends one seed's (top-1, best of refs and pick, to-optimum) to `row`; returns it.

  A NaN top-1 (nothing picked) leaves the references' best as best(refs, pick).
  """
  row["top1"].append(top1)
  row["best_of"].append(max(np.nan_to_num(top1, nan=-np.inf), float(ref_acc.max())))
  row["to_opt"].append(to_opt)
  return row


def oriented_tables(tasks: dict) -> dict[str, np.ndarray]:
  """Table tasks by row, negated where lower is better: the table oracle's choices."""
  return {n: t.by_row() * (-1 if t.minimize else 1) for n, t in tasks.items()
          if not t.is_function}


def run_target(target: str, srun: stage.SurrogateRun, pools: dict, *, tasks: dict, seeds,
               ks, scratch_steps: int, adapt_steps: int = 0, guides=(), run2=None,
               target_q: float = AR_DEFAULTS["target_q"], ar_pool: int = AR_DEFAULTS["ar_pool"],
               cfg_scale: float = AR_DEFAULTS["cfg_scale"]) -> dict:
  """One target's Table 1 entry; `guides` are the rows beside `rank` (`GUIDES[1:]`)."""
  space = srun.space
  genes_all = space.enumerate()
  acc = tasks[target].by_row()
  reps = rank.first_of_each_class(space, genes_all)
  valid = np.asarray(space.strict_valid(*space.encode(genes_all)))
  kept, _ = tasks_lib.select_tasks(tasks, srun.cfg.exclude)
  # The oracle reads only tables the surrogate was allowed to read.
  oracle_tables = oriented_tables(kept)
  best = float(np.nanmax(acc))
  entry = {"exclude": list(srun.cfg.exclude), "excluded_tasks": list(srun.excluded_tasks),
           "best": best, "K": {},
           "baselines": {"pool_all": {"K": {}}, "scratch": {"K": {}},
                         "table_oracle": {"K": {}}, "random": {"K": {}}}}
  salt = zlib.crc32(target.encode())
  ar_guides = tuple(g for g in guides if g in AR_GUIDES)
  entry["guides"] = {g: {"K": {}} for g in guides}
  sampler = None
  if ar_guides:
    from pnag_jax.generation import Sampler, SamplerConfig  # pylint: disable=g-import-not-at-top
    sampler = Sampler.from_run(run2.stage1, SamplerConfig(
        prior="ar", cfg_scale=cfg_scale, chunk_size=min(ar_pool, 1000)))
    for g in ar_guides:
      entry["guides"][g]["pool_unique"] = {}
    entry["stage2"] = {"workdir": str(run2.workdir), "step": run2.step,
                       "target_q": target_q, "ar_pool": ar_pool, "cfg_scale": cfg_scale}
  for k in ks:
    rows = {m: {"top1": [], "best_of": [], "to_opt": [], "rho": [], "tau": []}
            for m in ("pnag", "pool_all", "scratch", "table_oracle", *guides)}
    ar_unique = []
    oracle_tasks = []
    for s in seeds:
      ref_rows = np.random.default_rng([s, k, salt]).choice(space.size(), k, replace=False)
      ref_genes, ref_acc = genes_all[ref_rows], acc[ref_rows]
      ref_best = bool((ref_acc == best).any())
      predictors = {"pnag": adapt.adapted_predictor(srun, ref_genes, ref_acc,
                                                    steps=adapt_steps, seed=s)}
      predictors["pool_all"] = predictors["pnag"]
      predictors["scratch"] = adapt.scratch_predictor(srun.cfg, ref_genes, ref_acc,
                                                          seed=s, steps=scratch_steps)
      for m, pred in predictors.items():
        pool_genes, drawn = pools["all"] if m == "pool_all" else pools[s]
        picks = rank.guided(space, pred, pool_genes, drawn, k=CAP, minimize=False,
                            ref_genes=ref_genes)
        r = _record(rows[m], *_walk(np.asarray(space.index(picks.genes)), acc, k, ref_best),
                    ref_acc)
        if m != "pool_all":
          p = pred.scores(genes_all[reps])
          r["rho"].append(scipy.stats.spearmanr(p, acc[reps]).statistic)
          r["tau"].append(scipy.stats.kendalltau(p, acc[reps]).statistic)
      if "feedback" in guides:
        # A reference at the optimum ends the count at K; only the first pick is read.
        trained = feedback.walk(
            space, lambda g, v, s=s: adapt.adapted_predictor(srun, g, v, steps=adapt_steps,
                                                             seed=s),
            pools[s][0], ref_genes=ref_genes, ref_scores=ref_acc,
            budget=1 if ref_best else CAP - k,
            measure=lambda g: acc[int(space.index(g[None])[0])], stop=lambda v: v == best)
        _record(rows["feedback"],
                *_walk(np.asarray(space.index(trained.genes)), acc, k, ref_best), ref_acc)
      if ar_guides:
        key = jax.random.fold_in(jax.random.key(s), salt ^ k)
        pool_genes, drawn = _ar_pool(sampler, run2, ref_genes, ref_acc, q=target_q, key=key,
                                     num=ar_pool)
        ar_unique.append(int(rank.first_of_each_class(space, pool_genes).size))
        for g in ar_guides:
          if g == "ar":
            order = rank.candidates(space, pool_genes, ref_genes=ref_genes)[0][:CAP]
          else:
            order = rank.guided(space, predictors["pnag"], pool_genes, drawn, k=CAP,
                                minimize=False, ref_genes=ref_genes).genes
          # An empty pool (nothing valid drawn) picks nothing: the refs' best stands in
          # best(refs, pick).
          _record(rows[g], *_walk(np.asarray(space.index(order)), acc, k, ref_best), ref_acc)
      name, order = baselines.table_oracle_order(oracle_tables, ref_rows, ref_acc)
      # The table orders all cells; retraining an isomorphic copy is no new pick.
      order = _as_picks(space, genes_all, order, valid, ref_genes)
      oracle_tasks.append(name)
      _record(rows["table_oracle"], *_walk(order, acc, k, ref_best), ref_acc)
    entry["K"][str(k)] = _summary(k, *[rows["pnag"][c] for c in
                                       ("top1", "best_of", "to_opt", "rho", "tau")])
    entry["baselines"]["pool_all"]["K"][str(k)] = _summary(
        k, rows["pool_all"]["top1"], rows["pool_all"]["best_of"], rows["pool_all"]["to_opt"])
    entry["baselines"]["scratch"]["K"][str(k)] = _summary(
        k, *[rows["scratch"][c] for c in ("top1", "best_of", "to_opt", "rho", "tau")])
    entry["baselines"]["table_oracle"]["K"][str(k)] = {
        **_summary(k, rows["table_oracle"]["top1"], rows["table_oracle"]["best_of"],
                   rows["table_oracle"]["to_opt"]), "tasks": oracle_tasks}
    for g in guides:
      entry["guides"][g]["K"][str(k)] = _summary(
          k, rows[g]["top1"], rows[g]["best_of"], rows[g]["to_opt"])
    for g in ar_guides:
      entry["guides"][g]["pool_unique"][str(k)] = ar_unique
    entry["baselines"]["random"]["K"][str(k)] = {
        "top1_mean": baselines.random_expected_best(acc, k + 1), "trained_archs": k + 1,
        "to_optimum_median": float(baselines.random_median_to_optimum(acc, cap=CAP))}
  return entry


def run(workdir, out, *, data_dir=None, preset: str = "quick", seeds=(0, 1, 2, 3, 4),
        ks=(2, 5, 10), pool="100000", targets=tuple(TARGETS), surrogates=None,
        overrides=(), scratch_steps: int = 150, surrogate_seed: int = 0,
        adapt_steps: int = 0, guides=("rank",), target_q: float | None = None,
        ar_pool: int | None = None, cfg_scale: float | None = None,
        stage2_preset: str | None = None, stage2_overrides=()) -> dict:
  for t in targets:
    if t not in TARGETS:
      raise PnagError(f"unknown target {t!r}; targets: {', '.join(TARGETS)}")
  for g in guides:
    if g not in GUIDES:
      raise PnagError(f"unknown guide {g!r}; guides: {', '.join(GUIDES)}")
  extra = tuple(g for g in GUIDES[1:] if g in guides)
  ar_guides = tuple(g for g in extra if g in AR_GUIDES)
  asked = {"target_q": target_q, "ar_pool": ar_pool, "cfg_scale": cfg_scale,
           "stage2_preset": stage2_preset, "stage2_set": stage2_overrides or None}
  given = ["--" + k.replace("_", "-") for k, v in asked.items() if v is not None]
  if given and not ar_guides:
    raise PnagError(f"{', '.join(given)} only apply to the ar guides (--guide ar or ar+rank)")
  target_q, ar_pool, cfg_scale, stage2_preset = (
      AR_DEFAULTS[k] if asked[k] is None else asked[k] for k in AR_DEFAULTS)
  if not 0.0 <= target_q <= 1.0:
    raise PnagError(f"--target-q must be a quantile in [0, 1], got {target_q}")
  if ar_pool < 1:
    raise PnagError(f"--ar-pool must be positive, got {ar_pool}")
  for k in ks:
    # K references leave CAP - K trained picks to find the optimum with.
    if not 1 <= k < CAP:
      raise PnagError(f"K must be in [1, {CAP - 1}] references, got {k}")
  if not seeds:
    raise PnagError("transfer needs at least one seed")
  if adapt_steps < 0 or scratch_steps < 0:
    raise PnagError(f"--adapt-steps and --scratch-steps must be >= 0, got {adapt_steps} and "
                    f"{scratch_steps}")
  if adapt_steps and min(ks) < 2:  # now, not after the meta-training
    raise PnagError("--adapt-steps fits the surrogate to the references, which needs K >= 2")
  draws = guided.parse_pool(str(pool))
  check_settings(preset, overrides)
  stage2_cfg = None
  if ar_guides:  # checked now: the ar guides only build their sampler after stage 2
    from pnag_jax.generation import SamplerConfig  # pylint: disable=g-import-not-at-top
    SamplerConfig(prior="ar", cfg_scale=cfg_scale)
    stage2_cfg = stage2_config(stage2_preset, stage2_overrides)
    check_nb201_stage1(workdir, "transfer's ar guides")  # their stage 2 is trained on it
  space = get_space("nb201")
  tasks = tasks_lib.builtin_tasks("nb201", data_dir)
  tasks_lib.require_tables(tasks, "pnag eval transfer")
  pools = {"all": rank.enumerate_pool(space)}
  if pool == "all":
    pools.update({s: pools["all"] for s in seeds})
  else:
    sampler = nb201_sampler(workdir, "transfer")
    for s in seeds:
      pools[s] = rank.draw_pool(sampler, jax.random.key(s), draws)
  out = reports.out_dir(out)  # once the settings and the run are known to be good
  root = Path(surrogates) if surrogates else out / "surrogates"
  report = {"preset": preset, "pool": pool, "stage1_workdir": str(workdir),
            "seeds": list(seeds), "ks": list(ks), "surrogate_overrides": list(overrides),
            "adapt_steps": adapt_steps,
            "guides": ["rank", *extra],
            "pool_unique": {str(s): int(rank.first_of_each_class(space, pools[s][0]).size)
                            for s in seeds},
            "targets": {}, "paper_table1": PAPER_TABLE1, "machine": reports.machine()}
  if ar_guides:  # what each target's stage 2 was trained (or checked to be trained) as
    report["stage2_preset"] = stage2_preset
    report["stage2_overrides"] = list(stage2_overrides)
  for t in targets:
    exclude = (TARGETS[t],)
    srun = meta_trained(root, exclude, preset=preset, seed=surrogate_seed,
                        overrides=overrides, data_dir=data_dir)
    run2 = None
    if ar_guides:
      run2 = conditional_stage2(srun.workdir, workdir, exclude, stage2_cfg,
                                data_dir=data_dir)
    report["targets"][t] = run_target(t, srun, pools, tasks=tasks, seeds=seeds, ks=ks,
                                      scratch_steps=scratch_steps, adapt_steps=adapt_steps,
                                      guides=extra, run2=run2, target_q=target_q,
                                      ar_pool=ar_pool, cfg_scale=cfg_scale)
    reports.write_outputs(out, "transfer", report, format_table, _plot)
  return report


def format_table(report: dict) -> str:
  lines = [f"Leave-dataset-out transfer (NB201), surrogate preset {report['preset']}, pool "
           f"{report['pool']}, {len(report['seeds'])} seeds, adaptation steps "
           f"{report.get('adapt_steps', 0)}. Top-1: accuracy of the first "
           "pick, with K+1 trained archs (mean ± 95% CI); to-opt: median trained archs until "
           f"a pick ties the dataset's best (capped at {CAP}).", ""]
  head = ["target", "K", "method", "trained", "top-1", "best(refs, pick)", "to-opt",
          "Spearman"]
  rows = []
  for t, e in report["targets"].items():
    for k, v in e["K"].items():
      rows.append([LABELS[t], k, "PNAG (ours)", v["trained_archs"],
                   f"{v['top1_mean']:.2f} ± {v['top1_ci95']:.2f}",
                   f"{v['best_of_refs_and_pick_mean']:.2f}", f"{v['to_optimum_median']:g}",
                   f"{v['spearman']:.3f}"])
      for g, ge in e.get("guides", {}).items():
        gv = ge["K"][k]
        rows.append(["", "", f"{g}: {GUIDE_LABELS[g]}", gv["trained_archs"],
                     f"{gv['top1_mean']:.2f} ± {gv['top1_ci95']:.2f}",
                     f"{gv['best_of_refs_and_pick_mean']:.2f}",
                     f"{gv['to_optimum_median']:g}", ""])
      for b, label in (("pool_all", "ours, --pool all"), ("scratch", "from-scratch surrogate"),
                       ("table_oracle", "table oracle"), ("random", "random search")):
        bv = e["baselines"][b]["K"][k]
        ci = f" ± {bv['top1_ci95']:.2f}" if "top1_ci95" in bv else ""
        rows.append(["", "", label, bv["trained_archs"], f"{bv['top1_mean']:.2f}{ci}",
                     f"{bv['best_of_refs_and_pick_mean']:.2f}" if "best_of_refs_and_pick_mean"
                     in bv else "", f"{bv['to_optimum_median']:g}",
                     f"{bv['spearman']:.3f}" if "spearman" in bv else ""])
  lines.append(reports.table(head, rows))
  lines += ["", "Paper Table 1 (printed; accuracy / trained archs):", ""]
  lines.append(reports.table(
      ["method", "CIFAR-10", "CIFAR-100"],
      [[m, *(f"{v[t][0]} / {v[t][1]}" for t in ("cifar10_test_acc", "cifar100_test_acc"))]
       for m, v in report["paper_table1"].items()]))
  return "\n".join(lines)


def _plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  targets = list(report["targets"])
  fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 4), squeeze=False)
  for ax, t in zip(axes[0], targets):
    e = report["targets"][t]
    ks = list(e["K"])
    x = [int(k) + 1 for k in ks]
    ax.errorbar(x, [e["K"][k]["top1_mean"] for k in ks],
                yerr=[e["K"][k]["top1_ci95"] for k in ks], marker="o", label="PNAG (ours)")
    for g, ge in e.get("guides", {}).items():
      ax.errorbar(x, [ge["K"][k]["top1_mean"] for k in ks],
                  yerr=[ge["K"][k]["top1_ci95"] for k in ks], marker="v", label=g)
    for b, style in (("pool_all", "s--"), ("scratch", "^:"), ("table_oracle", "d-."),
                     ("random", "x-")):
      ax.plot(x, [e["baselines"][b]["K"][k]["top1_mean"] for k in ks], style, label=b)
    ax.axhline(e["best"], color="k", lw=0.8, ls="--", label="optimum")
    ax.set_title(LABELS[t])
    ax.set_xlabel("trained archs (K + 1)")
    ax.set_ylabel("test accuracy of the first pick (%)")
  axes[0][0].legend(fontsize=7)
  reports.save_figure(fig, path)


def seed_range(n: int) -> tuple[int, ...]:
  """Seeds 0..n-1 from `--seeds n`; none would leave a report of NaNs."""
  if n < 1:
    raise PnagError(f"--seeds must be >= 1, got {n}")
  return tuple(range(n))


def parse_ks(text: str) -> tuple[int, ...]:
  """Reference counts from `--ks`, e.g. "2,5,10"."""
  try:
    ks = tuple(int(k) for k in text.split(","))
  except ValueError:
    ks = ()
  if not ks or min(ks) < 1:
    raise PnagError(f"--ks must be comma-separated positive integers, got {text!r}")
  return ks


def add_surrogate_arguments(p: argparse.ArgumentParser, name: str, seeds: int) -> None:
  """Options every protocol that meta-trains surrogates shares: output, data, preset."""
  p.add_argument("--out", required=True, help=f"directory for {name}.{{json,md,png}}")
  p.add_argument("--data-dir", help=DATA_DIR_HELP)
  p.add_argument("--preset", choices=tuple(stage.PRESETS), default="quick",
                 help="surrogate preset of the meta-training runs")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="surrogate config override; repeatable")
  p.add_argument("--seeds", type=int, default=seeds, help="seeds 0..N-1")
  p.add_argument("--surrogates", default=None,
                 help="where the meta-trained surrogates live (default: OUT/surrogates); "
                      "existing ones with the same exclusions are reused")
  p.add_argument("--adapt-steps", type=int, default=0,
                 help="fine-tune the surrogate on each task's references for this many "
                      "steps before ranking (test-time adaptation; 0: off)")


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.epilog = ("example:\n  pnag eval transfer --workdir runs/demo --out eval/reports/transfer "
              "--seeds 5")
  p.add_argument("--workdir", required=True, help="an NB201 stage-1 run (the generator pool)")
  add_surrogate_arguments(p, "transfer", seeds=5)
  p.add_argument("--guide", default="rank",
                 help="comma-separated guides to compare: rank (the stage-1 pool ranked by "
                      "the surrogate; always run), feedback (that pool, each trained pick "
                      "handed back as a reference before the next), ar (stage 2 given the "
                      "task and --target-q, in draw order), ar+rank (that pool ranked by the "
                      "surrogate)")
  p.add_argument("--target-q", type=float,
                 help=f"the ar guides' target quantile (default {AR_DEFAULTS['target_q']})")
  p.add_argument("--ar-pool", type=int,
                 help="stage-2 draws per seed and K for the ar guides (default "
                      f"{AR_DEFAULTS['ar_pool']})")
  p.add_argument("--cfg-scale", type=float,
                 help="the ar guides' classifier-free guidance scale (default "
                      f"{AR_DEFAULTS['cfg_scale']:g}: off)")
  p.add_argument("--stage2-preset", choices=tuple(stage2_lib.PRESETS),
                 help="preset of a stage 2 the ar guides have to train (default "
                      f"{AR_DEFAULTS['stage2_preset']})")
  p.add_argument("--stage2-set", action="append", default=[], metavar="KEY=VALUE",
                 help="stage-2 config override for one the ar guides train; repeatable")
  p.add_argument("--ks", default="2,5,10", help="reference counts K")
  p.add_argument("--pool", default="100000", help="draws from the stage-1 prior, or 'all'")
  p.add_argument("--targets", default=None,
                 help="comma-separated target tasks, each excluding its whole dataset "
                      f"(default: all of {', '.join(TARGETS)})")
  p.add_argument("--scratch-steps", type=int, default=150,
                 help="steps of the from-scratch surrogate baseline (K refs only)")


def main(args: argparse.Namespace) -> None:
  r = run(args.workdir, args.out, data_dir=args.data_dir, preset=args.preset,
          seeds=seed_range(args.seeds), ks=parse_ks(args.ks), pool=args.pool,
          targets=tuple(args.targets.split(",")) if args.targets else tuple(TARGETS),
          surrogates=args.surrogates,
          overrides=args.set, scratch_steps=args.scratch_steps, adapt_steps=args.adapt_steps,
          guides=tuple(g.strip() for g in args.guide.split(",")), target_q=args.target_q,
          ar_pool=args.ar_pool, cfg_scale=args.cfg_scale, stage2_preset=args.stage2_preset,
          stage2_overrides=args.stage2_set)
  print(format_table(r))
