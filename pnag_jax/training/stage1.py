"""Stage-1 training: optax AdamW over the VQ-VAE, orbax checkpoints, automatic resume.

State is a plain dict `{"params", "opt_state"}` of pure pytrees (big_vision style).
One jitted step, compiled once, donates the state. Everything that varies per step
is derived from (seed, step): the batch order and the sampling key, so a run killed
after k steps and resumed is bit-identical to one that never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import pnag_jax
from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.configs.stage1 import Stage1Config
from pnag_jax.data.splits import nb201_split
from pnag_jax.errors import PnagError
from pnag_jax.models import vqvae
from pnag_jax.spaces import get_space, nb201
from pnag_jax.spaces.base import SearchSpace

STAGE = "stage1"
EVAL_CHUNK = 1024


# ---- data --------------------------------------------------------------------


def make_datasets(space: SearchSpace, cfg: Stage1Config) -> tuple[np.ndarray, np.ndarray]:
  """(train genes, held-out genes), host int32 arrays.

  NB201: the seeded 50/50 split of all 15,625 cells (the held-out half is also the
  novelty reference's complement). Other spaces: `train_size` + `heldout_size`
  distinct uniform samples, held-out disjoint from train.
  """
  if space.name == "nb201":
    train, heldout = nb201_split(seed=cfg.seed)
    return nb201.genes_of_code(train), nb201.genes_of_code(heldout)
  want = cfg.train_size + cfg.heldout_size
  key = jax.random.fold_in(jax.random.key(cfg.seed), 0x5EED)
  genes = np.asarray(jax.jit(space.sample, static_argnums=1)(key, int(want * 1.05) + 64))
  keys = np.asarray(jax.jit(space.exact_key)(genes))
  _, first = np.unique(keys, axis=0, return_index=True)
  genes = genes[np.sort(first)]  # distinct, in sampling order
  if genes.shape[0] < want:
    raise PnagError(f"{space.name}: only {genes.shape[0]} distinct samples for {want} wanted")
  return genes[:cfg.train_size], genes[cfg.train_size:want]


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
  """Row indices of step `step`: a fresh permutation per epoch, from (seed, epoch)."""
  per_epoch = n // batch_size  # drop the ragged tail: fixed shapes, one compile
  epoch, i = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  return perm[i * batch_size:(i + 1) * batch_size]


def num_steps(cfg: Stage1Config, n_train: int) -> int:
  total = cfg.epochs * (n_train // cfg.batch_size)
  return min(total, cfg.max_steps) if cfg.max_steps > 0 else total


# ---- model and state ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage1Model:
  """What is static about a model: space, config, graphdef and a state template."""

  space: SearchSpace
  cfg: Stage1Config
  graphdef: nnx.GraphDef
  template: nnx.State
  scales: tuple[int, ...]

  def merge(self, params: dict) -> vqvae.VQVAE:
    state = jax.tree.map(lambda x: x, self.template)  # fresh copy; filled in place below
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(self.graphdef, state)


def build_model(space: SearchSpace, cfg: Stage1Config) -> tuple[Stage1Model, dict]:
  """(static model, initial params as a pure dict)."""
  model = vqvae.VQVAE(space, cfg, rngs=nnx.Rngs(params=jax.random.fold_in(
      jax.random.key(cfg.seed), 1)))
  graphdef, state = nnx.split(model)
  return Stage1Model(space, cfg, graphdef, state, model.scales), nnx.to_pure_dict(state)


def make_optimizer(cfg: Stage1Config, total_steps: int) -> optax.GradientTransformation:
  if cfg.warmup_steps > 0:
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, cfg.warmup_steps,
                                            max(total_steps, cfg.warmup_steps + 1))
  else:
    lr = cfg.learning_rate  # the paper preset: a constant 1e-4
  return optax.adamw(lr, weight_decay=cfg.weight_decay)


def make_train_step(m: Stage1Model, tx: optax.GradientTransformation):
  """The jitted step `(state, genes, key, step) -> (state, metrics)`; compiles once."""
  # chex keys trace counts on the definition site, not the closure, so a second run
  # in the same process would count against this one's budget: start from zero.
  chex.clear_trace_counter()

  @chex.assert_max_traces(n=1)
  def step_fn(state, genes, key, step):
    ops, adj = m.space.encode(genes)

    def loss(params):
      return vqvae.loss_fn(m.merge(params), m.cfg, ops, adj, jax.random.fold_in(key, step))

    (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return {"params": params, "opt_state": opt_state}, metrics

  return jax.jit(step_fn, donate_argnums=0)


# ---- evaluation ----------------------------------------------------------------------


def make_eval_fn(m: Stage1Model):
  """Per chunk: exact match, per-step strict validity and prefix error, code indices."""

  def eval_chunk(params, genes):
    model = m.merge(params)
    ops, adj = m.space.encode(genes)
    p_ops, p_adj, out, mu = vqvae.reconstruct(model, ops, adj)
    exact = jnp.all(p_ops[-1] == ops, -1) & jnp.all(p_adj[-1] == adj, (-2, -1))
    step_valid = m.space.strict_valid(p_ops, p_adj)                     # [T, B]
    prefix_err = jnp.mean((out.prefixes - mu[None]) ** 2, axis=(2, 3, 4))  # [T, B]
    return exact, step_valid, prefix_err, out.indices

  return jax.jit(eval_chunk)


def evaluate(m: Stage1Model, eval_fn, params: dict, genes: np.ndarray) -> dict:
  """Fixed-size chunks (the tail padded and masked) so nothing recompiles."""
  n = genes.shape[0]
  exact, valid, err = [], [], []
  counts = [np.zeros(m.cfg.codebook_size, np.int64) for _ in m.scales]
  for start in range(0, n, EVAL_CHUNK):
    chunk = genes[start:start + EVAL_CHUNK]
    k = chunk.shape[0]
    if k < EVAL_CHUNK:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], EVAL_CHUNK - k, 0)])
    e, v, r, idx = jax.device_get(eval_fn(params, chunk))
    exact.append(e[:k])
    valid.append(v[:, :k])
    err.append(r[:, :k])
    for t, it in enumerate(idx):
      counts[t] += np.bincount(it[:k].reshape(-1), minlength=m.cfg.codebook_size)
  valid, err = np.concatenate(valid, 1), np.concatenate(err, 1)
  perplexity = []
  for c in counts:
    p = c / c.sum()
    perplexity.append(float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))))
  return {
      "exact_match": float(np.concatenate(exact).mean()),
      "step_validity": valid.mean(1).tolist(),
      "prefix_error": err.mean(1).tolist(),
      "codebook_perplexity": perplexity,
  }


# ---- the loop ------------------------------------------------------------------------


def train_and_evaluate(cfg: Stage1Config, workdir: str | Path, *, progress: bool = True,
                       stop_after: int | None = None) -> dict:
  """Trains (resuming from the latest checkpoint) and writes the stage-1 outputs.

  Writes `workdir/stage1/{config.json, metrics.jsonl, report.json, checkpoints/}`.
  `stop_after` ends the run early after that many total steps, as a kill would
  (tests use it to check resume); no report is written then.
  """
  space = get_space(cfg.space)
  out_dir = Path(workdir) / STAGE
  out_dir.mkdir(parents=True, exist_ok=True)
  train, heldout = make_datasets(space, cfg)
  total = num_steps(cfg, train.shape[0])
  if total <= 0:
    raise PnagError(f"no training steps: {train.shape[0]} archs at batch {cfg.batch_size}")
  m, params = build_model(space, cfg)
  tx = make_optimizer(cfg, total)
  state = {"params": params, "opt_state": tx.init(params)}
  base_key = jax.random.fold_in(jax.random.key(cfg.seed), 2)
  meta = {"stage": STAGE, "space": space.name, "config": json.loads(cfg.to_json()),
          "version": pnag_jax.__version__}

  with ckpt_lib.StageCheckpointer(workdir, STAGE, max_to_keep=2,
                                  save_interval_steps=1) as ckpt:
    start = 0
    if ckpt.latest_step() is not None:
      ckpt_lib.check_meta(ckpt.read_meta(), {"space": space.name, "stage": STAGE},
                          where=f"workdir {workdir}")
      params, opt_state, base_key, _ = ckpt.restore(
          params_template=state["params"], opt_state_template=state["opt_state"])
      state = {"params": params, "opt_state": opt_state}
      start = ckpt.latest_step()
    (out_dir / "config.json").write_text(cfg.to_json())

    step_fn = make_train_step(m, tx)
    eval_fn = make_eval_fn(m)
    end = total if stop_after is None else min(total, stop_after)
    t0 = time.perf_counter()
    bar = tqdm(range(start, end), initial=start, total=total, disable=not progress,
               desc=f"stage1 {space.name}", dynamic_ncols=True)
    with (out_dir / "metrics.jsonl").open("a") as log:
      for step in bar:
        genes = train[batch_indices(cfg.seed, step, train.shape[0], cfg.batch_size)]
        state, metrics = step_fn(state, genes, base_key, step)
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
          row = {k: float(v) for k, v in jax.device_get(metrics).items()}
          bar.set_postfix(loss=f"{row['loss']:.4f}", exact=f"{row['exact']:.3f}")
          log.write(json.dumps({"step": done, "split": "train", **row}) + "\n")
        if done % cfg.eval_every == 0 and done != total:
          ev = evaluate(m, eval_fn, state["params"], heldout[:EVAL_CHUNK * 2])
          log.write(json.dumps({"step": done, "split": "heldout", **ev}) + "\n")
        if done % cfg.checkpoint_every == 0 or done == end:
          ckpt.save(done, state["params"], state["opt_state"], base_key, meta, force=True)
        log.flush()
    train_seconds = time.perf_counter() - t0
    ckpt.wait_until_finished()
    if end < total:
      return {"steps": end, "stopped_early": True}

  held = evaluate(m, eval_fn, state["params"], heldout)
  tr = evaluate(m, eval_fn, state["params"], train[:len(heldout)])
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
      "scales": list(m.scales),
      "num_train": int(train.shape[0]),
      "num_heldout": int(heldout.shape[0]),
      "device": str(jax.devices()[0]),
  }
  with (out_dir / "metrics.jsonl").open("a") as log:
    log.write(json.dumps({"step": total, "split": "final", **report}) + "\n")
  tmp = out_dir / "report.json.tmp"
  tmp.write_text(json.dumps(report, indent=2))
  tmp.replace(out_dir / "report.json")
  return report
