"""`pnag demo`: the main job on NB201, end to end, in a few minutes on a laptop.

1. Stage 1 with the `quick` preset (resumes if the workdir already holds it).
2. 100,000 architectures from the code prior, timed from PRNG key to host arrays.
3. V/U/N of those (exact and isomorphism-aware) beside the uniform-random baseline,
   batch-1 latency, and, when the NB201 tables are found, the accuracy of 100
   generated cells against 100 random ones.

With `--guided`, a fourth step transfers to CIFAR-10 from 5 measured cells: a quick
surrogate is meta-trained with every CIFAR-10 task excluded (minutes, which is why it
is not part of the default run), 5 cells are drawn and "trained" (their accuracy looked
up), and guided generation picks one from a pool of the stage-1 prior.

Everything it prints is also written to `WORKDIR/demo/report.json`, and the trained
run stays in WORKDIR (default `runs/demo`): `pnag generate --workdir runs/demo ...`
continues from it, and running the demo again reuses it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from pnag_jax import config as config_lib
from pnag_jax.data import DATA_DIR_HELP, tables_for
from pnag_jax.data.nb201 import ACCURACY_COLUMNS
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports, vun
from pnag_jax.evaluation.speed import peak_rss_mb, time_call
from pnag_jax.generation import Sampler, SamplerConfig
from pnag_jax.stages import stage1
from pnag_jax.training.stage1 import train_and_evaluate

CHUNK = 8192
#: Archs of each group in the quality table (fewer where --num is smaller).
QUALITY_SAMPLE = 100
DEFAULT_WORKDIR = "runs/demo"


def guided_config(seed: int):
  """The guided step's surrogate: quick, every CIFAR-10 task excluded."""
  from pnag_jax.stages import surrogate  # pylint: disable=g-import-not-at-top
  return surrogate.make_config("quick", "nb201", seed, ("cifar10(?!0)",))


def check_guided_workdir(workdir: Path, seed: int) -> None:
  """Before stage 1: a surrogate in `workdir` must be the one the guided step trains,
  or the demo would fail after its other steps."""
  from pnag_jax.stages import surrogate  # pylint: disable=g-import-not-at-top
  saved, want = surrogate.read_config(workdir), guided_config(seed)
  if saved is None:
    return
  differ = config_lib.differing(saved, want, surrogate.SurrogateConfig.AFTER_TRAINING)
  if differ:
    raise PnagError(f"workdir {workdir} holds a surrogate with other {', '.join(differ)} "
                    f"than the guided step's (quick, CIFAR-10 excluded, seed {seed}); remove "
                    f"{workdir / surrogate.NAME} or use another --workdir")


def guided_step(workdir: Path, gen: Sampler, data, seed: int, data_dir, progress: bool
                ) -> dict:
  """Transfer to CIFAR-10 from 5 references with a quick, CIFAR-10-blind surrogate.

  The pool comes from `gen`, the demo's own sampler over the stage-1 run.
  """
  from pnag_jax.guidance import baselines, rank  # pylint: disable=g-import-not-at-top
  from pnag_jax.stages import surrogate  # pylint: disable=g-import-not-at-top
  from pnag_jax.training import surrogate as trainer  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  rep = trainer.train_and_evaluate(guided_config(seed), workdir, data_dir=data_dir,
                                   progress=progress)
  srun = surrogate.load(workdir)
  space = srun.space
  every = space.enumerate()
  acc = np.asarray(data.lookup("cifar10_test_acc", every), np.float64)
  refs = np.random.default_rng([seed, 5]).choice(every.shape[0], 5, replace=False)
  pool, drawn = rank.draw_pool(gen, jax.random.key(seed), 100_000)
  picks = rank.guided(space, srun.predictor(every[refs], acc[refs]), pool, drawn, k=1,
                      minimize=False, ref_genes=every[refs])
  pick_acc = float(data.lookup("cifar10_test_acc", picks.genes[:1])[0])
  random_best = baselines.random_expected_best(acc, 6)
  out = {"surrogate_seconds": rep.get("train_seconds"), "refs": space.to_strings(every[refs]),
         "refs_acc": acc[refs].tolist(), "pick": space.to_string(picks.genes[0]),
         "pick_acc": pick_acc, "pool_unique": picks.unique,
         "random_expected_best_of_6": random_best, "best_in_space": float(acc.max()),
         "seconds": time.perf_counter() - t0}
  print(f"[guided] CIFAR-10 from 5 measured cells (best {acc[refs].max():.2f}), a quick "
        f"surrogate that never read a CIFAR-10 task, {picks.unique:,} unique cells in the "
        f"pool: pick {out['pick']} -> {pick_acc:.2f}% (random search's expected best of 6: "
        f"{random_best:.2f}%; best in NB201 {acc.max():.2f}%), {out['seconds']:.0f} s",
        flush=True)
  return out


