"""Stage-2 training: the next-scale transformer on stage 1's token maps, teacher-forced.

  pnag train stage2 --workdir runs/nb201 --preset quick

Stage 1 is frozen: its encoder's posterior means, quantized by MSQ, give every training
arch's token map once, before the first step (deterministic, so a resumed run sees the
same data). Each step builds the transformer's continuous inputs from those tokens and
stage 1's codebook, draws each arch's condition (`condition=task`: a meta-training
task, one of its bank of task vectors, and the arch's quantile in it; see
`task_conditions.py`), drops it to null for `cond_drop` of the batch (for
classifier-free guidance), and minimises the cross-entropy of every token in one
block-causal pass. The state is a plain dict; batch order and keys derive from
(seed, step), so a killed and resumed run is bit-identical to one that never stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
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
from pnag_jax.errors import PnagError
from pnag_jax.models import var
from pnag_jax.stages import lineage
from pnag_jax.stages import stage1, stage2, surrogate
from pnag_jax.stages.stage1 import Stage1Model, Stage1Run
from pnag_jax.stages.stage2 import Stage2Config, Stage2Model
from pnag_jax.training import budget_conditions, task_conditions
from pnag_jax.training import reports
from pnag_jax.training.stage1 import MAX_STEPS_HELP, batch_indices

CHUNK = 512


# ---- data ------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="model")
def _tokens_chunk(params: dict, genes: jax.Array, *, model: Stage1Model):
  ops, adj = model.space.encode(genes)
  vqvae = model.merge(params)
  mu, _ = vqvae.encode(ops, adj)
  return model.layout.flatten(vqvae.quantize(mu).indices), model.space.strict_valid(ops, adj)


def token_maps(run1: Stage1Run, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(int32[R, P] MSQ tokens of each arch's posterior mean, bool[R] strict validity)."""
  toks, valid = [], []
  for start in range(0, genes.shape[0], CHUNK):
    part = genes[start:start + CHUNK]
    k = part.shape[0]
    # Fixed-size chunks: one compile for any number of archs.
    part = np.concatenate([part, np.repeat(part[:1], CHUNK - k, 0)])
    t, v = jax.device_get(_tokens_chunk(run1.params, part, model=run1.model))
    toks.append(t[:k])
    valid.append(v[:k])
  return np.concatenate(toks).astype(np.int32), np.concatenate(valid)


class TokenData(NamedTuple):
  """Stage 1's split as token maps, with the genes they encode (read-only arrays)."""

  train: np.ndarray          # int32[N_train, P]
  heldout: np.ndarray        # int32[N_heldout, P]
  train_genes: np.ndarray    # int32[N_train, G]
  heldout_genes: np.ndarray  # int32[N_heldout, G]


# Keyed by stage 1's params hash and config: the token maps of a frozen stage 1 are a
# function of its params and its split, and a resumed or repeated run in one process
# (the tests, an eval sweep) should not encode every arch again.
_DATASETS: dict[tuple[str, str, bool], TokenData] = {}


def datasets(cfg: Stage2Config, run1: Stage1Run) -> TokenData:
  """Stage 1's own split as token maps, strictly valid archs only when
  `cfg.valid_only`; cached per stage-1 params."""
  key = (lineage.params_sha256(run1.params), run1.cfg.to_json(), cfg.valid_only)
  if key not in _DATASETS:
    tokens, genes = [], []
    for g in stage1.datasets(run1.cfg):
      t, valid = token_maps(run1, g)
      keep = valid if cfg.valid_only else np.ones_like(valid)
      tokens.append(t[keep])
      genes.append(np.asarray(g, np.int32)[keep])
    data = TokenData(tokens[0], tokens[1], genes[0], genes[1])
    for a in data:
      a.setflags(write=False)
    _DATASETS.clear()  # one stage 1 at a time: a few MB each, never a growing set
    _DATASETS[key] = data
  return _DATASETS[key]


