"""`pnag train-arch`: trains one architecture with optax; orbax checkpoints; resume.

The state is a plain dict of pure pytrees `{"model": {"params", "batch_stats"},
"opt_state"}`; one jitted step (compiled once, state donated) per batch, one checkpoint
per epoch. A rerun of the same command resumes from the last finished epoch: the batch
order of epoch e is a function of (seed, e), so nothing is repeated or skipped. As the
stages do (`training.reports`), a resumed run's report keeps every epoch's row (from
`metrics.jsonl`) and the training time of every invocation, and a rerun of a finished
run returns its report as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import pnag_jax
from pnag_jax import atomic
from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.arch_training.datasets import Dataset, load_dataset
from pnag_jax.errors import PnagError
from pnag_jax.networks import registry, stats
from pnag_jax.networks.functional import batch_stats_of, merge_pure, rng_counts_of, split_pure
from pnag_jax.spaces import get_space
from pnag_jax.stages import lineage
from pnag_jax.training import reports

STAGE = "train_arch"
EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class ArchTrainConfig:
  """What `pnag train-arch` trains, and how (SGD with Nesterov momentum and a cosine
  schedule, as NB201 and DARTS train their networks)."""

  space: str
  arch: str
  dataset: str = "digits"
  epochs: int = 30
  batch_size: int = 64
  learning_rate: float = 0.05
  momentum: float = 0.9
  weight_decay: float = 5e-4
  seed: int = 0
  network: tuple[tuple[str, object], ...] = ()   # builder kwargs, e.g. (("channels", 8),)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def make_steps(graphdef, templates, tx: optax.GradientTransformation):
  """(jitted train step, jitted eval step); each compiles once (fixed batch shapes)."""

  def train_step(state, x, y):
    def loss_fn(params):
      model = merge_pure(graphdef, templates, {**state["model"], "params": params})
      model.train()
      logits = model(x)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      # Dropout advanced its streams' counts: carried, so the next step draws anew.
      rest = {"batch_stats": batch_stats_of(model), "rng_counts": rng_counts_of(model)}
      return loss, (rest, jnp.mean(jnp.argmax(logits, -1) == y))

    (loss, (rest, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["model"]["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["model"]["params"])
    params = optax.apply_updates(state["model"]["params"], updates)
    new_state = {"model": {"params": params, **rest}, "opt_state": opt_state}
    return new_state, {"loss": loss, "accuracy": acc}

  def eval_step(model_state, x, y, mask):
    model = merge_pure(graphdef, templates, model_state)
    model.eval()
    logits = model(x)
    correct = (jnp.argmax(logits, -1) == y) & mask
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(correct), jnp.sum(jnp.where(mask, loss, 0.0)), jnp.all(
        jnp.isfinite(logits))

  return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


def evaluate(eval_step, model_state, x: np.ndarray, y: np.ndarray) -> dict:
  """Accuracy and loss over all of (x, y) in fixed-size, masked batches."""
  correct = loss = 0.0
  finite = True
  for start in range(0, len(x), EVAL_BATCH):
    xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
    k = len(xb)
    mask = np.arange(EVAL_BATCH) < k
    if k < EVAL_BATCH:
      xb = np.concatenate([xb, np.zeros((EVAL_BATCH - k,) + xb.shape[1:], xb.dtype)])
      yb = np.concatenate([yb, np.zeros((EVAL_BATCH - k,), yb.dtype)])
    c, l, f = jax.device_get(eval_step(model_state, xb, yb, mask))
    correct, loss, finite = correct + c, loss + l, finite and bool(f)
  return {"accuracy": float(correct / len(x)), "loss": float(loss / len(x)), "finite": finite}


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


def train_arch(cfg: ArchTrainConfig, workdir: str | Path, *, progress: bool = True,
               stop_after_epochs: int | None = None, dataset: Dataset | None = None) -> dict:
  """Trains `cfg.arch` and writes `workdir/report.json` (test accuracy and more).

  `stop_after_epochs` ends the run early as a kill would (tests use it for resume).
  """
  if cfg.epochs < 1 or cfg.batch_size < 1:
    raise PnagError(f"epochs and batch size must be positive, got {cfg.epochs}, "
                    f"{cfg.batch_size}")
  config_lib.check_learning_rate(cfg.learning_rate, "--lr")
  config_lib.check_seed(cfg.seed, "--seed")
  space = get_space(cfg.space)
  genes = space.from_string(cfg.arch)
  ops, adj = space.encode(genes)
  if not bool(registry.buildable(space, ops, adj)):
    raise PnagError(f"{cfg.space} architecture is not a network of the space: "
                    f"{cfg.arch[:120]}")
  net_kw = dict(cfg.network)
  ds = dataset or load_dataset(cfg.dataset, min_size=registry.min_input_size(cfg.space))
  if len(ds.x_train) < cfg.batch_size:
    raise PnagError(f"batch size {cfg.batch_size} exceeds the {len(ds.x_train)} training images")
  key = jax.random.key(cfg.seed)
  model = registry.build_network(cfg.space, genes, input_shape=ds.input_shape,
                                 num_classes=ds.num_classes,
                                 rngs=nnx.Rngs(params=jax.random.fold_in(key, 0),
                                               dropout=jax.random.fold_in(key, 1)), **net_kw)
  num_params = stats.count_params(model)
  flops = stats.forward_flops(model, ds.input_shape)
  graphdef, model_state, templates = split_pure(model)
  steps_per_epoch = len(ds.x_train) // cfg.batch_size  # drop the ragged tail: fixed shapes
  total = cfg.epochs * steps_per_epoch
  schedule = optax.cosine_decay_schedule(cfg.learning_rate, total)
  tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                   optax.sgd(schedule, momentum=cfg.momentum, nesterov=True))
  state = {"model": model_state, "opt_state": tx.init(model_state["params"])}
  train_step, eval_step = make_steps(graphdef, templates, tx)
  workdir = Path(workdir)
  meta = {"stage": STAGE, "space": cfg.space, "config": json.loads(cfg.to_json()),
          "version": pnag_jax.__version__}

  with ckpt_lib.StageCheckpointer(workdir, STAGE, max_to_keep=2) as ckpt, \
       contextlib.ExitStack() as log_stack:
    start, seconds_before = 0, 0.0
    if ckpt.latest_step() is not None:
      saved = ckpt.read_meta()
      where = f"workdir {workdir}"
      ckpt_lib.check_meta(saved, {"stage": STAGE, "space": cfg.space}, where=where)
      # Setting by setting, so the message names the one that changed (e.g. --epochs).
      lineage.check_frozen(saved, dataclasses.asdict(cfg), ArchTrainConfig, where=where)
      start = ckpt.latest_step()
      done, seconds_before = reports.resumed(saved, workdir, start, cfg.epochs,
                                             cfg.to_json(), steps_key="epochs")
      if done is not None:
        return done
      try:
        params, opt_state, _, _ = ckpt.restore(params_template=state["model"],
                                               opt_state_template=state["opt_state"])
      except ckpt_lib.CheckpointError:
        # Checkpoints from before the random streams' counts were state have none:
        # restored without them, the streams restart (as they then did every step).
        fresh = state["model"]["rng_counts"]
        params, opt_state, _, _ = ckpt.restore(
            params_template={k: v for k, v in state["model"].items() if k != "rng_counts"},
            opt_state_template=state["opt_state"])
        params = {**params, "rng_counts": fresh}
      state = {"model": params, "opt_state": opt_state}
    if start:  # resumed: it may have no epoch left to write it after
      atomic.write_text(workdir / "config.json", cfg.to_json())
    end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    log = None
    t0 = time.perf_counter()
    # The report's time is the last checkpoint's, which a rerun that measures anew reads
    # back: the final save and what follows it are no training.
    seconds = seconds_before
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start * steps_per_epoch,
               disable=not progress, desc=f"train {cfg.space}", unit="step",
               dynamic_ncols=True)
    for epoch in range(start, end):
      order = epoch_order(cfg.seed, epoch, len(ds.x_train))
      metrics = []
      for i in range(steps_per_epoch):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        state, m = train_step(state, ds.x_train[idx], ds.y_train[idx])
        metrics.append(m)
        bar.update()
      m = jax.device_get(metrics)
      row = {"epoch": epoch + 1, "train_loss": float(np.mean([x["loss"] for x in m])),
             "train_accuracy": float(np.mean([x["accuracy"] for x in m]))}
      if not math.isfinite(row["train_loss"]):
        raise PnagError(f"training diverged at epoch {epoch + 1} (loss {row['train_loss']})")
      bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_accuracy']:.3f}")
      if log is None:
        # Opened at the first epoch that trained: a fresh run that diverged in it
        # leaves no log of a run that never was.
        log = log_stack.enter_context(reports.open_metrics(workdir, start))
      log.write(json.dumps({"step": epoch + 1, "split": "train", **row}) + "\n")
      log.flush()
      seconds = seconds_before + time.perf_counter() - t0
      ckpt.save(epoch + 1, state["model"], state["opt_state"], key,
                {**meta, "train_seconds": seconds}, force=True)
      if epoch == 0:
        # Only now: a fresh run that fails first (it diverged) leaves no config of a run
        # that never was, and the checkpointer takes back the empty folders it made.
        atomic.write_text(workdir / "config.json", cfg.to_json())
    bar.close()
    log_stack.close()
    ckpt.wait_until_finished()
    if end < cfg.epochs:
      return {"epochs": end, "stopped_early": True}
    test = evaluate(eval_step, state["model"], ds.x_test, ds.y_test)
    # Every invocation's epochs; rows of epochs trained again were moved aside. Empty
    # where no invocation of this version trained an epoch (the log is opened only then).
    history = [{k: v for k, v in r.items() if k not in ("step", "split")}
               for r in reports.read_metrics(workdir) if r.get("split") == "train"]
    report = {
        "space": cfg.space, "arch": cfg.arch, "dataset": cfg.dataset,
        "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "num_classes": ds.num_classes, "num_train": int(len(ds.x_train)),
        "num_test": int(len(ds.x_test)), "input_shape": list(ds.input_shape),
        "epochs": cfg.epochs, "resumed_from_epoch": start, "train_seconds": seconds,
        "params": num_params, "flops_per_example": flops, "history": history,
        "device": str(jax.devices()[0]),
    }
    reports.write_report(workdir, report)
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Train one architecture's network on real data (SGD, Nesterov momentum, "
                   "cosine schedule), with orbax checkpoints per epoch; rerunning resumes.")
  p.epilog = ("example:\n  pnag train-arch --space nb201 --arch "
              "'|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
              "nor_conv_3x3~1|nor_conv_1x1~2|' --dataset digits --epochs 15 "
              "--workdir runs/arch1")
  p.add_argument("--space", required=True, help="the architecture's search space")
  p.add_argument("--arch", required=True, help="the native architecture string")
  p.add_argument("--dataset", default="digits",
                 help="digits (scikit-learn's) | npz:PATH | cifar10:DIR (the python pickles)")
  p.add_argument("--epochs", type=int, default=30, help="training epochs")
  p.add_argument("--batch-size", type=int, default=64, help="training batch size")
  p.add_argument("--lr", type=float, default=0.05, help="peak learning rate (cosine decay)")
  p.add_argument("--seed", type=int, default=0, help="seed of init and batch order")
  p.add_argument("--workdir", required=True, help="run directory (report.json, checkpoints)")


def main(args: argparse.Namespace) -> None:
  get_space(args.space)
  cfg = ArchTrainConfig(space=args.space, arch=args.arch, dataset=args.dataset,
                        epochs=args.epochs, batch_size=args.batch_size,
                        learning_rate=args.lr, seed=args.seed)
  r = train_arch(cfg, args.workdir)
  print(f"{r['space']} on {r['dataset']}: test accuracy {100 * r['test_accuracy']:.2f}% after "
        f"{r['epochs']} epochs ({r['train_seconds']:.1f} s); {r['params']:,} params, "
        f"{r['flops_per_example'] / 1e6:.1f} MFLOPs/example")
  print(f"  report: {Path(args.workdir) / 'report.json'}")
