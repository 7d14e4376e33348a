"""Executable validity: does each architecture build, run and train?

For every architecture: build its Flax network, run a forward pass on a random batch,
then take one SGD step and run the forward pass again. It is executable when the
decoded graph maps to a network of the space (`registry.buildable`: format-valid where
that makes a member network, NB201 and MBV3; strictly valid for DARTS, whose edges are
generated, and AutoFormer, whose ops carry the depth) and the logits, the loss and the
updated parameters are all finite.

Sources: generated archs of a trained run (`--workdir`) together with every
intermediate step's sub-architecture g_t (the code map decoded prefix by prefix),
archs listed in a file (`--from-file F`: what `pnag generate` writes, a CSV with an
`arch` column or JSONL with one `{"arch": ...}` per line), or
uniform samples of a space (`--random`). `constrained=True` decodes a run's archs and
their g_t under the space's grammar, as `pnag generate --constrained` does.

Networks are checked at a reduced macro size by default (fewer cells, narrower
channels, larger ViT patches; `SMALL` below): what the cell or layer sequence
computes, and whether it executes, does not depend on how often it is stacked, and
each distinct network costs a compile. `full_size=True` checks the paper-sized
networks instead.

The step runs op by op by default (`jit=False`). Each distinct network would otherwise
be one XLA program of its own, compiled from scratch (15 s for a reduced DARTS network
and 30 s for an MBV3 subnet on 2 CPU cores), whereas op-by-op dispatch compiles each
primitive once per shape and reuses it across architectures, which share most of their
layer shapes: after the first few networks of a space, a check takes about a second.
`jit=True` checks the compiled program instead, which is what to use on an
accelerator or for a handful of networks.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from pnag_jax import config as config_lib
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports
from pnag_jax.generation import SamplerConfig, load_sampler
from pnag_jax.generation.steps import step_genes
from pnag_jax.networks import registry
from pnag_jax.networks.functional import merge_pure, split_pure
from pnag_jax.spaces import get_space
from pnag_jax.tasks import user as user_files

#: Check sizes (builder kwargs, input size). MBV3 subnets are checked whole: their
#: macro structure is the architecture, and 32 px is the smallest input they take.
SMALL = {
    "nb201": ({"channels": 8, "cells_per_stage": 1}, 16),
    "darts": ({"init_channels": 8, "layers": 5}, 16),
    "mbv3": ({}, 32),
    "mbv3_r": ({}, 32),
    "autoformer": ({"patch_size": 8}, 32),
    "autoformer_base": ({"patch_size": 8}, 32),
}
#: The paper's sizes: CIFAR-sized networks, and AutoFormer on 224 px ImageNet inputs.
FULL = {"nb201": ({}, 32), "darts": ({}, 32), "mbv3": ({}, 32), "mbv3_r": ({}, 32),
        "autoformer": ({"patch_size": 16}, 224), "autoformer_base": ({"patch_size": 16}, 224)}


#: XLA options for `jit=True`: each check runs its program once, so compile fast (no
#: LLVM optimisation; 1.4-1.7x quicker for MBV3 and DARTS subnets on 2 CPU cores) rather
#: than run fast. Finiteness does not depend on the optimisation level.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

#: Archs checked by default, generated or sampled (a file's are all checked).
DEFAULT_NUM = 100

#: The checks of an arch that is not built (it is no network of its space).
_NOT_BUILT = {"built": False, "forward_finite": False, "loss_finite": False,
              "step_finite": False}


def network_size(space_name: str, full_size: bool) -> tuple[dict, int]:
  """(builder kwargs, input size) of the networks checked."""
  return (FULL if full_size else SMALL)[space_name]


def check_network(space_name: str, genes, *, key: jax.Array, full_size: bool = False,
                  jit: bool = False, num_classes: int = 10, batch: int = 2) -> dict:
  """Builds, runs and steps one network; returns which checks passed."""
  kwargs, size = network_size(space_name, full_size)
  k_init, k_drop, k_x, k_y = jax.random.split(key, 4)
  out = dict(_NOT_BUILT)
  try:
    model = registry.build_network(space_name, genes, input_shape=(size, size, 3),
                                   num_classes=num_classes,
                                   rngs=nnx.Rngs(params=k_init, dropout=k_drop), **kwargs)
  except (ValueError, KeyError, IndexError, TypeError) as e:
    out["error"] = f"{type(e).__name__}: {str(e)[:200]}"
    return out
  out["built"] = True
  x = jax.random.normal(k_x, (batch, size, size, 3), jnp.float32)
  y = jax.random.randint(k_y, (batch,), 0, num_classes)
  graphdef, pure, templates = split_pure(model)

  def forward(pure):
    m = merge_pure(graphdef, templates, pure)
    m.train()
    return m(x)

  def loss_fn(params):
    logits = forward({"params": params, "batch_stats": pure["batch_stats"]})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

  def step(pure):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(pure["params"])
    new_params = jax.tree.map(lambda p, g: p - 0.01 * g, pure["params"], grads)
    # Training mode again: BatchNorm normalises with the batch's statistics, as the
    # next training step would (the running averages have seen one batch only).
    logits2 = forward({"params": new_params, "batch_stats": pure["batch_stats"]})
    params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p))
                                       for p in jax.tree.leaves(new_params)]))
    return (jnp.all(jnp.isfinite(logits)), jnp.isfinite(loss),
            jnp.all(jnp.isfinite(logits2)) & params_finite)

  checked_step = jax.jit(step, compiler_options=FAST_COMPILE) if jit else step
  fwd, loss_ok, step_ok = jax.device_get(checked_step(pure))
  out.update(forward_finite=bool(fwd), loss_finite=bool(loss_ok), step_finite=bool(step_ok))
  return out


def _executable(r: dict) -> bool:
  return r["valid"] and r["built"] and r["forward_finite"] and r["loss_finite"] and \
      r["step_finite"]


def check_genes(space_name: str, genes: np.ndarray, valid: np.ndarray, *, key: jax.Array,
                full_size: bool, jit: bool, cache: dict, progress: bool = False) -> list[dict]:
  """Checks each arch once (`cache` is keyed by genes and validity); rows in input order.

  The n-th distinct entry of `cache` gets `fold_in(key, n)`, so no two networks share a
  key. Validity is part of the key: an invalid decode can clip to the genes of a valid
  arch, and the valid one must still be built.
  """
  rows = []
  pairs = list(zip(np.asarray(genes), np.asarray(valid)))
  for g, v in tqdm(pairs, disable=not progress, leave=False, unit="arch"):
    k = (g.tobytes(), bool(v))
    if k not in cache:
      net_key = jax.random.fold_in(key, len(cache))
      cache[k] = check_network(space_name, g, key=net_key, full_size=full_size,
                               jit=jit) if v else _NOT_BUILT
    row = {"valid": bool(v), **cache[k]}
    row["executable"] = _executable(row)
    rows.append(row)
  return rows


def _summary(rows: list[dict]) -> dict:
  n = max(len(rows), 1)
  return {"num": len(rows), "valid": sum(r["valid"] for r in rows) / n,
          "executable": sum(r["executable"] for r in rows) / n,
          "executable_given_valid": (sum(r["executable"] for r in rows) /
                                     max(sum(r["valid"] for r in rows), 1)),
          "errors": sorted({r["error"] for r in rows if "error" in r})[:5]}


def run(out: str | Path, *, workdir: str | None = None, from_file: str | None = None,
        space: str | None = None, random: bool = False, num: int | None = None,
        seed: int = 0, full_size: bool = False, jit: bool = False,
        constrained: bool = False, progress: bool = True) -> dict:
  """Writes `executable.json` under `out`; see the module docstring for the sources.

  `num`: the archs generated or sampled (default `DEFAULT_NUM`), or the first `num` of
  `from_file` (default all); the report's `num` is the count checked.
  """
  if sum(bool(s) for s in (workdir, from_file, random)) != 1:
    raise PnagError("give exactly one of --workdir, --from-file or --random")
  if constrained and not workdir:
    raise PnagError("--constrained applies to generated archs (--workdir) only")
  if num is not None and num < 1:
    raise PnagError(f"--num must be >= 1, got {num}")
  config_lib.check_seed(seed, "--seed")
  if Path(out).exists() and not Path(out).is_dir():  # found now, not after every build
    raise PnagError(f"--out {out} is a file, not a directory")
  cache: dict = {}
  if not from_file:
    num = DEFAULT_NUM if num is None else num
  report = {"full_size": full_size, "jit": jit, "constrained": constrained, "num": num,
            "seed": seed, "groups": {}}
  # The generated archs and their g_t come from one key on purpose: g_T is the final arch.
  k_archs, k_nets = jax.random.split(jax.random.key(seed))
  start = time.perf_counter()
  if workdir:
    trained, gen = load_sampler(workdir, SamplerConfig(constrained=constrained).for_num(num))
    space_name = trained.space.name
    if space and get_space(space).name != space_name:
      raise PnagError(f"workdir {workdir} holds a {space_name} run; --space {space} "
                      "disagrees with it (omit --space with --workdir)")
    final = gen.generate(k_archs, num)
    # registry.buildable's rule, on the flags the engine already computed.
    ok = final.format_valid if registry.format_suffices(trained.space) else final.valid
    report["groups"]["generated"] = check_genes(space_name, final.genes, ok, key=k_nets,
                                                full_size=full_size, jit=jit, cache=cache,
                                                progress=progress)
    genes_t, valid_t = step_genes(gen, trained.params, k_archs, num)
    for t in range(genes_t.shape[0]):
      report["groups"][f"step_{t + 1}"] = check_genes(space_name, genes_t[t], valid_t[t],
                                                      key=k_nets, full_size=full_size,
                                                      jit=jit, cache=cache)
      if progress:
        print(f"  step {t + 1}: {_summary(report['groups'][f'step_{t + 1}'])['executable']:.3f}",
              flush=True)
  else:
    if not space:
      raise PnagError("--space is required with --from-file and --random")
    space_name = get_space(space).name
    sp = get_space(space_name)
    if from_file:
      genes = user_files.read_archs(from_file, sp)[:num]
      report["num"] = len(genes)
    else:
      genes = np.asarray(jax.jit(sp.sample, static_argnums=1)(k_archs, num))
    ops, adj = sp.encode(genes)
    valid = np.asarray(registry.buildable(sp, ops, adj))
    report["groups"]["file" if from_file else "random"] = check_genes(
        space_name, genes, valid, key=k_nets, full_size=full_size, jit=jit, cache=cache,
        progress=progress)
  report["space"] = space_name
  kwargs, size = network_size(space_name, full_size)
  report["network"] = {"builder_kwargs": kwargs, "input_shape": [size, size, 3], "batch": 2}
  report["summary"] = {g: _summary(rows) for g, rows in report["groups"].items()}
  report["distinct_networks_checked"] = sum(r["built"] for r in cache.values())
  report["wall_s"] = round(time.perf_counter() - start, 1)
  report["machine"] = reports.machine()
  reports.write_json(reports.out_dir(out) / "executable.json", report)
  return report


def format_table(report: dict) -> str:
  rows = [[g, s["num"], f"{100 * s['valid']:.1f}", f"{100 * s['executable']:.1f}",
           f"{100 * s['executable_given_valid']:.1f}"] for g, s in report["summary"].items()]
  net = report["network"]
  kwargs = ", ".join(f"{k}={v}" for k, v in net["builder_kwargs"].items()) or "defaults"
  return (f"executable validity, {report['space']} "
          f"({'paper' if report['full_size'] else 'check'} size: builder {kwargs}, "
          f"{net['input_shape'][0]}x{net['input_shape'][1]} inputs)\n\n" +
          reports.table(["group", "archs", "valid %", "executable %",
                         "executable given valid %"], rows))


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Executable validity: build each arch's Flax network, run a forward "
                   "pass, take one SGD step and run it again; executable when the logits, "
                   "the loss and the stepped params are finite. Sources: a trained run's "
                   "generated archs and every g_t (--workdir), a file (--from-file), or "
                   "uniform samples (--random).")
  p.epilog = ("example:\n  pnag eval executable --random --space nb201 --num 100 --out /tmp/ex"
              "\n  pnag eval executable --workdir runs/nb201 --num 10 --out /tmp/ex")
  p.add_argument("--workdir", help="a trained stage-1 run: generated archs and every g_t")
  p.add_argument("--from-file", help="a CSV with an arch column, or F.jsonl with one "
                 "{\"arch\": ...} per line, as pnag generate writes (needs --space)")
  p.add_argument("--random", action="store_true", help="uniform samples of --space")
  p.add_argument("--space", help="the space of --from-file / --random")
  p.add_argument("--num", type=int, help=f"architectures to check (default {DEFAULT_NUM}); "
                 "with --from-file, the file's first N (default all)")
  p.add_argument("--seed", type=int, default=0, help="seed of the archs and the networks")
  p.add_argument("--full-size", action="store_true",
                 help="check the paper-sized networks (default: reduced macro size)")
  p.add_argument("--jit", action="store_true",
                 help="check each network's compiled step (default: op by op, which "
                      "reuses compiles across architectures)")
  p.add_argument("--constrained", action="store_true",
                 help="with --workdir: decode the archs and every g_t under the grammar")
  p.add_argument("--out", required=True, help="output directory (executable.json)")


def main(args: argparse.Namespace) -> None:
  report = run(args.out, workdir=args.workdir, from_file=args.from_file, space=args.space,
               random=args.random, num=args.num, seed=args.seed, full_size=args.full_size,
               jit=args.jit, constrained=args.constrained)
  print(format_table(report))
  print(f"\nwrote {args.out}/executable.json")