def run(num: int = 100_000, seed: int = 0, data_dir: str | None = None,
        workdir: str | Path = DEFAULT_WORKDIR, progress: bool = True,
        guided: bool = False, steps: int | None = None) -> dict:
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  if steps is not None and steps <= 0:
    raise PnagError(f"--steps must be positive, got {steps}")
  data = tables_for("nb201", data_dir)
  if guided and data is None:
    raise PnagError("--guided needs the NB201 tables (--data-dir or $PNAG_DATA_DIR)")
  if data is not None:
    data = data.checked()  # now: a bad table found after training costs the training
  workdir = Path(workdir)
  if guided:
    check_guided_workdir(workdir, seed)
  t_start = time.perf_counter()
  print(f"pnag demo: NB201, workdir {workdir}", flush=True)

  cfg = stage1.make_config("quick", "nb201", seed,
                           () if steps is None else (f"max_steps={steps}",))
  rep = train_and_evaluate(cfg, workdir, progress=progress)
  # The run's own training time: a rerun on a finished run trains nothing and reports it.
  print(f"[1/3] stage 1 (quick preset): {rep['steps']} steps, trained in "
        f"{rep['train_seconds']:.1f} s; held-out reconstruction exact match "
        f"{rep['heldout_exact_match']:.4f}", flush=True)

  trained = stage1.load(workdir)
  gen = Sampler.from_run(trained, SamplerConfig(prior="codes", chunk_size=CHUNK).for_num(num))
  key = jax.random.key(seed)
  gen.generate(key, gen.chunk_size)  # compile
  t0 = time.perf_counter()
  out = gen.generate(key, num)
  gen_seconds = time.perf_counter() - t0
  latency, _ = time_call(gen.with_chunk_size(1), key, min_seconds=0.5)
  print(f"[2/3] generated {num:,} archs in {gen_seconds:.2f} s ({num / gen_seconds:,.0f} archs/s, "
        f"key to host arrays, fused decoding, {jax.devices()[0].platform}); batch-1 latency "
        f"{latency * 1e3:.3f} ms", flush=True)

  space = trained.space
  ref = vun.reference_of(space, trained.train_genes())
  bulk = vun.score(space, out.genes, out.format_valid, out.valid, ref)
  rows = {
      f"PNAG-jax, {num:,} archs": {c: {"mean": v} for c, v in bulk.items()},
      "PNAG-jax, 1000 x 3 (Table 6)": vun.generator_row(
          gen.with_chunk_size(1000), ref, 1000, (0, 1, 2)),
      "random (uniform), 1000 x 3": vun.random_row(space, ref, 1000, (0, 1, 2)),
  }
  print("[3/3] validity / uniqueness / novelty (%), novelty vs the seeded training half:")
  print(reports.table(
      ["", "validity", "strict", "uniq", "novelty", "iso uniq", "iso novelty"],
      [[k] + [f"{r[c]['mean']:.2f}" for c in vun.COLUMNS] for k, r in rows.items()]))
  report = {"workdir": str(workdir), "num": num, "seed": seed, "stage1": rep,
            "generation_seconds": gen_seconds, "archs_per_s": num / gen_seconds,
            "latency_batch1_ms": latency * 1e3, "vun": rows, "machine": reports.machine()}

  if data is not None:
    sample = jax.jit(space.sample, static_argnums=1)
    n = min(num, QUALITY_SAMPLE)  # as many of each: a max over more archs is higher
    groups = {"generated": out.genes[:n],
              "random": np.asarray(sample(jax.random.fold_in(key, 0xBA5E), n))}
    report["quality"] = {}
    qrows = []
    for col in ACCURACY_COLUMNS:
      accs = {k: np.asarray(data.lookup(col, g)) for k, g in groups.items()}
      report["quality"][col] = {k: {"mean": float(a.mean()), "max": float(a.max())}
                                for k, a in accs.items()}
      qrows.append([col] + [f"{accs[k].mean():.2f} / {accs[k].max():.2f}"
                            for k in ("generated", "random")])
    print(f"quality: NB201 test accuracy, mean / max of {n} archs")
    print(reports.table(["dataset", "generated", "random"], qrows))
  else:
    print("quality: skipped (no NB201 tables; pass --data-dir or set PNAG_DATA_DIR)")
  if guided:
    report["guided"] = guided_step(workdir, gen, data, seed, data_dir, progress)
  report["total_seconds"] = time.perf_counter() - t_start
  report["peak_rss_mb"] = peak_rss_mb()
  out_dir = reports.out_dir(workdir / "demo")
  reports.write_json(out_dir / "report.json", report)
  print(f"done in {report['total_seconds']:.0f} s; report: {out_dir / 'report.json'}")
  print(f"continue from the trained run: pnag generate --workdir {workdir} --num 1000000 "
        "--out archs.csv")
  return report


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("The main job on NB201, in a few minutes: train stage 1 (quick preset; "
                   "resumes if WORKDIR holds it), generate NUM archs from the code prior, "
                   "report V/U/N beside uniform random sampling, speed, and (with the NB201 "
                   "tables) the accuracy of generated vs random cells.")
  p.epilog = ("example:\n  pnag demo --workdir runs/demo\n"
              "  pnag generate --workdir runs/demo --num 1000000 --out archs.csv")
  p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                 help="where the stage-1 run goes (kept, and reused by a rerun)")
  p.add_argument("--num", type=int, default=100_000, help="architectures to generate")
  p.add_argument("--seed", type=int, default=0, help="seed of training and generation")
  p.add_argument("--steps", type=int,
                 help="stage-1 training steps (default: the quick preset's 400)")
  p.add_argument("--data-dir", help=DATA_DIR_HELP)
  p.add_argument("--guided", action="store_true",
                 help="also transfer to CIFAR-10 from 5 measured cells with a quick surrogate "
                      "(CIFAR-10 tasks excluded; adds a few minutes)")


def main(args: argparse.Namespace) -> None:
  run(num=args.num, seed=args.seed, data_dir=args.data_dir, workdir=args.workdir,
      guided=args.guided, steps=args.steps)