# ---- the step ----------------------------------------------------------------------------


class OptimizerSettings(NamedTuple):
  learning_rate: float
  weight_decay: float
  warmup_steps: int
  total_steps: int
  grad_clip: float

  @classmethod
  def of(cls, cfg: Stage2Config, total_steps: int) -> "OptimizerSettings":
    return cls(cfg.learning_rate, cfg.weight_decay, cfg.warmup_steps, total_steps,
               cfg.grad_clip)


def make_optimizer(opt: OptimizerSettings) -> optax.GradientTransformation:
  lr = opt.learning_rate
  if opt.warmup_steps > 0:
    lr = optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, opt.warmup_steps,
                                            max(opt.total_steps, opt.warmup_steps + 1))
  clip = optax.clip_by_global_norm(opt.grad_clip) if opt.grad_clip > 0 else optax.identity()
  return optax.chain(clip, optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=opt.weight_decay))


def token_loss(model: Stage2Model, params: dict, codebook: jax.Array, tokens: jax.Array,
               drop: jax.Array, cond: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """Per-token cross-entropy and correctness, each [B, P], teacher-forced.

  `cond [B, cond_dim]` (None for an unconditional model) is replaced by the null
  condition where `drop [B]` is set.
  """
  net = model.merge(params)
  inputs = var.teacher_inputs(tokens, codebook, model.layout.scales)
  logits = net(inputs, net.condition(cond, drop))
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens)
  return ce, jnp.argmax(logits, -1) == tokens


def draw_conditions(tables: dict, idx: jax.Array, key: jax.Array) -> jax.Array | None:
  """The condition of each training arch `idx [B]`: a random task, a random vector of
  its bank, and the arch's quantile in that task; or its own counts, a random
  non-empty subset of them given (`budget_conditions.draw`). None without tables."""
  if not tables:
    return None
  if "budget" in tables:
    return budget_conditions.draw(tables["budget"], idx, key)
  t_count, m_count = tables["bank"].shape[:2]
  k_task, k_vec = jax.random.split(key)
  t = jax.random.randint(k_task, idx.shape, 0, t_count)
  m = jax.random.randint(k_vec, idx.shape, 0, m_count)
  q = tables["quantile"][t, idx]
  return jnp.concatenate([tables["bank"][t, m], q[:, None]], axis=-1)


@functools.partial(jax.jit, static_argnames=("model", "opt", "cond_drop", "micro_batches"),
                   donate_argnums=0)
def train_step(state: dict, tokens: jax.Array, idx: jax.Array, codebook: jax.Array,
               tables: dict, key: jax.Array, step: jax.Array, *, model: Stage2Model,
               opt: OptimizerSettings, cond_drop: float,
               micro_batches: int = 1) -> tuple[dict, dict]:
  """One AdamW step on the training archs `idx` (their token maps `tokens`).

  The null-condition draw is `fold_in(key, step)`; the task or budget condition's
  draw is `fold_in(fold_in(key, step), 1)`. `tables` is empty for an unconditional model.
  With `micro_batches` m > 1 the gradient is the mean of m equal slices' gradients,
  taken one after another: the same step up to float summation order, with the
  activations of B/m archs alive at a time instead of B.
  """
  step_key = jax.random.fold_in(key, step)
  drop = jax.random.bernoulli(step_key, cond_drop, tokens.shape[:1])
  cond = draw_conditions(tables, idx, jax.random.fold_in(step_key, 1))

  def objective(params, batch):
    ce, hit = token_loss(model, params, codebook, *batch)
    return ce.mean(), hit.mean()

  grad_fn = jax.value_and_grad(objective, has_aux=True)
  batch = (tokens, drop, cond)
  if micro_batches == 1:
    (loss, acc), grads = grad_fn(state["params"], batch)
  else:
    slices = jax.tree.map(lambda x: x.reshape(micro_batches, -1, *x.shape[1:]), batch)

    def accumulate(total, piece):
      return jax.tree.map(jnp.add, total, grad_fn(state["params"], piece)), None

    zero = ((jnp.zeros(()), jnp.zeros(())), jax.tree.map(jnp.zeros_like, state["params"]))
    total, _ = jax.lax.scan(accumulate, zero, slices)
    (loss, acc), grads = jax.tree.map(lambda x: x / micro_batches, total)
  updates, opt_state = make_optimizer(opt).update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  metrics = {"loss": loss, "token_accuracy": acc, "grad_norm": optax.tree.norm(grads)}
  return {"params": params, "opt_state": opt_state}, metrics


