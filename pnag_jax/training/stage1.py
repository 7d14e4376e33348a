"""Stage-1 training: optax AdamW over the VQ-VAE, orbax checkpoints, automatic resume.

  pnag train stage1 --space nb201 --workdir runs/nb201 --preset quick

State is a plain dict `{"params", "opt_state"}` of pure pytrees (big_vision style).
The step, the held-out evaluation and the optimizer are module-level jitted functions
of a static model and static settings, so every run of the same structure in a
process (a resume, the SCC ablation's sweep) shares their compiles; the SCC weights
are an argument for the same reason. Everything that varies per step is derived from
(seed, step): the batch order and the sampling key, so a run killed after k steps and
resumed is bit-identical to one that never stopped.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from pnag_jax import atomic
from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.data import DATA_DIR_HELP, resolve_data_dir
from pnag_jax.errors import PnagError
from pnag_jax.models import msq, vqvae
from pnag_jax.spaces import SPACE_NAMES, get_space
from pnag_jax.stages import lineage
from pnag_jax.stages import stage1
from pnag_jax.stages.stage1 import Stage1Config, Stage1Model
from pnag_jax.training import reports

EVAL_CHUNK = 1024


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
  """Row indices of step `step`: a fresh permutation per epoch, from (seed, epoch)."""
  per_epoch = n // batch_size  # drop the ragged tail: fixed shapes, one compile
  epoch, i = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  return perm[i * batch_size:(i + 1) * batch_size]


#: How `max_steps` reads, in `--help` (stage 1 and stage 2 alike): 0 is a setting, not an error.
MAX_STEPS_HELP = ("max_steps: > 0 caps the run at that many steps; 0 (the default, and the "
                  "paper preset's) is no cap: every epoch is trained.")


def num_steps(cfg: Stage1Config, n_train: int) -> int:
  total = cfg.epochs * (n_train // cfg.batch_size)
  return min(total, cfg.max_steps) if cfg.max_steps > 0 else total


# ---- the step ----------------------------------------------------------------------


class LossSettings(NamedTuple):
  """The static part of the loss (`vqvae.loss_fn`); hashable."""

  beta: float
  beta_kl: float
  paper_literal: bool
  arch_scc: bool

  @classmethod
  def of(cls, cfg: Stage1Config) -> "LossSettings":
    return cls(cfg.beta, cfg.beta_kl, cfg.scc_variant == "paper_literal", cfg.arch_scc)


class OptimizerSettings(NamedTuple):
  """AdamW with an optional warmup-cosine schedule; hashable."""

  learning_rate: float
  weight_decay: float
  warmup_steps: int
  total_steps: int

  @classmethod
  def of(cls, cfg: Stage1Config, total_steps: int) -> "OptimizerSettings":
    return cls(cfg.learning_rate, cfg.weight_decay, cfg.warmup_steps, total_steps)


def make_optimizer(opt: OptimizerSettings) -> optax.GradientTransformation:
  if opt.warmup_steps > 0:
    lr = optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, opt.warmup_steps,
                                            max(opt.total_steps, opt.warmup_steps + 1))
  else:
    lr = opt.learning_rate  # the paper preset: a constant 1e-4
  return optax.adamw(lr, weight_decay=opt.weight_decay)


@functools.partial(jax.jit, static_argnames=("model", "loss", "opt"), donate_argnums=0)
def train_step(state: dict, genes: jax.Array, key: jax.Array, step: jax.Array,
               step_weights: jax.Array, *, model: Stage1Model, loss: LossSettings,
               opt: OptimizerSettings) -> tuple[dict, dict]:
  """One AdamW step on a batch of genes; the VAE's key is `fold_in(key, step)`."""
  ops, adj = model.space.encode(genes)

  def objective(params):
    return vqvae.loss_fn(model.merge(params), ops, adj, jax.random.fold_in(key, step),
                         step_weights=step_weights, **loss._asdict())

  (_, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
  updates, opt_state = make_optimizer(opt).update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return {"params": params, "opt_state": opt_state}, metrics


# ---- evaluation ----------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="model")
def _eval_chunk(params: dict, genes: jax.Array, keep: jax.Array, *, model: Stage1Model):
  """Per arch: exact match, per-step strict validity and prefix error; code counts."""
  ops, adj = model.space.encode(genes)
  p_ops, p_adj, out, mu = vqvae.reconstruct(model.merge(params), ops, adj)
  exact = jnp.all(p_ops[-1] == ops, -1) & jnp.all(p_adj[-1] == adj, (-2, -1))
  step_valid = model.space.strict_valid(p_ops, p_adj)                      # [T, B]
  prefix_err = jnp.mean((out.prefixes - mu[None]) ** 2, axis=(2, 3, 4))   # [T, B]
  counts = jnp.stack([msq.code_counts(i, model.codebook_size, keep) for i in out.indices])
  return exact, step_valid, prefix_err, counts


def evaluate(model: Stage1Model, params: dict, genes: np.ndarray) -> dict:
  """Fixed-size chunks (the tail padded and masked) so nothing recompiles."""
  n = genes.shape[0]
  exact, valid, err = [], [], []
  counts = np.zeros((len(model.scales), model.codebook_size), np.int64)
  for start in range(0, n, EVAL_CHUNK):
    chunk = genes[start:start + EVAL_CHUNK]
    k = chunk.shape[0]
    if k < EVAL_CHUNK:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], EVAL_CHUNK - k, 0)])
    e, v, r, c = jax.device_get(_eval_chunk(params, chunk, np.arange(EVAL_CHUNK) < k,
                                            model=model))
    exact.append(e[:k])
    valid.append(v[:, :k])
    err.append(r[:, :k])
    counts += c
  valid, err = np.concatenate(valid, 1), np.concatenate(err, 1)
  return {
      "exact_match": float(np.concatenate(exact).mean()),
      "step_validity": valid.mean(1).tolist(),
      "prefix_error": err.mean(1).tolist(),
      "codebook_perplexity": [float(msq.codebook_perplexity(c)) for c in counts],
  }


