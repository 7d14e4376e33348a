"""`pnag generate`: a trained workdir -> a file of architectures, streamed in chunks."""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import socket
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from pnag_jax import atomic
from pnag_jax import data as data_lib
from pnag_jax.errors import PnagError, one_line
from pnag_jax.generation import multihost, output, parts
from pnag_jax.generation.output import ArchWriter, check_output, output_format
from pnag_jax.generation.priors import MIN_TEMPERATURE, PRIORS
from pnag_jax.generation.sampler import Sampler, SamplerConfig, check_range
from pnag_jax.guidance.adapt import PREDICTORS
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
    # A variable that is set is a default, not an error; but a typo in it must show.
    env = os.environ.get(data_lib.ENV_VAR)
    where = (f"${data_lib.ENV_VAR}={env!r} holds no {space_name} tables" if env else
             f"no {space_name} data directory (--data-dir or ${data_lib.ENV_VAR})")
    print(f"pnag: note: {where}, so the file has no benchmark columns "
          f"({', '.join(data_lib.NB201Data.FILE_COLUMNS)})", file=sys.stderr)
  return tables


def _write_block(sampler: Sampler, writer: ArchWriter, key: jax.Array, start: int, num: int,
                 cond, progress: bool, count_unique: bool = True) -> dict:
  """Architectures `start .. start + num - 1` through `writer`; their validity counts,
  and with `count_unique` how many strictly valid ones are distinct."""
  space = sampler.space
  n_valid = n_format = 0
  keys = []
  with tqdm(total=num, unit="arch", unit_scale=True, disable=not progress or num < 100_000,
            desc="generate", dynamic_ncols=True) as bar:
    for chunk in sampler.iter_chunks(key, num, cond, start=start):
      writer.write(chunk)
      n_valid += int(chunk.valid.sum())
      n_format += int(chunk.format_valid.sum())
      if count_unique:
        # Exact keys of valid rows only: uniqueness over the whole file without
        # holding the rows (NB201: one uint32 per arch).
        keys.append(np.asarray(space.exact_key(chunk.genes[chunk.valid])))
      bar.update(chunk.genes.shape[0])
  counts = {"valid": n_valid, "format_valid": n_format}
  if count_unique:
    keys = np.concatenate(keys) if keys else np.zeros((0, space.key_words), np.uint32)
    counts["unique"] = int(np.unique(keys, axis=0).shape[0]) if keys.size else 0
  return counts


def _settings(sampler: Sampler, cfg: SamplerConfig) -> dict:
  return {"space": sampler.space.name, "prior": cfg.prior,
          "temperature": sampler.spec.prior.tau, "constrained": cfg.constrained,
          "cfg_scale": cfg.cfg_scale, "top_k": cfg.top_k, "top_p": cfg.top_p,
          "fused": sampler.spec.fused}


def generate_to_file(workdir: str | Path, num: int, seed: int, out: str | Path,
                     cfg: SamplerConfig, data_dir: str | None = None,
                     progress: bool = True, cond=(), devices=None) -> dict:
  """Writes `num` architectures to `out` (.jsonl or .csv); returns a summary.

  `cond` is the prior's condition (the `ar` prior's task vector and target), shared
  by every architecture; `()` for none. `devices` to shard over (default: all).
  """
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  check_range(num, seed=seed)
  check_output(out)  # a bad name fails before the model loads
  _, sampler = load_sampler(workdir, cfg.for_num(num, devices), devices)
  tables = tables_or_note(sampler.space.name, data_dir)
  t0 = time.perf_counter()
  with ArchWriter(out, sampler.space, tables) as writer:
    counts = _write_block(sampler, writer, jax.random.key(seed), 0, num, cond, progress)
  seconds = time.perf_counter() - t0
  return {
      "num": num, "out": str(out), **_settings(sampler, cfg),
      # The paper's validity is DiffusionNAG's format validity; strict is ours.
      "validity": counts["format_valid"] / num, "strict_validity": counts["valid"] / num,
      "uniqueness": counts["unique"] / max(counts["valid"], 1),
      "seconds": seconds, "with_benchmark_columns": tables is not None,
  }