@functools.partial(jax.jit, static_argnames="model")
def _eval_chunk(params, codebook, tokens, cond, *, model: Stage2Model):
  drop = jnp.full(tokens.shape[:1], cond is None)
  return token_loss(model, params, codebook, tokens, drop, cond)


def evaluate(model: Stage2Model, params: dict, codebook: jax.Array, tokens: np.ndarray,
             cond: np.ndarray | None = None) -> dict:
  """Teacher-forced token accuracy per scale and NLL, held-out: under the null
  condition, or under `cond [n, cond_dim]`."""
  ce, hit = [], []
  for start in range(0, tokens.shape[0], CHUNK):
    part = tokens[start:start + CHUNK]
    k = part.shape[0]
    pad = lambda a: np.concatenate([a, np.repeat(a[:1], CHUNK - k, 0)])
    c_part = None if cond is None else pad(cond[start:start + CHUNK])
    c, h = jax.device_get(_eval_chunk(params, codebook, pad(part), c_part, model=model))
    ce.append(c[:k])
    hit.append(h[:k])
  ce, hit = np.concatenate(ce), np.concatenate(hit)
  slices = model.layout.slices
  return {
      "nll_per_token": float(ce.mean()),
      "nll_per_arch": float(ce.sum(1).mean()),
      "token_accuracy": float(hit.mean()),
      "token_accuracy_per_scale": [float(hit[:, sl].mean()) for sl in slices],
      "nll_per_scale": [float(ce[:, sl].mean()) for sl in slices],
  }


def heldout_conditions(cfg: Stage2Config, cond: task_conditions.TaskConditions,
                       n: int) -> np.ndarray:
  """A fixed task and bank vector per held-out arch, with the arch's true quantile."""
  rng = np.random.default_rng([cfg.seed, 17])
  t = rng.integers(0, len(cond.names), n)
  m = rng.integers(0, cond.bank.shape[1], n)
  q = cond.heldout_quantile[t, np.arange(n)]
  return np.concatenate([cond.bank[t, m], q[:, None]], axis=-1).astype(np.float32)


# ---- the loop ------------------------------------------------------------------------------


def heldout_curve(out_dir: Path) -> list[dict]:
  """The periodic held-out NLLs in `metrics.jsonl`, one per step, in step order: the
  curve that shows a model starting to memorise its training archs (a resumed run's
  repeat of a step replaces the killed run's)."""
  by_step = {}
  for row in reports.read_metrics(out_dir):
    if row.get("split") == "heldout":
      by_step[row["step"]] = row["nll_per_token"]
  return [{"step": step, "nll_per_token": nll} for step, nll in sorted(by_step.items())]


def _best_so_far(best: ckpt_lib.StageCheckpointer, start: int) -> float:
  """The best kept held-out NLL at or before `start` (inf if none); later steps go."""
  for step in reversed(best.all_steps()):
    if step > start:
      best.delete(step)
  if best.latest_step() is None:
    return math.inf
  return float(best.read_meta()["heldout_nll_per_token"])


