"""Guided generation against OFA's evolutionary search, on OFA's own predictor and tables.

  pnag eval ofa --workdir runs/mbv3_r --out eval/reports/ofa

For each Note10 latency budget and seed, both methods maximise OFA's predicted
accuracy (`ofa_acc`) subject to `note10_latency <= budget`:

* **evolution**: OFA's evolutionary search (`guidance.evolution`: population 100, 500
  generations, 50,100 predictor calls; a block's kernel size and expansion mutate
  together), compiled once ahead of time, so its compile
  time is reported apart from its runs;
* **guided**: `pnag generate --objective` (`guidance.elite`), with a budget of
  1/`--ratio` of the evolution's calls.

Reported per budget and seed: each method's best; the evolution's best after as many
calls as guided generation made (equal calls) and after as much wall time (equal
time); the calls and the wall time each needs to reach the evolution's final
accuracy; whether the returned subnets are strictly valid and within the budget by the
float64 table sum; and, for the first seed, whether guided generation's top subnets
build, run and take a training step as Flax networks (the executable check). Writes
JSON, Markdown and a PNG of best accuracy against latency (both methods' fronts and
OFA's tutorial result).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import jax
import numpy as np

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import executable, reports
from pnag_jax.guidance import constraints, elite, evolution
from pnag_jax.spaces import mbv3
from pnag_jax.stages import stage1

BUDGETS_MS = (15, 20, 25, 30, 40)
#: OFA's tutorial: its evolutionary search's subnet under 25 ms on the Note10.
TUTORIAL = {"latency_ms": 24.730, "ofa_acc": 0.8171285}
TOP = 10


#: Two scores closer than this are the same subnet's: the predictor's float32 output
#: for one subnet can differ in its last bits between batch sizes, and distinct subnets
#: differ by 1e-5 or more.
TIE = 1e-6


def _first_reach(trace: list[tuple[int, float, float]], target: float):
  """(calls, seconds) of the first round whose best reaches `target`, else (None, None)."""
  for calls, best, seconds in trace:
    if best >= target - TIE:
      return calls, seconds
  return None, None


def _ms(budget: float) -> str:
  """A budget as given: 25 for 25.0 (argparse reads every budget as a float)."""
  return f"{budget:.15g}"


def run(workdir, out, *, budgets=BUDGETS_MS, seeds: int = 5, ratio: int = 5,
        data_dir=None, generations: int = 500, check_top: int = TOP,
        cfg: elite.EliteConfig = elite.EliteConfig()) -> dict:
  if any(math.isnan(b) for b in budgets):  # else "no arch meets the bound nan"
    raise PnagError("--budgets must be numbers of ms, got nan")
  repeated = next((b for i, b in enumerate(budgets) if b in budgets[:i]), None)
  if repeated is not None:
    raise PnagError(f"--budgets {_ms(repeated)} is given twice; each budget is reported once")
  saved = stage1.read_config(workdir)  # the space, before restoring any weights
  if saved is not None and saved.space != "mbv3_r":
    raise PnagError(f"pnag eval ofa searches OFA subnets with their resolution: it needs a "
                    f"stage 1 of space mbv3_r, and {workdir} is {saved.space!r}")
  # OFA redraws a block's kernel size and expansion on one coin.
  evo_cfg = evolution.EvolutionConfig(generations=generations, linked=mbv3.NUM_LAYERS)
  evo_calls = evo_cfg.calls()
  calls = evo_cfg.calls(evo_calls // ratio // evo_cfg.population - 1)  # whole generations
  if calls < 1:
    raise PnagError(f"--ratio {ratio} leaves the guided search no calls: the evolution "
                    f"makes {evo_calls:,} in {generations} generations of "
                    f"{evo_cfg.population}; lower --ratio or raise --generations")
  s1 = stage1.load(workdir)
  space = s1.space
  known = tasks_lib.builtin_tasks(space.name, data_dir)
  if "ofa_acc" not in known:
    raise PnagError("pnag eval ofa needs OFA's predictor and Note10 tables: a data directory "
                    "holding mbv3/ (--data-dir or $PNAG_DATA_DIR)")
  acc, lat = known["ofa_acc"], known["note10_latency"]
  for budget in budgets:
    # Exact, as `pnag generate --constraint` is; a bound above the fastest subnet can
    # still be too tight for the evolution's random first population.
    constraints.check_bound(lat, "<=", budget, f"--budgets {_ms(budget)}")
    evolution.check_feasible(lat.device_score, space.gene_cardinalities, budget,
                             key=jax.random.key(0))
  out = reports.out_dir(out)  # once the settings, the run and the data are known good
  evolve, evo_compile = evolution.compiled(space.gene_cardinalities, acc.device_score,
                                           lat.device_score, evo_cfg)
  sampler = elite.make_sampler(s1, cfg)
  # One short search first, so that no reported run pays the sampler's compile.
  warm = elite.search(s1, jax.random.key(0), acc.score_fn, lambda g: lat.score_fn(g) <= 25,
                      cfg.batch, cfg, sampler)
  report = {"protocol": "OFA MobileNetV3: predicted accuracy under a Note10 latency budget",
            "workdir": str(workdir), "machine": reports.machine(), "seeds": seeds,
            "evolution": {"population": evo_cfg.population, "generations": generations,
                          "calls": evo_calls, "compile_seconds": evo_compile},
            "guided": {"calls": calls, "ratio": ratio, "config": cfg.__dict__,
                       "warmup_seconds": warm.seconds},
            "tutorial": TUTORIAL, "budgets": {}}
  exe_cache: dict = {}
  for budget in budgets:
    rows = []
    for seed in range(seeds):
      # Each method its own stream: with one key, the evolution's first population and
      # the guided search's first round would draw the same bits.
      evo_key, guided_key = jax.random.split(jax.random.key(seed))
      t0 = time.perf_counter()
      evo = jax.block_until_ready(evolve(evo_key, budget))
      evo_seconds = time.perf_counter() - t0
      trace = np.asarray(evo.trace, np.float64)
      evo_best = float(trace[-1])
      evo_reach = int(np.argmax(trace >= evo_best))
      g = elite.search(s1, guided_key, acc.score_fn, lambda x, b=budget: lat.score_fn(x) <= b,
                       calls, cfg, sampler)
      top = g.genes[:TOP]
      # Equal calls: the evolution after as many whole generations as the guided calls
      # allow; equal time: after the generations its wall time allows.
      # A search that stopped within the first generation's calls is set against it.
      evo_at_calls = float(trace[min(max(g.calls // evo_cfg.population - 1, 0), generations)])
      gens_in_time = int(generations * min(g.seconds / evo_seconds, 1.0))
      reach_calls, reach_seconds = _first_reach(g.trace, evo_best)
      guided_at_evo_time = max([b for _, b, s in g.trace if s <= evo_seconds], default=None)
      evo_genes = np.asarray(evo.best_genes)[None]
      row = {
          "seed": seed,
          "evolution_best": evo_best,
          "evolution_best_arch": space.to_native(evo_genes[0]),
          "evolution_best_latency_ms": float(lat.score_fn(evo_genes)[0]),
          "evolution_seconds": evo_seconds,
          "evolution_calls_to_final": evo_cfg.calls(evo_reach),
          "evolution_at_equal_calls": evo_at_calls,
          "evolution_at_equal_time": float(trace[gens_in_time]),
          "guided_best": float(g.scores[0]),
          "guided_best_arch": space.to_native(top[0]),
          "guided_best_latency_ms": float(lat.score_fn(top[:1])[0]),
          "guided_calls": g.calls, "guided_drawn": g.drawn, "guided_seconds": g.seconds,
          "guided_at_evolution_time": guided_at_evo_time,
          "guided_calls_to_evolution_final": reach_calls,
          "guided_seconds_to_evolution_final": reach_seconds,
          "calls_ratio_to_evolution": (None if reach_calls is None
                                       else reach_calls / evo_calls),
          "guided_trace": [list(t) for t in g.trace],
          "top_strictly_valid": bool(elite.strictly_valid(space, top).all()),
          "top_within_budget": bool((lat.score_fn(top) <= budget).all()),
      }
      if seed == 0 and check_top:
        # Op by op: subnets share most layer shapes, so after the first few each check
        # reuses compiled ops (a few seconds each) where a jitted one compiles anew.
        checked = g.genes[:check_top]
        checks = executable.check_genes(space.name, checked, np.ones(len(checked), bool),
                                        key=jax.random.key(int(budget)), full_size=False,
                                        jit=False, cache=exe_cache)
        row["top_executable"] = float(np.mean([c["executable"] for c in checks]))
      rows.append(row)
      print(f"  {_ms(budget)} ms seed {seed}: evolution {evo_best:.5f} ({evo_seconds:.1f} s), "
            f"guided {row['guided_best']:.5f} in {g.calls:,} calls ({g.seconds:.1f} s), "
            f"reached evolution's final at {reach_calls} calls", flush=True)
    report["budgets"][_ms(budget)] = {"rows": rows, **_aggregate(rows)}
    reports.write_outputs(out, "ofa", report, format_table, plot)  # after each budget
  return report


def _aggregate(rows: list[dict]) -> dict:
  def stat(key):
    v = np.asarray([r[key] for r in rows], np.float64)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
  reached = [r["guided_calls_to_evolution_final"] for r in rows]
  return {
      "evolution_best": stat("evolution_best"), "guided_best": stat("guided_best"),
      "evolution_at_equal_calls": stat("evolution_at_equal_calls"),
      "evolution_at_equal_time": stat("evolution_at_equal_time"),
      "evolution_seconds": stat("evolution_seconds"), "guided_seconds": stat("guided_seconds"),
      "guided_ge_evolution_at_equal_calls": all(
          r["guided_best"] >= r["evolution_at_equal_calls"] - TIE for r in rows),
      "guided_reached_evolution_final": sum(c is not None for c in reached),
      "guided_calls_to_evolution_final_max": (max(reached) if None not in reached else None),
      "all_valid_within_budget": all(r["top_strictly_valid"] and r["top_within_budget"]
                                     for r in rows),
  }


def _short(calls: int) -> str:
  """A call count for a column head or a legend: 50,100 -> "50k"; under 1,000 as it is."""
  return f"{calls / 1000:.0f}k" if calls >= 1000 else f"{calls:,}"


def format_table(report: dict) -> str:
  ev, gd = report["evolution"], report["guided"]
  head = (f"OFA MobileNetV3, predicted top-1 (OFA's predictor) under a Note10 latency budget; "
          f"{report['seeds']} seeds. Evolution: OFA's search, {ev['calls']:,} predictor "
          f"calls (compile {ev['compile_seconds']:.1f} s, apart). Guided: "
          f"{gd['calls']:,} calls (1/{gd['ratio']}). Machine: "
          f"{report['machine']['device_kind']}, {report['machine']['cpu_count']} CPUs.\n")
  rows = []
  for b, r in report["budgets"].items():
    def f(s):
      return f"{100 * s['mean']:.2f} ({100 * s['min']:.2f}–{100 * s['max']:.2f})"
    calls = r["guided_calls_to_evolution_final_max"]
    rows.append([f"{b} ms", f(r["evolution_best"]), f(r["evolution_at_equal_calls"]),
                 f(r["guided_best"]),
                 f"{r['guided_reached_evolution_final']}/{len(r['rows'])}",
                 f"{calls:,}" if calls is not None else "–",
                 f"{r['evolution_seconds']['mean']:.2f} / {r['guided_seconds']['mean']:.1f}",
                 "yes" if r["all_valid_within_budget"] else "NO"])
  return head + "\n" + reports.table(
      ["budget", f"evolution, {_short(ev['calls'])} calls %", "evolution at guided's calls %",
       "guided %", "guided reached evolution's final", "its calls (max over seeds)",
       "wall s: evolution / guided", "valid, within budget"], rows)


def plot(report: dict, path: Path) -> None:
  plt = reports.figure()
  fig, ax = plt.subplots(figsize=(6, 4))
  for key, lat_key, label, marker in (
      ("evolution_best", "evolution_best_latency_ms",
       f"OFA evolution ({_short(report['evolution']['calls'])} calls)", "s"),
      ("guided_best", "guided_best_latency_ms",
       f"guided ({report['guided']['calls']:,} calls)", "o")):
    xs, ys = [], []
    for r in report["budgets"].values():
      xs += [row[lat_key] for row in r["rows"]]
      ys += [100 * row[key] for row in r["rows"]]
    ax.scatter(xs, ys, marker=marker, alpha=0.6, label=label)
    means = sorted((float(b), 100 * r[key]["mean"]) for b, r in report["budgets"].items())
    ax.plot(*zip(*means), alpha=0.6)
  t = report["tutorial"]
  ax.scatter([t["latency_ms"]], [100 * t["ofa_acc"]], marker="*", s=150, color="k",
             label="OFA tutorial (25 ms)")
  ax.set_xlabel("Note10 latency (ms)")
  ax.set_ylabel("predicted top-1 (%)")
  ax.legend()
  ax.grid(alpha=0.3)
  reports.save_figure(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.epilog = "example:\n  pnag eval ofa --workdir runs/mbv3_r --out eval/reports/ofa"
  p.add_argument("--workdir", required=True, help="a stage-1 run of space mbv3_r")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS_MS),
                 help="Note10 latency budgets, ms")
  p.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 per budget; the two "
                 "methods search with the two halves of split(key(seed))")
  p.add_argument("--ratio", type=int, default=5,
                 help="guided generation's calls are 1/RATIO of the evolution's")
  p.add_argument("--generations", type=int, default=500, help="the evolution's")
  p.add_argument("--check-top", type=int, default=TOP, metavar="N",
                 help="build, run and step the first seed's top N subnets per budget "
                      "(tens of seconds each on a CPU)")
  p.add_argument("--data-dir", help="directory holding mbv3/ (default: $PNAG_DATA_DIR)")


def main(args: argparse.Namespace) -> None:
  if args.seeds < 1 or args.ratio < 1 or args.generations < 1 or args.check_top < 0:
    raise PnagError("--seeds, --ratio and --generations must be >= 1, --check-top >= 0")
  r = run(args.workdir, args.out, budgets=args.budgets, seeds=args.seeds, ratio=args.ratio,
          data_dir=args.data_dir, generations=args.generations, check_top=args.check_top)
  print(format_table(r))