def _run_id(sampler: Sampler, cfg: SamplerConfig, seed: int, num: int, parts_: int,
            kind: str, columns: list[str], cond) -> str:
  """What this run's rows depend on: the arrays, the settings, the seed and the split
  (not the chunk size or the devices, which change no row)."""
  arrays = jax.tree.leaves(jax.device_get((sampler.consts, cond)))
  digest = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    digest.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
  return parts.run_id(arrays=digest.digest(), settings=_settings(sampler, cfg), seed=seed,
                      num=num, parts=parts_, format=kind, columns=columns)


def generate_parts_to_file(workdir: str | Path, num: int, seed: int, out: str | Path,
                           cfg: SamplerConfig, launch: multihost.Launch,
                           data_dir: str | None = None, progress: bool = True,
                           cond=()) -> dict:
  """This process's part of a multi-process run writing `out` (`parts.py`); process 0
  also writes the manifest. A part that is already current is kept, not regenerated.

  Joins the runtime first, so nothing may have touched a device before. A run whose
  runtime finds one process (`--distributed` outside a cluster job, or P = 1) writes
  `out` itself, as `generate_to_file`.
  """
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  check_range(num, seed=seed)
  kind = output_format(check_output(out))
  if launch.single:
    return generate_to_file(workdir, num, seed, out, cfg, data_dir, progress, cond)
  cluster = multihost.initialize(launch)
  if cluster.num_processes == 1:
    multihost.shutdown()
    return generate_to_file(workdir, num, seed, out, cfg, data_dir, progress, cond)
  pid, count = cluster.process_id, cluster.num_processes
  t0 = time.perf_counter()
  try:
    # The local mesh: no device of another process is on the hot path.
    _, sampler = load_sampler(workdir, cfg.for_num(num, jax.local_devices()),
                              devices=jax.local_devices())
    tables = tables_or_note(sampler.space.name, data_dir) if pid == 0 else (
        data_lib.tables_for(sampler.space.name, data_dir))
  except Exception as e:  # pylint: disable=broad-except  # re-raised below
    # Told to the others, which wait for this process's run below: else they wait
    # until the runtime's shutdown timeout aborts every process (minutes).
    with contextlib.suppress(Exception):  # the runtime may be gone: this error first
      multihost.publish(f"run/{pid}", {"part": pid, "error": one_line(e, 300)})
    if isinstance(e, jax.errors.JaxRuntimeError):
      # The checkpointer syncs every process as it opens the run: one that could not
      # load it (and says why itself) leaves the others to time out there.
      raise multihost.RuntimeFailure(
          f"loading the run failed (where another process could not load it, its own "
          f"error says why): {one_line(e, 200)}") from None
    raise
  start, stop = parts.block(num, count, pid)
  part_file = parts.part_path(out, pid, count)
  columns = output.columns(tables)
  expected = {"run": _run_id(sampler, cfg, seed, num, count, kind, columns, cond),
              "seed": seed, "num": num, "part": pid, "parts": count, "start": start,
              "stop": stop, "count": stop - start}
  # Every process's run, before any file is touched: one started with another seed,
  # --num, workdir or data tables would otherwise overwrite its part of a finished run
  # (and process 0 that run's manifest) before the manifest's check found it out; one
  # with another --out would write a part that no manifest lists.
  launched = {**{k: expected[k] for k in (*parts.RUN_KEYS, "part")}, "out": Path(out).name}
  multihost.publish(f"run/{pid}", launched)
  parts.check_one_run(multihost.gather("run", count, timeout_ms=multihost.BARRIER_TIMEOUT_MS),
                      "is running", "nothing written", keys=(*parts.RUN_KEYS, "out"))
  if pid == 0:
    # A manifest exists only for a finished run: this one is not, until the end.
    parts.manifest_path(out).unlink(missing_ok=True)
  regenerated = not parts.is_current(part_file, expected)
  if regenerated:
    parts.sidecar_path(part_file).unlink(missing_ok=True)
    t_part = time.perf_counter()
    with ArchWriter(part_file, sampler.space, tables, kind=kind, header=pid == 0) as writer:
      # Uniqueness does not add up over parts: a part counts validity only.
      counts = _write_block(sampler, writer, jax.random.key(seed), start, stop - start, cond,
                            progress, count_unique=False)
    sidecar = {"format": parts.SIDECAR_FORMAT, **expected, "bytes": writer.bytes,
               "sha256": writer.sha256, "valid": counts["valid"],
               "format_valid": counts["format_valid"],
               "seconds": time.perf_counter() - t_part, "host": socket.gethostname(),
               "local_devices": len(sampler.spec.mesh.devices.flat)}
    atomic.write_json(parts.sidecar_path(part_file), sidecar)
  else:
    sidecar = parts.read_json(parts.sidecar_path(part_file), "sidecar")
  multihost.publish(f"part/{pid}", {**sidecar, "regenerated": regenerated})
  multihost.barrier("parts-written")
  summary = {"num": num, "out": str(out), "part": str(part_file), "process_id": pid,
             "num_processes": count, "start": start, "stop": stop,
             "regenerated": regenerated, **_settings(sampler, cfg)}
  if pid == 0:
    sidecars = multihost.gather("part", count)
    valid = sum(s["valid"] for s in sidecars)
    man = parts.manifest(
        out, sidecars, **_settings(sampler, cfg), columns=columns,
        validity=sum(s["format_valid"] for s in sidecars) / num,
        strict_validity=valid / num, seconds=time.perf_counter() - t0,
        regenerated_parts=[s["part"] for s in sidecars if s["regenerated"]])
    atomic.write_json(parts.manifest_path(out), man)
    summary["manifest"] = str(parts.manifest_path(out))
    summary["validity"], summary["strict_validity"] = man["validity"], man["strict_validity"]
  multihost.shutdown()
  summary["seconds"] = time.perf_counter() - t0
  return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Generate architectures from a trained stage-1 run (the space comes "
                   "from the workdir) into a CSV or JSONL file, one native string per row.")
  p.epilog = ("example:\n  pnag generate --workdir runs/nb201 --num 100000 --out archs.csv\n"
              "  pnag generate --workdir runs/darts --num 1000 --out d.jsonl --constrained\n"
              "  pnag generate --workdir runs/mbv3_r --objective ofa_acc --constraint "
              "'note10_latency<=25' --num 10 --budget 10000 --out top.jsonl")
  p.add_argument("--workdir", help="a run trained with pnag train stage1 (required)")
  p.add_argument("--num", type=int, help="architectures to generate (required)")
  p.add_argument("--seed", type=int, default=0, help="architecture i is drawn from "
                                                     "fold_in(key(seed), i)")
  p.add_argument("--out", help="F.jsonl or F.csv (F.partial until complete; required)")
  p.add_argument("--prior", default="codes", choices=tuple(PRIORS),
                 help="codes: fitted per-token categoricals; fitted: Gaussian fitted to the "
                      "training encodings; latent: the VAE prior N(0, I); ar: the stage-2 "
                      "transformer (pnag train stage2)")
  p.add_argument("--temperature", type=float, default=None,
                 help=f"0 = argmin/mode, else at least {MIN_TEMPERATURE:g}; default: 1 for "
                      "codes (as fitted), argmin for the latent priors")
  p.add_argument("--cfg-scale", type=float, default=0.0,
                 help="ar: classifier-free guidance at the last scale, rising linearly from "
                      "0 at the first (0: none)")
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
  hosts = p.add_argument_group(
      "many processes (JAX's multi-controller runtime, jax.distributed)",
      "Each process generates one contiguous block of 0 .. NUM-1 on its own devices and "
      "writes F.part-0000I-of-0000P with a sidecar F.part-...json; process 0 then writes "
      "F.manifest.json. Rerunning the command regenerates only the parts that are "
      "missing or do not match their sidecar. Then: pnag generate --merge F.")
  hosts.add_argument("--coordinator", metavar="HOST:PORT",
                     help="process 0's address, where it hosts the coordination service")
  hosts.add_argument("--num-processes", type=int, metavar="P", help="processes in the run")
  hosts.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. P-1")
  hosts.add_argument("--distributed", action="store_true",
                     help="let jax.distributed.initialize() detect the cluster (SLURM, "
                          "TPU pods, Open MPI) instead of the three flags above")
  hosts.add_argument("--init-timeout", type=int, default=300, metavar="S",
                     help="seconds to wait for the coordinator and every process")
  hosts.add_argument("--heartbeat-timeout", type=int, default=60, metavar="S",
                     help="seconds without a heartbeat after which a process counts as "
                          "dead and the run fails")
  hosts.add_argument("--merge", metavar="F",
                     help="check the parts of F against F.manifest.json and write F "
                          "(no other option)")
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
                           "adaptation: worth it with tens of references)")
  guided.add_argument("--predictor", choices=PREDICTORS, default="network",
                      help="what ranks the pool: the meta-learned network, or the "
                           "surrogate's linear prior, an additive-cost model that ranks costs "
                           "(latency, energy) of unseen devices better")