def num_steps(cfg: Stage2Config, n_train: int) -> int:
  total = cfg.epochs * (n_train // cfg.batch_size)
  return min(total, cfg.max_steps) if cfg.max_steps > 0 else total


def _parents(run1: Stage1Run, srun) -> tuple[dict, ...]:
  parents = [lineage.parent_entry(stage1.NAME, run1.step, run1.params)]
  if srun is not None:
    parents.append(lineage.parent_entry(surrogate.NAME, srun.step, srun.params))
  return tuple(parents)


def _check_resume(ckpt, frozen: dict, parents: tuple[dict, ...], space: str,
                  workdir) -> dict:
  """The checkpoint's metadata, once it is known to be this run's."""
  meta = ckpt.read_meta()
  where = f"stage 2 in {workdir}"
  ckpt_lib.check_meta(meta, {"stage": stage2.NAME, "space": space}, where=where)
  lineage.check_frozen(meta, frozen, Stage2Config, where=where)
  saved = lineage.parent_hashes(meta)
  for parent in parents:
    if saved.get(parent["stage"]) != parent["params_sha256"]:
      what = "stage 1" if parent["stage"] == stage1.NAME else "surrogate"
      raise ckpt_lib.CheckpointError(
          f"{where} was trained on another {what} than {workdir}/{parent['stage']} holds "
          f"now (step {parent['step']}); {lineage.retrain_advice(meta, workdir)}")
  return meta


def _load_surrogate(cfg: Stage2Config, run1: Stage1Run, workdir):
  if cfg.condition != "task":
    return None
  return surrogate.load(workdir, space=run1.space.name)


def _check_finished(workdir, name: str, step: int, command: str) -> None:
  """Stage 2 is bound to the step it reads (lineage): a stage 1 or surrogate killed
  halfway would, once resumed, leave it tied to a step that is then rotated out."""
  done = reports.final_step(Path(workdir) / name)
  if done != step:
    raise PnagError(f"{name} in {workdir} is not finished (step {step}, "
                    f"{'no final report' if done is None else f'its report is of step {done}'}"
                    f"); finish it first: {command} --workdir {workdir}")


def train_and_evaluate(cfg: Stage2Config, workdir: str | Path, *, data_dir=None,
                       tasks: dict | None = None, progress: bool = True,
                       stop_after: int | None = None) -> dict:
  """Trains stage 2 on `workdir/stage1` (resuming `workdir/stage2` if it exists).

  The task condition also reads the frozen `workdir/surrogate` and the space's task
  tables (`data_dir`, else `$PNAG_DATA_DIR`; or `tasks`, name -> Task, as the surrogate
  trainer takes them), less the surrogate's exclusions.
  Writes `workdir/stage2/{config.json, metrics.jsonl, report.json, checkpoints/}`.
  `stop_after` ends the run after that many total steps, as a kill would. A run already
  finished with this config returns its report as it is (`reports.finished`).
  """
  run1 = stage1.load(workdir)
  _check_finished(workdir, stage1.NAME, run1.step, "pnag train stage1")
  if cfg.condition == "budget":  # before anything is built or written
    budget_conditions.check_space(cfg, run1.space)
  srun = _load_surrogate(cfg, run1, workdir)
  if srun is not None:
    _check_finished(workdir, surrogate.NAME, srun.step, "pnag train surrogate")
  space = run1.space
  if srun is not None:
    task_conditions.check_space(cfg, space)
  out_dir = Path(workdir) / stage2.NAME
  codebook = jnp.asarray(run1.params["codebook"], jnp.float32)
  base_key = jax.random.fold_in(jax.random.key(cfg.seed), 5)
  parents = _parents(run1, srun)
  frozen = cfg.frozen()
  if srun is not None:  # inherited: what the surrogate never read, stage 2 never reads
    frozen["excluded_tasks"] = tuple(srun.excluded_tasks)

  with contextlib.ExitStack() as stack:
    ckpt = stack.enter_context(ckpt_lib.StageCheckpointer(workdir, stage2.NAME, max_to_keep=2))
    start, seconds_before = 0, 0.0
    resuming = ckpt.latest_step() is not None
    if resuming:  # before anything is built: a refused resume costs nothing
      saved_meta = _check_resume(ckpt, frozen, parents, space.name, workdir)
    t_data = time.perf_counter()
    data = datasets(cfg, run1)
    train, heldout = data.train, data.heldout
    conditions, budgets, tables, held_cond = None, None, {}, None
    if srun is not None:
      conditions = task_conditions.build(cfg, run1, srun, data.train_genes,
                                         data.heldout_genes, data_dir, tasks=tasks)
      tables = {"bank": conditions.bank, "quantile": conditions.train_quantile}
      # Read from the data dir, so recorded and checked: a resume on another data dir
      # would draw its conditions from another bank.
      frozen["condition_tasks"] = conditions.names
      if resuming:
        lineage.check_recorded(saved_meta, {"condition_tasks": conditions.names},
                               where=f"stage 2 in {workdir}")
      held_cond = heldout_conditions(cfg, conditions, heldout.shape[0])
    elif cfg.condition == "budget":
      budgets = budget_conditions.build(cfg, run1, data.train_genes, data.heldout_genes)
      tables = {"budget": budgets.train}
      held_cond = budgets.heldout_conditions()
      # A function of stage 1's split, which lineage pins; recorded for inference.
      frozen["budget_range"] = budgets.budget_range
    data_seconds = time.perf_counter() - t_data
    total = num_steps(cfg, train.shape[0])
    if total <= 0:
      raise PnagError(f"no training steps: {train.shape[0]} archs at batch {cfg.batch_size}")
    opt = OptimizerSettings.of(cfg, total)
    cond_dim = stage2.condition_dim(cfg, srun.cfg.task_dim if srun is not None else 0)
    model, params = stage2.init(cfg, run1.model, cond_dim)
    state = {"params": params, "opt_state": make_optimizer(opt).init(params)}
    if resuming:
      # Before the restore: a refused resume, or a finished run, needs no weights.
      start = ckpt.latest_step()
      lineage.check_not_past(start, total, where=f"stage 2 in {workdir}",
                             limit=f"this run's {total} steps",
                             how="max_steps (or the epochs that give it)")
      lineage.check_finished(saved_meta, cfg, start, total, where=f"stage 2 in {workdir}",
                             steps_of=lambda c: num_steps(c, train.shape[0]))
      report, seconds_before = reports.resumed(saved_meta, out_dir, start, total,
                                               cfg.to_json())
      if report is not None:
        return report
      kept = stage2.config_of(saved_meta, workdir).keep_best
      if start == total and kept and not cfg.keep_best:
        # Which step is served is read from the checkpoints, which a finished run no
        # longer writes: its report would say the last step while `load` serves the
        # best. (The other way round both say the last: a run of before keep_best.)
        raise PnagError(f"stage 2 in {workdir} finished with keep_best=True; which step "
                        "it serves was fixed as it trained (train in a new --workdir to "
                        "change it)")
      params, opt_state, base_key, _ = ckpt.restore(
          params_template=state["params"], opt_state_template=state["opt_state"])
      state = {"params": params, "opt_state": opt_state}
    best = None
    if cfg.keep_best:
      # Two kept: a step past `start` (saved before a kill) goes, its predecessor stays.
      best = stack.enter_context(ckpt_lib.StageCheckpointer(workdir, stage2.BEST,
                                                            max_to_keep=2))
      best_nll = _best_so_far(best, start)
    # Commit fresh and restored arrays alike: one compiled step for both.
    state, base_key, codebook, tables = jax.device_put((state, base_key, codebook, tables),
                                                       jax.devices()[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out_dir / "config.json", cfg.to_json())

    end = total if stop_after is None else min(total, stop_after)
    t0 = time.perf_counter()
    # The report's time is the last checkpoint's, which a rerun that measures anew reads
    # back: the final save and what follows it are no training.
    train_seconds = seconds_before

    def meta(params, seconds):
      return lineage.stage_meta(stage=stage2.NAME, space=space.name,
                                config=config_lib.to_dict(cfg), frozen=frozen, parents=parents,
                                params=params, train_seconds=seconds)

    bar = tqdm(range(start, end), initial=start, total=total, disable=not progress,
               desc=f"stage2 {space.name}", dynamic_ncols=True)
    with reports.open_metrics(out_dir, start) as log:
      for step in bar:
        idx = batch_indices(cfg.seed, step, train.shape[0], cfg.batch_size)
        state, metrics = train_step(state, train[idx], idx.astype(np.int32), codebook, tables,
                                    base_key, step, model=model, opt=opt,
                                    cond_drop=cfg.cond_drop,
                                    micro_batches=cfg.micro_batches)
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
          row = {k: float(v) for k, v in jax.device_get(metrics).items()}
          bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['token_accuracy']:.3f}")
          log.write(json.dumps({"step": done, "split": "train", **row}) + "\n")
        if done % cfg.eval_every == 0 or done == total:
          ev = evaluate(model, state["params"], codebook, heldout[:CHUNK * 2])
          log.write(json.dumps({"step": done, "split": "heldout", **ev}) + "\n")
          # Before the run's own save: a kill between the two leaves the best step
          # past `start`, where the resumed run recomputes (and replaces) it.
          if best is not None and ev["nll_per_token"] < best_nll:
            best_nll = ev["nll_per_token"]
            best.save(done, state["params"], state["opt_state"], base_key,
                      {**meta(state["params"], seconds_before + time.perf_counter() - t0),
                       "heldout_nll_per_token": best_nll},
                      force=True)
        if done % cfg.checkpoint_every == 0 or done == end:
          train_seconds = seconds_before + time.perf_counter() - t0
          ckpt.save(done, state["params"], state["opt_state"], base_key,
                    meta(state["params"], train_seconds), force=True)
        log.flush()
    ckpt.wait_until_finished()
    kept = None
    if best is not None:
      best.wait_until_finished()
      if best.latest_step() is not None:
        kept = {"step": best.latest_step(), "nll_per_token": best_nll}
    if end < total:
      return {"steps": end, "stopped_early": True}

    n_eval = min(cfg.eval_size or heldout.shape[0], heldout.shape[0])
    held = evaluate(model, state["params"], codebook, heldout[:n_eval])
    curve = heldout_curve(out_dir)
    report = {
        "space": space.name,
        "steps": total,
        "train_seconds": train_seconds,
        "data_seconds": data_seconds,
        "resumed_from": start,
        "condition": cfg.condition,
        "heldout_nll_per_token": held["nll_per_token"],
        "heldout_nll_per_arch": held["nll_per_arch"],
        "heldout_token_accuracy": held["token_accuracy"],
        "token_accuracy_per_scale": held["token_accuracy_per_scale"],
        "nll_per_scale": held["nll_per_scale"],
        # Every `eval_every` steps and the last, on the first 1,024 held-out archs.
        "heldout_curve": curve,
        "best_heldout_step": (min(curve, key=lambda r: r["nll_per_token"])["step"]
                              if curve else None),
        # The step `stage2.load` serves (W/stage2/best), when `keep_best`; the figures
        # above are the last step's.
        "best_checkpoint": kept,
        "scales": list(model.layout.scales),
        "num_train": int(train.shape[0]),
        "num_heldout": int(heldout.shape[0]),
        "num_evaluated": int(n_eval),
        "stage1": parents[0],
        "params": int(sum(np.size(x) for x in jax.tree.leaves(state["params"]))),
        "device": str(jax.devices()[0]),
    }
    if held_cond is not None:
      # The same archs under their true condition: below the null NLL if the model
      # reads its condition at all.
      cond_eval = evaluate(model, state["params"], codebook, heldout[:n_eval],
                           held_cond[:n_eval])
      report.update({
          "heldout_nll_per_token_conditional": cond_eval["nll_per_token"],
          "heldout_nll_per_arch_conditional": cond_eval["nll_per_arch"],
      })
    if budgets is not None:
      report.update({"budgets": list(budgets.keys), "budget_range": budgets.budget_range})
    if conditions is not None:
      report.update({
          "surrogate": parents[1],
          "excluded_tasks": list(frozen["excluded_tasks"]),
          "exclude": list(srun.cfg.exclude),
          "condition_tasks": list(conditions.names),
          "condition_tasks_left_out": list(conditions.left_out),
      })
    reports.write_final(out_dir, total, report)
    return report


# ---- `pnag train stage2` ----------------------------------------------------------------------


def config_for(workdir: str | Path, *, preset: str | None, seed: int | None,
               overrides=()) -> Stage2Config:
  """A new run's config, or the one `workdir/stage2` resumes (with `--set` on top)."""
  saved = stage2.read_config(workdir)
  if saved is not None:
    if seed is not None and seed != saved.seed:
      raise PnagError(f"workdir {workdir} holds a stage-2 run with seed {saved.seed}; "
                      f"--seed {seed} disagrees (omit it to resume, or use a new --workdir)")
    if preset is None:
      return config_lib.with_overrides(saved, overrides, where=f"workdir {workdir}",
                                       own=stage2.OWN_SETTINGS)
  return stage2.make_config(preset or "quick", seed=saved.seed if saved else (seed or 0),
                            overrides=overrides)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Train the stage-2 next-scale transformer prior on WORKDIR/stage1 "
                   "(frozen); with --set condition=task, conditioned on WORKDIR/surrogate's "
                   "task vectors and a target quantile; with --set condition=budget, on "
                   "parameter and FLOP counts (--set budgets=params,flops). Rerunning the "
                   "same command resumes.")
  p.epilog = ("example:\n  pnag train stage2 --workdir runs/nb201 --preset quick\n"
              "  pnag train stage2 --workdir runs/nb201 --preset quick --set condition=task\n\n"
              "config keys for --set: " + config_lib.set_keys(Stage2Config, stage2.OWN_SETTINGS)
              + "\n\n" + MAX_STEPS_HELP)
  p.add_argument("--workdir", required=True,
                 help="a run directory holding stage1/; stage 2 goes to WORKDIR/stage2")
  p.add_argument("--preset", choices=tuple(stage2.PRESETS), default=None,
                 help=config_lib.PRESET_HELP)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override one config value; repeatable")
  p.add_argument("--seed", type=int, default=None, help="seed of a new run (default: 0)")
  p.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR); "
                                    "read by --set condition=task only")


