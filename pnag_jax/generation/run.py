"""`pnag generate`: a trained workdir -> a file of architectures, streamed in chunks."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from pnag_jax import data as data_lib
from pnag_jax.errors import PnagError
from pnag_jax.generation.output import ArchWriter, output_format
from pnag_jax.generation.priors import PRIORS
from pnag_jax.generation.sampler import Sampler, SamplerConfig
from pnag_jax.stages import stage1


def load_sampler(workdir: str | Path, cfg: SamplerConfig = SamplerConfig(),
                 devices=None) -> tuple[stage1.Stage1Run, Sampler]:
  """The trained stage-1 run of `workdir` and a sampler over it: the one loading path."""
  run = stage1.load(workdir)
  return run, Sampler.from_run(run, cfg, devices)


def tables_or_note(space_name: str, data_dir: str | None):
  """The space's benchmark tables; without them, say once on stderr what is left out."""
  tables = data_lib.tables_for(space_name, data_dir)
  if tables is None and data_lib.has_tables(space_name):
    print(f"pnag: note: no {space_name} data directory (--data-dir or "
          f"${data_lib.ENV_VAR}), so the file has no benchmark columns "
          f"({', '.join(data_lib.NB201Data.FILE_COLUMNS)})", file=sys.stderr)
  return tables