def _merge(args: argparse.Namespace) -> None:
  defaults = _defaults()
  given = [f"--{k.replace('_', '-')}" for k, v in vars(args).items()
           if k in defaults and k != "merge" and v != defaults[k]]
  if given:
    raise PnagError(f"--merge takes no other option, got {', '.join(sorted(given))}")
  man = parts.merge(args.merge)
  print(f"merged {man['parts']} parts, {man['rows']:,} archs (seed {man['seed']}) "
        f"-> {args.merge}")


def _launch(args: argparse.Namespace) -> multihost.Launch | None:
  """The multi-process flags as a `Launch`; None for an ordinary run."""
  flags = (args.coordinator, args.num_processes, args.process_id)
  if not args.distributed and all(v is None for v in flags):
    _refuse(args, ("--init-timeout", "--heartbeat-timeout"),
            "is for a multi-process run (--coordinator ... or --distributed)")
    return None
  return multihost.Launch(*flags, auto=args.distributed, init_timeout=args.init_timeout,
                          heartbeat_timeout=args.heartbeat_timeout)


def main(args: argparse.Namespace) -> None:
  if args.merge is not None:
    _merge(args)
    return
  for flag in ("workdir", "num", "out"):
    if getattr(args, flag) is None:
      raise PnagError(f"--{flag} is required")
  check_range(max(args.num, 0), seed=args.seed)
  launch = _launch(args)
  cfg = SamplerConfig(prior=args.prior, temperature=args.temperature,
                      cfg_scale=args.cfg_scale, top_k=args.top_k, top_p=args.top_p,
                      constrained=args.constrained, chunk_size=args.chunk_size)
  cond = ()
  budget = args.params is not None or args.flops is not None
  if launch is not None:
    _refuse(args, ("--refs", "--objective", "--target", "--params", "--flops", "--minimize",
                   "--budget", "--cfg-scale", *_RANKING),
            "does not go with a multi-process run (it generates from the prior, unconditioned)")
    _print_parts(generate_parts_to_file(args.workdir, args.num, args.seed, args.out, cfg,
                                        launch, data_dir=args.data_dir))
    return
  if args.objective is not None:
    _refuse(args, ("--refs", "--target", "--params", "--flops", "--minimize", "--pool",
                   "--adapt-steps", "--predictor", "--prior", "--temperature", "--constrained",
                   "--chunk-size", "--cfg-scale", "--top-k", "--top-p"),
            "does not go with --objective (the search iterates the code prior with its own "
            "settings, and the task gives the direction)")
    from pnag_jax.guidance import run as guided  # pylint: disable=g-import-not-at-top
    guided.print_search(guided.search_to_file(
        args.workdir, objective=args.objective, out=args.out, num=args.num,
        budget=args.budget, constraints=args.constraint, seed=args.seed,
        data_dir=args.data_dir))
    return
  _refuse(args, ("--budget",), "caps the calls of an --objective search; give --objective")
  if args.cfg_scale and args.target is None and not budget:
    # Without a condition (ranking's pool, --refs alone, is drawn unconditioned too) both
    # halves of the guided batch are the null one: twice the compute for the same logits.
    raise PnagError("--cfg-scale guides the ar prior toward a condition: give --target "
                    "with --refs, or --params/--flops")
  if budget:
    if args.prior != "ar":
      raise PnagError("--params and --flops condition the stage-2 prior: they need --prior ar")
    _refuse(args, ("--refs", "--target", "--minimize", *_RANKING),
            "does not go with a budget (--params, --flops)")
    from pnag_jax.generation import ar_prior  # pylint: disable=g-import-not-at-top
    cond = ar_prior.budget_condition_from_workdir(args.workdir, params=args.params,
                                                  flops=args.flops)
  elif args.target is not None:
    if args.prior != "ar" or args.refs is None:
      raise PnagError("--target conditions the stage-2 prior: it needs --prior ar and --refs")
    _refuse(args, _RANKING, "ranks a pool; conditional generation (--target) ranks nothing")
    output.check_not_an_input(args.out, refs=args.refs)
    from pnag_jax.generation import ar_prior  # pylint: disable=g-import-not-at-top
    cond = ar_prior.task_condition_from_file(args.workdir, args.refs, minimize=args.minimize,
                                             target=args.target)
  elif args.refs is not None:
    from pnag_jax.guidance import run as guided  # pylint: disable=g-import-not-at-top
    if args.pool == "all":
      _refuse(args, ("--prior", "--temperature", "--top-k", "--top-p", "--constrained",
                     "--chunk-size"), "does not go with --pool all (every cell is scored; "
                                      "nothing is drawn)")
    guided.print_guided(guided.guided_to_file(
        args.workdir, refs=args.refs, out=args.out, num=args.num,
        pool=guided.parse_pool(args.pool), seed=args.seed, minimize=args.minimize,
        constraints=args.constraint, sampler_cfg=cfg, data_dir=args.data_dir,
        adapt_steps=args.adapt_steps, predictor=args.predictor))
    return
  else:
    _refuse(args, ("--minimize", *_RANKING), "needs --refs (guided generation)")
  r = generate_to_file(args.workdir, args.num, args.seed, args.out, cfg,
                       data_dir=args.data_dir, cond=cond)
  _print_file(r, f"{f', target quantile {args.target:g}' if args.target is not None else ''}"
                 f"{f', params {args.params:g}' if args.params is not None else ''}"
                 f"{f', FLOPs {args.flops:g}' if args.flops is not None else ''}")


