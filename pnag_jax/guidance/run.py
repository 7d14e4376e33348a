"""Guided generation and prediction from a workdir's surrogate, as files.

  pnag generate --workdir W --refs refs.csv --num 10 --pool 100000 --out top.csv
  pnag predict  --workdir W --refs refs.csv --archs archs.csv --out preds.csv

Everything the user gave is read and checked before any output is opened, so a bad
input leaves no file behind.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from pnag_jax import data as data_lib
from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.generation import output
from pnag_jax.generation.run import load_sampler
from pnag_jax.generation.sampler import SamplerConfig
from pnag_jax.guidance import constraints as constraints_lib
from pnag_jax.guidance import adapt, files, rank
from pnag_jax.stages import stage1
from pnag_jax.stages import surrogate


def parse_pool(text: str) -> int | str:
  if text == "all":
    return text
  try:
    if "e" in text.lower():
      # "1e5" is a count; "1.5e0" is not, and is refused rather than truncated to 1.
      f = float(text)
      n = int(f) if f.is_integer() else 0
    else:
      n = int(text)
  except (ValueError, OverflowError):  # OverflowError: "1e400" is an infinite float
    n = 0
  if n <= 0:
    raise PnagError(f"--pool must be a positive number of draws or 'all', got {text!r}")
  return n


def _refs(run: surrogate.SurrogateRun, path, minimize: bool):
  task = tasks_lib.read_task_csv(path, run.space.name, minimize=minimize)
  data = task.data()
  surrogate.check_resolution(data.scores)
  return task, data


def _table_columns(space, genes: np.ndarray, data_dir) -> dict:
  tables = data_lib.tables_for(space.name, data_dir)
  if tables is None or not len(genes):
    return {}
  return dict(zip(tables.FILE_COLUMNS, tables.file_values(genes)))


def guided_to_file(workdir, *, refs, out, num: int, pool: int | str = 100_000, seed: int = 0,
                   minimize: bool = False, constraints=(), sampler_cfg=None,
                   data_dir=None, adapt_steps: int = 0, predictor: str = "network") -> dict:
  """Writes the top `num` archs of a guided pool to `out`; returns a summary."""
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  out = files.check_output(out)
  output.check_not_an_input(out, refs=refs)
  srun = surrogate.load(workdir)
  space = srun.space
  _, ref = _refs(srun, refs, minimize)
  known = tasks_lib.builtin_tasks(space.name, data_dir) if constraints else {}
  parsed = [constraints_lib.parse(c, known) for c in constraints]
  for c in parsed:
    constraints_lib.check_quick(c, space)
  t0 = time.perf_counter()
  if pool == "all":
    genes, drawn = rank.enumerate_pool(space)
  else:
    s1 = stage1.read_config(workdir)
    if s1 is None:
      raise PnagError(f"--pool {pool} draws from the stage-1 prior, but {workdir} has no "
                      "stage-1 run (train one, or use --pool all on a small space)")
    if s1.space != space.name:
      raise PnagError(f"workdir {workdir}: stage 1 is {s1.space!r} but the surrogate is "
                      f"{space.name!r}")
    _, sampler = load_sampler(workdir, (sampler_cfg or SamplerConfig()).for_num(int(pool)))
    genes, drawn = rank.draw_pool(sampler, jax.random.key(seed), int(pool))
  pred = adapt.bound_predictor(srun, ref.genes, ref.scores, predictor=predictor,
                              adapt_steps=adapt_steps, seed=seed)
  picks = rank.guided(space, pred, genes, drawn, k=num,
                      minimize=minimize, ref_genes=ref.genes, constraints=parsed,
                      known=known)
  seconds = time.perf_counter() - t0
  if not len(picks.genes):
    raise PnagError(f"no candidate left in the pool of {drawn:,} (valid {picks.valid:,}, "
                    f"unique {picks.unique:,}) after the references and constraints")
  files.write_scored(out, space.to_strings(picks.genes), picks.scores,
                     _table_columns(space, picks.genes, data_dir))
  return {"out": str(out), "space": space.name, "num": int(len(picks.genes)),
          "drawn": picks.drawn, "valid": picks.valid, "unique": picks.unique,
          "candidates": picks.candidates, "seconds": seconds,
          "best_predicted": float(picks.scores[0]), "best_arch": space.to_string(picks.genes[0]),
          "constraints": [str(c) for c in parsed]}


def predict_to_file(workdir, *, refs, archs, out, minimize: bool = False,
                    adapt_steps: int = 0, predictor: str = "network") -> dict:
  """One row per input arch, in input order: (arch, predicted_score, rank)."""
  out = files.check_output(out)
  output.check_not_an_input(out, refs=refs, archs=archs)
  srun = surrogate.load(workdir)
  space = srun.space
  _, ref = _refs(srun, refs, minimize)
  genes = tasks_lib.read_archs(archs, space.name)
  t0 = time.perf_counter()
  scores = adapt.bound_predictor(srun, ref.genes, ref.scores, predictor=predictor,
                                adapt_steps=adapt_steps).scores(genes)
  seconds = time.perf_counter() - t0
  order = np.argsort(scores if minimize else -scores, kind="stable")
  ranks = np.empty(len(order), np.int64)
  ranks[order] = np.arange(1, len(order) + 1)
  files.write_scored(out, space.to_strings(genes), scores, {"rank": ranks.tolist()})
  return {"out": str(out), "num": int(len(genes)), "seconds": seconds}


# ---- `pnag predict` ------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Predict a task's score for a list of archs from K measured reference "
                   "archs, with the workdir's meta-trained surrogate.")
  p.epilog = ("example:\n  pnag predict --workdir runs/nb201 --refs refs.csv --archs "
              "archs.csv --out preds.csv\n\nrefs.csv: columns arch (the space's native "
              "string) and score; archs: a CSV or JSONL with an arch column (pnag "
              "generate's output works)")
  p.add_argument("--workdir", required=True, help="holds WORKDIR/surrogate")
  p.add_argument("--refs", required=True, help="CSV of measured archs: arch, score")
  p.add_argument("--minimize", action="store_true",
                 help="lower scores are better (latency); only the rank column changes")
  p.add_argument("--archs", required=True, help="CSV/JSONL with an arch column")
  p.add_argument("--out", required=True, help="F.csv or F.jsonl: arch, predicted_score, rank")
  p.add_argument("--adapt-steps", type=int, default=0, metavar="N",
                 help="fine-tune the surrogate on the references for N steps first (test-time "
                 "adaptation: worth it with tens of references)")
  p.add_argument("--predictor", choices=adapt.PREDICTORS, default="network",
                 help="the meta-learned network, or the surrogate's linear prior: "
                 "an additive-cost model that ranks costs (latency, energy) of unseen "
                 "devices better")


def main(args: argparse.Namespace) -> None:
  r = predict_to_file(args.workdir, refs=args.refs, archs=args.archs, out=args.out,
                      minimize=args.minimize, adapt_steps=args.adapt_steps,
                      predictor=args.predictor)
  print(f"predicted {r['num']:,} archs in {r['seconds']:.2f} s -> {r['out']}")


def print_guided(r: dict) -> None:
  print(f"scored {r['candidates']:,} candidates from a pool of {r['drawn']:,} draws "
        f"({r['valid']:,} strictly valid, {r['unique']:,} unique) in {r['seconds']:.1f} s"
        + (f" under {', '.join(r['constraints'])}" if r["constraints"] else ""))
  print(f"  best: {r['best_arch']} (predicted {r['best_predicted']:.4g}); top {r['num']} "
        f"-> {r['out']}")


# ---- `pnag generate --objective` ----------------------------------------------------


def function_task(known: dict, name: str, space, flag: str):
  """The known task `name`, which must score any arch (a function, not a table)."""
  funcs = [n for n, t in known.items() if t.is_function]
  hint = (" (OFA's ofa_acc and note10_latency need the data directory's mbv3/: "
          "--data-dir or $PNAG_DATA_DIR)" if space.name.startswith("mbv3") else "")
  task = tasks_lib.require_known(
      known, name, f"{flag} {name!r}",
      f"{flag} {name!r}: unknown task of {space.name}; tasks that score any arch: "
      f"{', '.join(funcs)}{hint}")
  if not task.is_function and not space.enumerable:
    raise PnagError(f"{flag} {name!r} is a table task; it has no value for arbitrary "
                    f"{space.name} archs")
  if not task.is_function:
    # A subset table (NB201's validation accuracies) has no score for most archs: a
    # search would rank NaNs.
    scored = int(np.isfinite(task.by_row()).sum())
    if scored < space.size():
      raise PnagError(f"{flag} {name!r} scores {scored:,} of the {space.size():,} "
                      f"{space.name} archs; choose a task that scores every arch")
  return task


def search_to_file(workdir, *, objective: str, out, num: int, budget: int = 10_000,
                   constraints=(), seed: int = 0, data_dir=None, cfg=None) -> dict:
  """The best `num` archs found by the elite search within `budget` objective calls,
  best first, written to `out` with the objective's and the constraints' values."""
  from pnag_jax.guidance import elite  # pylint: disable=g-import-not-at-top
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  if budget <= 0:
    raise PnagError(f"--budget must be a positive number of objective calls, got {budget}")
  out = files.check_output(out)
  run = stage1.load(workdir)
  space = run.space
  known = tasks_lib.builtin_tasks(space.name, data_dir)
  task = function_task(known, objective, space, "--objective")
  parsed = [constraints_lib.parse(c, known) for c in constraints]
  for c in parsed:
    function_task(known, c.task, space, "--constraint")
    constraints_lib.check_searchable(c, space, objective)
  sign = -1.0 if task.minimize else 1.0

  def score(genes):
    return sign * constraints_lib.values(task, space, genes)

  def feasible(genes):
    return constraints_lib.satisfied(parsed, known, space, genes)

  result = elite.search(run, jax.random.key(seed), score, feasible, budget,
                        cfg or elite.EliteConfig())
  genes, best = result.genes[:num], sign * result.scores[:num]
  columns = {task.column: best.tolist()}
  for c in parsed:
    column = known[c.task].column
    if column not in columns:
      columns[column] = constraints_lib.values(known[c.task], space, genes).tolist()
  files.write_records(out, space, genes, columns)
  return {"out": str(out), "space": space.name, "objective": objective,
          "constraints": [str(c) for c in parsed], "num": int(len(genes)),
          "calls": result.calls, "budget": budget, "drawn": result.drawn,
          "seconds": result.seconds, "best": float(best[0]),
          "best_arch": space.to_string(genes[0])}


def print_search(r: dict) -> None:
  under = f" under {', '.join(r['constraints'])}" if r["constraints"] else ""
  print(f"searched {r['drawn']:,} draws, scored {r['calls']:,} of a budget of "
        f"{r['budget']:,} {r['objective']} calls{under} in {r['seconds']:.1f} s")
  print(f"  best: {r['best_arch']} ({r['objective']} {r['best']:.6g}); top {r['num']} "
        f"-> {r['out']}")