def generate_to_file(workdir: str | Path, num: int, seed: int, out: str | Path,
                     cfg: SamplerConfig, data_dir: str | None = None,
                     progress: bool = True, cond=()) -> dict:
  """Writes `num` architectures to `out` (.jsonl or .csv); returns a summary.

  `cond` is the prior's condition (the `ar` prior's task vector and target), shared
  by every architecture; `()` for none.
  """
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  output_format(out)  # a bad name fails before the model loads
  _, sampler = load_sampler(workdir, cfg)
  space = sampler.space
  tables = tables_or_note(space.name, data_dir)
  key = jax.random.key(seed)
  n_valid = n_format = 0
  keys = []
  t0 = time.perf_counter()
  with ArchWriter(out, space, tables) as writer:
    with tqdm(total=num, unit="arch", unit_scale=True, disable=not progress or num < 100_000,
              desc="generate", dynamic_ncols=True) as bar:
      for chunk in sampler.iter_chunks(key, num, cond):
        writer.write(chunk)
        n_valid += int(chunk.valid.sum())
        n_format += int(chunk.format_valid.sum())
        # Exact keys of valid rows only: uniqueness over the whole file without
        # holding the rows (NB201: one uint32 per arch).
        keys.append(np.asarray(space.exact_key(chunk.genes[chunk.valid])))
        bar.update(chunk.genes.shape[0])
  seconds = time.perf_counter() - t0
  keys = np.concatenate(keys) if keys else np.zeros((0, space.key_words), np.uint32)
  n_unique = int(np.unique(keys, axis=0).shape[0]) if keys.size else 0
  return {
      "num": num, "out": str(out), "space": space.name, "prior": cfg.prior,
      "temperature": sampler.spec.prior.tau, "constrained": cfg.constrained,
      "cfg_scale": cfg.cfg_scale, "top_k": cfg.top_k, "top_p": cfg.top_p,
      "fused": sampler.spec.fused,
      # The paper's validity is DiffusionNAG's format validity; strict is ours.
      "validity": n_format / num, "strict_validity": n_valid / num,
      "uniqueness": n_unique / max(n_valid, 1),
      "seconds": seconds, "with_benchmark_columns": tables is not None,
  }


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Generate architectures from a trained stage-1 run (the space comes "
                   "from the workdir) into a CSV or JSONL file, one native string per row.")
  p.epilog = ("example:\n  pnag generate --workdir runs/nb201 --num 100000 --out archs.csv\n"
              "  pnag generate --workdir runs/darts --num 1000 --out d.jsonl --constrained\n"
              "  pnag generate --workdir runs/mbv3_r --objective ofa_acc --constraint "
              "'note10_latency<=25' --num 10 --budget 10000 --out top.jsonl")
  p.add_argument("--workdir", required=True, help="a run trained with pnag train stage1")
  p.add_argument("--num", type=int, required=True, help="architectures to generate")
  p.add_argument("--seed", type=int, default=0, help="architecture i is drawn from "
                                                     "fold_in(key(seed), i)")
  p.add_argument("--out", required=True, help="F.jsonl or F.csv (F.partial until complete)")
  p.add_argument("--prior", default="codes", choices=tuple(PRIORS),
                 help="codes: fitted per-token categoricals; fitted: Gaussian fitted to the "
                      "training encodings; latent: the VAE prior N(0, I); ar: the stage-2 "
                      "transformer (pnag train stage2)")
  p.add_argument("--temperature", type=float, default=None,
                 help="0 = argmin/mode; default: 1 for codes (as fitted), argmin for the "
                      "latent priors")
  p.add_argument("--cfg-scale", type=float, default=0.0,
                 help="ar: classifier-free guidance at the last scale, rising linearly from "
                      "0 at the first (default 0: none)")
  p.add_argument("--top-k", type=int, default=0,
                 help="ar: sample among the k most likely codes of each token (0: all)")
  p.add_argument("--top-p", type=float, default=1.0,
                 help="ar: nucleus sampling, the smallest set of codes with mass >= p "
                      "(1: all)")
  p.add_argument("--constrained", action="store_true",
                 help="mask the decoder's logits with the space grammar (off in every metric)")
  p.add_argument("--chunk-size", type=int, default=8192,
                 help="architectures per compiled call (output does not depend on it)")
  p.add_argument("--data-dir",
                 help=f"{data_lib.DATA_DIR_HELP}; adds the NB201 index and test accuracies")
  guided = p.add_argument_group(
      "guided generation (generate, then rank with WORKDIR/surrogate)",
      "With --refs, --num is how many of the best to write, best first, with their "
      "predicted scores. With --prior ar and --target, the references condition stage 2 "
      "instead: --num archs drawn for that task and target quantile, nothing ranked.")
  guided.add_argument("--refs", help="CSV of K measured archs of the task: arch, score")
  guided.add_argument("--target", type=float, default=None, metavar="Q",
                      help="with --prior ar: the target quantile of the task's score over the "
                           "space's valid archs, 1 = the best (e.g. 0.99); needs a stage 2 "
                           "trained with --set condition=task")
  guided.add_argument("--params", type=float, default=None, metavar="N",
                      help="with --prior ar: a target parameter count (e.g. 5.2e6, exact "
                           "from the paper-size network); needs a stage 2 trained with "
                           "--set condition=budget")
  guided.add_argument("--flops", type=float, default=None, metavar="N",
                      help="with --prior ar: a target FLOP count, as multiply-adds (the "
                           "convention of OFA and AutoFormer); as --params")
  guided.add_argument("--minimize", action="store_true", help="lower scores are better")
  guided.add_argument("--constraint", action="append", default=[], metavar="TASK<=X",
                      help="keep archs with a known task <= or >= a number, e.g. "
                           "lat_pixel3<=5 or params<=1e6; repeatable")
  guided.add_argument("--pool", default="100000",
                      help="draws from the stage-1 prior to rank, or 'all' (every arch of "
                           "a small space such as NB201)")
  guided.add_argument("--objective", metavar="TASK",
                      help="search for the best archs by a task that scores any arch "
                           "(e.g. ofa_acc on mbv3_r; see pnag tasks): the stage-1 pool, "
                           "then rounds refit on the best found (guidance/elite.py); "
                           "--num best first, within --budget calls and every "
                           "--constraint")
  guided.add_argument("--budget", type=int, default=10_000, metavar="CALLS",
                      help="with --objective: the most objective calls (OFA's evolution "
                           "makes 50,100)")
  guided.add_argument("--adapt-steps", type=int, default=0, metavar="N",
                      help="fine-tune the surrogate on the references for N steps first (test-time "
                           "adaptation: worth it with tens of references; default 0)")