def _print_file(r: dict, condition: str = "") -> None:
  print(f"generated {r['num']:,} {r['space']} archs in {r['seconds']:.1f} s "
        f"({r['num'] / r['seconds']:,.0f}/s incl. writing) -> {r['out']}")
  print(f"  validity {100 * r['validity']:.2f}% (strict "
        f"{100 * r['strict_validity']:.2f}%), uniqueness {100 * r['uniqueness']:.2f}% of "
        f"strictly valid; prior {r['prior']}, temperature {r['temperature']:g}"
        f"{', constrained' if r['constrained'] else ''}{condition}")


def _print_parts(r: dict) -> None:
  if "part" not in r:  # one process after all: the ordinary file
    _print_file(r)
    return
  what = "wrote" if r["regenerated"] else "kept (current)"
  rows = (f"archs {r['start']:,}..{r['stop'] - 1:,}" if r["stop"] > r["start"]
          else "no archs (--num is below the process count)")
  print(f"process {r['process_id']} of {r['num_processes']}: {what} {rows} -> {r['part']} "
        f"({r['seconds']:.1f} s)")
  if "manifest" in r:
    print(f"  manifest {r['manifest']}: {r['num']:,} archs, validity "
          f"{100 * r['validity']:.2f}% (strict {100 * r['strict_validity']:.2f}%); "
          f"merge with: pnag generate --merge {r['out']}")



#: Flags of guided generation's ranking (`--refs`).
_RANKING = ("--constraint", "--pool", "--adapt-steps", "--predictor")


def _refuse(args: argparse.Namespace, flags, why: str) -> None:
  """A one-line error for the first of `flags` given (other than its default)."""
  defaults = _defaults()
  for flag in flags:
    key = flag[2:].replace("-", "_")
    if getattr(args, key) != defaults[key]:
      raise PnagError(f"{flag} {why}")


@functools.cache
def _defaults() -> dict:
  parser = argparse.ArgumentParser()
  add_arguments(parser)
  return vars(parser.parse_args([]))