def main(args: argparse.Namespace) -> None:
  cfg = config_for(args.workdir, preset=args.preset, seed=args.seed, overrides=args.set)
  report = train_and_evaluate(cfg, args.workdir, data_dir=args.data_dir)
  acc = " ".join(f"{a:.3f}" for a in report["token_accuracy_per_scale"])
  print(f"stage2 {report['space']}: {report['steps']} steps in {report['train_seconds']:.1f} s, "
        f"held-out NLL {report['heldout_nll_per_token']:.4f}/token "
        f"({report['heldout_nll_per_arch']:.2f}/arch)")
  print(f"  teacher-forced token accuracy per scale: {acc}")
  if "condition_tasks" in report:
    print(f"  under the true task condition: held-out NLL "
          f"{report['heldout_nll_per_token_conditional']:.4f}/token, "
          f"{len(report['condition_tasks'])} tasks, "
          f"{len(report['excluded_tasks'])} excluded (the surrogate's)")
  if "budget_range" in report:
    ranges = ", ".join(f"{k} {lo:.4g} to {hi:.4g}" for k, (lo, hi) in
                       report["budget_range"].items())
    print(f"  under each arch's own budgets: held-out NLL "
          f"{report['heldout_nll_per_token_conditional']:.4f}/token; trained on {ranges}")
  print(f"  report: {Path(args.workdir) / 'stage2' / 'report.json'}")