def main(args: argparse.Namespace) -> None:
  cfg = SamplerConfig(prior=args.prior, temperature=args.temperature,
                      cfg_scale=args.cfg_scale, top_k=args.top_k, top_p=args.top_p,
                      constrained=args.constrained, chunk_size=args.chunk_size)
  ranking = (("--constraint", args.constraint), ("--pool", args.pool != "100000"),
             ("--adapt-steps", args.adapt_steps))
  cond = ()
  budget = args.params is not None or args.flops is not None
  if args.objective is not None:
    for flag, given in (("--refs", args.refs), ("--target", args.target is not None),
                        ("--params", args.params is not None),
                        ("--flops", args.flops is not None), ("--minimize", args.minimize),
                        ("--pool", args.pool != "100000"), ("--adapt-steps", args.adapt_steps),
                        ("--prior", args.prior != "codes")):
      if given:
        raise PnagError(f"{flag} does not go with --objective (the search iterates the "
                        "code prior, and the task gives the direction)")
    from pnag_jax.guidance import run as guided  # pylint: disable=g-import-not-at-top
    guided.print_search(guided.search_to_file(
        args.workdir, objective=args.objective, out=args.out, num=args.num,
        budget=args.budget, constraints=args.constraint, seed=args.seed,
        data_dir=args.data_dir))
    return
  if args.budget != 10_000:
    raise PnagError("--budget caps the calls of an --objective search; give --objective")
  if budget:
    if args.prior != "ar":
      raise PnagError("--params and --flops condition the stage-2 prior: they need --prior ar")
    for flag, given in (("--refs", args.refs), ("--target", args.target is not None),
                        ("--minimize", args.minimize)) + ranking:
      if given:
        raise PnagError(f"{flag} does not go with a budget (--params, --flops)")
    from pnag_jax.generation import ar_prior  # pylint: disable=g-import-not-at-top
    cond = ar_prior.budget_condition_from_workdir(args.workdir, params=args.params,
                                                  flops=args.flops)
  elif args.target is not None:
    if args.prior != "ar" or args.refs is None:
      raise PnagError("--target conditions the stage-2 prior: it needs --prior ar and --refs")
    for flag, given in ranking:
      if given:
        raise PnagError(f"{flag} ranks a pool; conditional generation (--target) ranks nothing")
    from pnag_jax.generation import ar_prior  # pylint: disable=g-import-not-at-top
    cond = ar_prior.task_condition_from_file(args.workdir, args.refs, minimize=args.minimize,
                                             target=args.target)
  elif args.refs is not None:
    from pnag_jax.guidance import run as guided  # pylint: disable=g-import-not-at-top
    guided.print_guided(guided.guided_to_file(
        args.workdir, refs=args.refs, out=args.out, num=args.num,
        pool=guided.parse_pool(args.pool), seed=args.seed, minimize=args.minimize,
        constraints=args.constraint, sampler_cfg=cfg, data_dir=args.data_dir,
        adapt_steps=args.adapt_steps))
    return
  else:
    for flag, given in (("--minimize", args.minimize),) + ranking:
      if given:
        raise PnagError(f"{flag} needs --refs (guided generation)")
  r = generate_to_file(args.workdir, args.num, args.seed, args.out, cfg,
                       data_dir=args.data_dir, cond=cond)
  print(f"generated {r['num']:,} {r['space']} archs in {r['seconds']:.1f} s "
        f"({r['num'] / r['seconds']:,.0f}/s incl. writing) -> {r['out']}")
  print(f"  validity {100 * r['validity']:.2f}% (strict "
        f"{100 * r['strict_validity']:.2f}%), uniqueness {100 * r['uniqueness']:.2f}% of "
        f"strictly valid; prior {r['prior']}, temperature {r['temperature']:g}"
        f"{', constrained' if r['constrained'] else ''}"
        f"{f', target quantile {args.target:g}' if args.target is not None else ''}"
        f"{f', params {args.params:g}' if args.params is not None else ''}"
        f"{f', FLOPs {args.flops:g}' if args.flops is not None else ''}")