# ---- the loop ------------------------------------------------------------------------


def _check_resume(ckpt: ckpt_lib.StageCheckpointer, cfg: Stage1Config, workdir) -> dict:
  """The checkpoint's metadata, once it is known to be this run's."""
  meta = ckpt.read_meta()
  where = f"workdir {workdir}"
  ckpt_lib.check_meta(meta, {"space": cfg.space, "stage": stage1.NAME}, where=where)
  lineage.check_frozen(meta, cfg.frozen(), Stage1Config, where=where)
  return meta


def train_and_evaluate(cfg: Stage1Config, workdir: str | Path, *, progress: bool = True,
                       stop_after: int | None = None) -> dict:
  """Trains (resuming from the latest checkpoint) and writes the stage-1 outputs.

  Writes `workdir/stage1/{config.json, metrics.jsonl, report.json, checkpoints/}`.
  `stop_after` ends the run early after that many total steps, as a kill would
  (tests use it to check resume); no report is written then. A run already finished
  with this config returns its report as it is (`reports.finished`).
  """
  space = get_space(cfg.space)
  out_dir = Path(workdir) / stage1.NAME
  train, heldout = stage1.datasets(cfg)
  total = num_steps(cfg, train.shape[0])
  if total <= 0:
    raise PnagError(f"no training steps: {train.shape[0]} archs at batch {cfg.batch_size}")
  model, params = stage1.init(cfg)
  loss, opt = LossSettings.of(cfg), OptimizerSettings.of(cfg, total)
  weights = stage1.step_weights(cfg, len(model.scales))
  state = {"params": params, "opt_state": make_optimizer(opt).init(params)}
  base_key = jax.random.fold_in(jax.random.key(cfg.seed), 2)

  with ckpt_lib.StageCheckpointer(workdir, stage1.NAME, max_to_keep=2,
                                  save_interval_steps=1) as ckpt:
    start, seconds_before = 0, 0.0
    if ckpt.latest_step() is not None:
      start = ckpt.latest_step()
      meta = _check_resume(ckpt, cfg, workdir)
      lineage.check_not_past(start, total, where=f"stage 1 in {workdir}",
                             limit=f"this run's {total} steps",
                             how="max_steps (`pnag demo`: --steps; or the epochs that give it)")
      lineage.check_finished(meta, cfg, start, total, where=f"stage 1 in {workdir}",
                             steps_of=lambda c: num_steps(c, train.shape[0]))
      report, seconds_before = reports.resumed(meta, out_dir, start, total, cfg.to_json())
      if report is not None:
        return report
      params, opt_state, base_key, _ = ckpt.restore(
          params_template=state["params"], opt_state_template=state["opt_state"])
      state = {"params": params, "opt_state": opt_state}
    # Restored arrays come back committed to a device; fresh ones are not. Commit both
    # alike, so a resumed run hits the same compiled step as a fresh one.
    state, base_key = jax.device_put((state, base_key), jax.devices()[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out_dir / "config.json", cfg.to_json())

    end = total if stop_after is None else min(total, stop_after)
    t0 = time.perf_counter()
    # The report's time is the last checkpoint's, which a rerun that measures anew reads
    # back: the final save and what follows it are no training.
    train_seconds = seconds_before
    bar = tqdm(range(start, end), initial=start, total=total, disable=not progress,
               desc=f"stage1 {space.name}", dynamic_ncols=True)
    with reports.open_metrics(out_dir, start) as log:
      for step in bar:
        genes = train[batch_indices(cfg.seed, step, train.shape[0], cfg.batch_size)]
        state, metrics = train_step(state, genes, base_key, step, weights, model=model,
                                    loss=loss, opt=opt)
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
          row = {k: float(v) for k, v in jax.device_get(metrics).items()}
          bar.set_postfix(loss=f"{row['loss']:.4f}", exact=f"{row['exact']:.3f}")
          log.write(json.dumps({"step": done, "split": "train", **row}) + "\n")
        if done % cfg.eval_every == 0 and done != total:
          ev = evaluate(model, state["params"], heldout[:EVAL_CHUNK * 2])
          log.write(json.dumps({"step": done, "split": "heldout", **ev}) + "\n")
        if done % cfg.checkpoint_every == 0 or done == end:
          train_seconds = seconds_before + time.perf_counter() - t0
          meta = lineage.stage_meta(stage=stage1.NAME, space=space.name,
                                    config=config_lib.to_dict(cfg), params=state["params"],
                                    frozen=cfg.frozen(), train_seconds=train_seconds)
          ckpt.save(done, state["params"], state["opt_state"], base_key, meta, force=True)
        log.flush()
    ckpt.wait_until_finished()
    if end < total:
      return {"steps": end, "stopped_early": True}

    n_eval = min(cfg.eval_size or heldout.shape[0], heldout.shape[0])
    held = evaluate(model, state["params"], heldout[:n_eval])
    tr = evaluate(model, state["params"], train[:n_eval])
    report = {
        "space": space.name,
        "steps": total,
        "train_seconds": train_seconds,
        "resumed_from": start,
        "heldout_exact_match": held["exact_match"],
        "train_exact_match": tr["exact_match"],
        "codebook_perplexity": held["codebook_perplexity"],
        "step_validity": held["step_validity"],
        "prefix_error": held["prefix_error"],
        "scales": list(model.scales),
        "num_train": int(train.shape[0]),
        "num_heldout": int(heldout.shape[0]),
        "num_evaluated": n_eval,
        "device": str(jax.devices()[0]),
    }
    reports.write_final(out_dir, total, report)
    return report


# ---- `pnag train stage1` --------------------------------------------------------------


def config_for(workdir: str | Path, *, preset: str | None, space: str | None,
               seed: int | None, overrides=()) -> Stage1Config:
  """The config of `pnag train stage1`: a new run's, or the one a workdir resumes.

  A workdir that already holds a run resumes it: its saved config, with `--set`
  overrides on top, unless `--preset` asks for another one (which must then keep the
  frozen settings). `--space` or `--seed` that disagree with the run are an error.
  """
  if space is not None:
    get_space(space)
  saved = stage1.read_config(workdir)
  if saved is not None:
    for name, given in (("space", space), ("seed", seed)):
      if given is not None and given != getattr(saved, name):
        raise PnagError(f"workdir {workdir} holds a stage-1 run with {name} "
                        f"{getattr(saved, name)!r}; --{name} {given} disagrees (omit it to "
                        "resume that run, or use a new --workdir)")
    if preset is None:
      return config_lib.with_overrides(saved, overrides, where=f"workdir {workdir}",
                                       own=stage1.OWN_SETTINGS)
  return stage1.make_config(preset or "quick", space=space or (saved.space if saved else "nb201"),
                            seed=saved.seed if saved else (seed or 0), overrides=overrides)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Train the stage-1 VQ-VAE (jraph encoder, MSQ, SCC, linear decoder). "
                   "Rerunning the same command resumes from the latest checkpoint.")
  p.epilog = ("example:\n  pnag train stage1 --space nb201 --workdir runs/nb201 --preset quick"
              "\n  pnag train stage1 --space mbv3 --workdir runs/mbv3 --set num_scales=6 "
              "--set dim=16\n\nconfig keys for --set: "
              + config_lib.set_keys(Stage1Config, stage1.OWN_SETTINGS)
              + "\n\n" + MAX_STEPS_HELP)
  p.add_argument("--workdir", required=True, help="run directory; stage 1 goes to WORKDIR/stage1")
  p.add_argument("--space", default=None,
                 help=f"search space of a new run ({', '.join(SPACE_NAMES)}; default: nb201); "
                      "a resumed run keeps its own")
  p.add_argument("--preset", choices=tuple(stage1.PRESETS), default=None,
                 help=config_lib.PRESET_HELP)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override one config value; repeatable")
  p.add_argument("--seed", type=int, default=None,
                 help="seed of a new run (default: 0); a resumed run keeps its own")
  p.add_argument("--data-dir",
                 help=f"{DATA_DIR_HELP}; stage 1 reads no table, but a bad one is an error now")


def main(args: argparse.Namespace) -> None:
  if args.data_dir is not None:
    # Stage 1 reads no tables (NB201's split is over cell codes), but a bad directory
    # given explicitly is still the user's mistake, so it fails now, not in a later stage.
    resolve_data_dir(args.data_dir)
  cfg = config_for(args.workdir, preset=args.preset, space=args.space, seed=args.seed,
                   overrides=args.set)
  report = train_and_evaluate(cfg, args.workdir)
  print(f"stage1 {report['space']}: {report['steps']} steps in {report['train_seconds']:.1f} s, "
        f"held-out exact match {report['heldout_exact_match']:.4f}, "
        f"train {report['train_exact_match']:.4f}")
  print(f"  step validity: {' '.join(f'{v:.3f}' for v in report['step_validity'])}")
  print(f"  report: {Path(args.workdir) / 'stage1' / 'report.json'}")
