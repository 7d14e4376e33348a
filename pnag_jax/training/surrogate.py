"""Stage-3 meta-training: episodes over tasks, optax AdamW, orbax checkpoints, resume.

  pnag train surrogate --workdir runs/nb201 --space nb201 --exclude 'cifar10(?!0)'

An episode is one training task (or, with `task_mix`, an interpolation of two), K
references drawn uniformly (K ~ U{k_min..k_max}, or log-uniform with
`k_sampling=log`; the references themselves uniform, as a user measures them) and Q
queries: half drawn uniformly, a quarter from each tail (the task's best and worst
`tail_share`, 2%), because picking the best arch needs the top of the ranking right,
and uniform queries almost never reach it. The loss is ListNet (listwise ranking, a
low-temperature target on the queries' scores) plus a Huber regression on the scores
standardised by the references, which is the unit predictions are in.

Tasks matching `--exclude` are never read: they are dropped by name before any data
is loaded (`tasks.select_tasks`), and their names are frozen into every checkpoint,
so a resume with other exclusions is an error rather than a leak. Batches come from
(seed, step) alone, so a run killed and resumed is bit-identical to one that was not.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats
from tqdm.auto import tqdm

from pnag_jax import atomic
from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax import tasks as tasks_lib
from pnag_jax.data import DATA_DIR_HELP
from pnag_jax.errors import PnagError
from pnag_jax.models import linear_prior as linear_lib
from pnag_jax.spaces import SPACE_NAMES, get_space
from pnag_jax.stages import lineage
from pnag_jax.stages import surrogate as stage
from pnag_jax.stages.surrogate import SurrogateConfig, SurrogateModel
from pnag_jax.training import reports

# What `report.json` gives per K on the validation tasks (`<metric>_by_k`).
METRICS = ("spearman", "kendall", "top1_quantile", "top10_quantile")
# Fraction of a task, at its best end, that `fed_back_refs` episodes' last references
# are drawn from: where a feedback walk's picks land (`guidance/feedback.py`).
FED_BACK_TOP = 0.05


class TaskArrays(NamedTuple):
  """One task's data, with its scores' order precomputed for the tail queries."""

  name: str
  family: str
  genes: np.ndarray     # int32[n, G]
  scores: np.ndarray    # float32[n]
  order: np.ndarray     # argsort of scores
  minimize: bool


def task_arrays(task) -> TaskArrays:
  """A `tasks.Task`'s data as the episodes and the validation read it."""
  data = task.data()
  scores = np.asarray(data.scores, np.float32)
  return TaskArrays(task.name, task.family, np.asarray(data.genes, np.int32), scores,
                    np.argsort(scores, kind="stable"), bool(task.minimize))


def split_tasks(cfg: SurrogateConfig, tasks: dict) -> tuple[list[str], list[str], list[str]]:
  """(train names, validation names, excluded names); reads no task's data.

  Validation tasks are a seeded draw from the allowed ones, held out of meta-training
  so `report.json` measures transfer to tasks the model never saw.
  """
  kept, excluded = tasks_lib.select_tasks(tasks, cfg.exclude)
  # A formula task lists scores only where the space can be enumerated (NB201's params
  # and flops); elsewhere (MBV3's ofa_acc) it scores any arch but lists none to learn.
  enumerable = get_space(cfg.space).enumerable
  names = sorted(n for n, t in kept.items() if enumerable or not t.is_function)
  if len(names) < cfg.num_val_tasks + 2:
    listed = "" if enumerable else " that list scores (a formula task lists none here)"
    raise PnagError(f"space {cfg.space!r} has {len(names)} allowed task(s){listed}; "
                    f"meta-training needs at least {cfg.num_val_tasks + 2} (2 + num_val_tasks)")
  perm = np.random.default_rng([cfg.seed, 7]).permutation(len(names))
  val = sorted(names[i] for i in perm[:cfg.num_val_tasks])
  train = [n for n in names if n not in val]
  return train, val, sorted(excluded)


def family_members(tasks: list[TaskArrays]) -> list[list[int]]:
  """Indices of `tasks` per family, families in name order (fixed for a run)."""
  families = sorted({t.family for t in tasks})
  return [[i for i, t in enumerate(tasks) if t.family == f] for f in families]


def mix_partners(tasks: list[TaskArrays]) -> list[list[int]]:
  """Per task, the indices of the tasks it may be interpolated with (`task_mix`).

  A partner is of the same family and direction and scores the same archs in the same
  order, so the two score vectors can be mixed element by element.
  """
  return [[j for j, b in enumerate(tasks)
           if j != i and b.family == a.family and b.minimize == a.minimize
           and np.array_equal(b.genes, a.genes)]
          for i, a in enumerate(tasks)]


class MixTables(NamedTuple):
  """What `task_mix` episodes read, computed once per run (`mix_tables`)."""

  partners: list[list[int]]  # `mix_partners`
  # Each task's scores standardised over its whole table, so that neither task's unit
  # (% against ms) sets a mix; an episode standardises the mix again by its references.
  z: list[np.ndarray]


def mix_tables(tasks: list[TaskArrays]) -> MixTables:
  def z(t):
    s = t.scores.astype(np.float64)
    return (s - s.mean()) / (s.std() + 1e-12)

  return MixTables(mix_partners(tasks), [z(t) for t in tasks])


def mixed_task(tasks: list[TaskArrays], tables: MixTables, i: int, j: int,
               lam: float) -> TaskArrays:
  """`lam` of task `i` and `1 - lam` of task `j`, both standardised over their tables."""
  a, b = tasks[i], tasks[j]
  scores = (lam * tables.z[i] + (1.0 - lam) * tables.z[j]).astype(np.float32)
  return TaskArrays(f"{a.name}+{b.name}", a.family, a.genes, scores,
                    np.argsort(scores, kind="stable"), a.minimize)


def draw_ks(cfg: SurrogateConfig, rng: np.random.Generator, b: int) -> np.ndarray:
  """Each episode's number of references, in k_min..k_max."""
  if cfg.k_sampling == "uniform":
    return rng.integers(cfg.k_min, cfg.k_max + 1, b)
  u = rng.uniform(np.log(cfg.k_min), np.log(cfg.k_max + 1), b)
  # The clip only guards float rounding at either end (exp(ln 5) < 5).
  return np.clip(np.floor(np.exp(u)).astype(np.int64), cfg.k_min, cfg.k_max)


def episode_batch(cfg: SurrogateConfig, tasks: list[TaskArrays], members: list[list[int]],
                  step: int, mixing: MixTables | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(genes int32[B, K_max+Q, G], scores float32[B, K_max+Q], ref mask bool[B, K_max]).

  `members` is `family_members(tasks)` and `mixing` `mix_tables(tasks)` (needed only
  when `task_mix` > 0), both computed once per run.
  """
  rng = np.random.default_rng([cfg.seed, 11, step])
  b, kmax, q = cfg.episodes, cfg.k_max, cfg.queries
  q_uniform = q - 2 * (q // 4)
  idx = np.empty((b, kmax + q), np.int64)
  if cfg.task_sampling == "family":
    # A family with many columns (19 latencies, 22 FGSM strengths) would otherwise take
    # most episodes: draw a family, then one of its tasks.
    which = np.array([members[f][rng.integers(0, len(members[f]))]
                      for f in rng.integers(0, len(members), b)])
  else:
    which = rng.integers(0, len(tasks), b)
  ks = draw_ks(cfg, rng, b)
  episode_tasks = [tasks[t] for t in which]
  if cfg.task_mix:
    # Drawn only when the option is on, so that without it the stream is the one before.
    if mixing is None:
      raise ValueError("episode_batch: task_mix > 0 needs mixing=mix_tables(tasks)")
    mix, lams = rng.random(b) < cfg.task_mix, rng.uniform(0.0, 1.0, b)
    for e, t in enumerate(which):
      partners = mixing.partners[t]
      if mix[e] and partners:
        other = partners[rng.integers(0, len(partners))]
        episode_tasks[e] = mixed_task(tasks, mixing, t, other, float(lams[e]))
  for e, task in enumerate(episode_tasks):
    n = task.scores.shape[0]
    tail = max(1, int(np.ceil(cfg.tail_share * n)))
    idx[e, :kmax + q_uniform] = rng.choice(n, kmax + q_uniform, replace=n < kmax + q_uniform)
    idx[e, kmax + q_uniform:] = np.concatenate([
        task.order[rng.integers(0, tail, q // 4)],
        task.order[n - 1 - rng.integers(0, tail, q // 4)]])
    if cfg.fed_back_refs and rng.random() < cfg.fed_back_refs:
      # The last m of the K references replaced, as a walk's picks: distinct archs from
      # the task's best end. None may be another reference or a query: a walk never
      # scores a reference, and a query among the references would hand the ridge fit
      # and the task encoder the very score the loss asks for.
      m = int(rng.integers(1, ks[e] + 1))
      top = max(1, int(np.ceil(FED_BACK_TOP * n)))
      best_end = task.order[:top] if task.minimize else task.order[::-1][:top]
      while True:
        free = best_end[~np.isin(best_end, np.concatenate([idx[e, :ks[e] - m], idx[e, kmax:]]))]
        if free.size >= m:
          break
        # A small task's best end (NB201's validation accuracies: 37 archs) can hold
        # fewer free archs than m: more uniform references stay, and they too are taken.
        m = free.size
      idx[e, ks[e] - m:ks[e]] = rng.choice(free, m, replace=False)
  genes = np.stack([t.genes[i] for t, i in zip(episode_tasks, idx)])
  scores = np.stack([t.scores[i] for t, i in zip(episode_tasks, idx)])
  return genes, scores, np.arange(kmax)[None, :] < ks[:, None]


# ---- the step ----------------------------------------------------------------------


class LossSettings(NamedTuple):
  rank_weight: float
  rank_temperature: float
  reg_weight: float
  rank_target: str = "score"

  @classmethod
  def of(cls, cfg: SurrogateConfig) -> "LossSettings":
    """`rank_temperature` here is in the target's unit: places, or stds for "score"."""
    temperature = cfg.rank_temperature if cfg.rank_target == "rank" else cfg.score_temperature
    return cls(cfg.rank_weight, temperature, cfg.reg_weight, cfg.rank_target)


class OptimizerSettings(NamedTuple):
  learning_rate: float
  weight_decay: float
  warmup_steps: int
  total_steps: int
  ema_decay: float = 0.0

  @classmethod
  def of(cls, cfg: SurrogateConfig, total_steps: int | None = None) -> "OptimizerSettings":
    return cls(cfg.learning_rate, cfg.weight_decay, cfg.warmup_steps,
               cfg.steps if total_steps is None else total_steps, cfg.ema_decay)


def init_state(params: dict, opt: OptimizerSettings) -> dict:
  """`params` are trained; `ema`, their moving average, is what is saved and served."""
  return {"params": params, "opt_state": make_optimizer(opt).init(params),
          "ema": jax.tree.map(jnp.copy, params)}


def make_optimizer(opt: OptimizerSettings) -> optax.GradientTransformation:
  lr = optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, max(opt.warmup_steps, 1),
                                          max(opt.total_steps, opt.warmup_steps + 1))
  return optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(lr, weight_decay=opt.weight_decay))


def episode_losses(net, space, genes, scores, mask, loss: LossSettings, qmask=None):
  """Per-episode (ListNet, Huber) of a batch; `net` a `Surrogate` module.

  `genes int[B, K + Q, G]` and `scores float[B, K + Q]` hold each episode's K references
  (`mask bool[B, K]` marks the real ones) and then its Q queries. `qmask bool[B, Q]` marks
  the real queries where the caller padded them (adaptation pads K to a power of two);
  `None`, every query is real.
  """
  b, m, g = genes.shape
  kmax = mask.shape[1]
  emb = net.embed(space, genes.reshape(b * m, g)).reshape(b, m, -1)
  # `qmask=None` (a pytree without leaves) reaches `_episode` as it is.
  return jax.vmap(functools.partial(_episode, net, loss))(
      emb[:, :kmax], emb[:, kmax:], scores[:, :kmax], scores[:, kmax:], mask, qmask)


def _episode(net, loss: LossSettings, ref_emb, q_emb, ref_s, q_s, mask, qmask):
  """`episode_losses` of one episode, over its `qmask`ed queries (all, if `None`)."""
  ref_z, mean, std, task = net.encode_task(ref_emb, ref_s, mask)
  pred = net.head(q_emb, ref_emb, ref_z, mask, task)
  if qmask is None:
    # Meta-training's episodes have no padded query. No masking op enters its step:
    # a where() or a weighted mean changes float rounding, and over 2,000 steps that
    # is another surrogate than the one the reports were measured on.
    real, mean_of, std_of = (lambda x, fill: x), jnp.mean, jnp.std
  else:
    w = qmask.astype(pred.dtype)
    # A finite fill, not -inf: exp underflows to exactly 0, and 0 * log p stays 0.
    real = lambda x, fill: jnp.where(qmask, x, fill)  # pylint: disable=unnecessary-lambda-assignment
    mean_of = lambda x: (x * w).sum() / jnp.maximum(w.sum(), 1.0)  # pylint: disable=unnecessary-lambda-assignment
    std_of = lambda x: jnp.sqrt(mean_of((x - mean_of(x)) ** 2))  # pylint: disable=unnecessary-lambda-assignment
  floor = jnp.finfo(pred.dtype).min / 4
  # The ranking target is scale-free: the queries standardised among themselves.
  # Two-sided: the model does not know the task's direction, and the best archs sit
  # at the top for accuracy and at the bottom for latency; both ends must be sharp.
  listnet = 0.0
  for sign in (1.0, -1.0):
    if loss.rank_target == "rank":
      # Target mass by place, not by score: the queries' scores near the top differ
      # by hundredths of a std, and a score-based target would treat them as equal.
      better = jnp.sum(real(sign * q_s[None, :] > sign * q_s[:, None], False), axis=1)
      target = jax.nn.softmax(real(-better / loss.rank_temperature, floor))
    else:
      q_z = (q_s - mean_of(q_s)) / (std_of(q_s) + 1e-6)
      target = jax.nn.softmax(real(sign * q_z / loss.rank_temperature, floor))
    log_p = jax.nn.log_softmax(real(sign * pred, floor))
    listnet += -jnp.sum(real(target * log_p, 0.0)) / 2
  # A few references can have a tiny spread; clipping keeps their targets finite
  # without letting them dominate the batch.
  return listnet, mean_of(optax.huber_loss(pred, jnp.clip((q_s - mean) / std, -5.0, 5.0)))


@functools.partial(jax.jit, static_argnames=("model", "loss", "opt"), donate_argnums=0)
def train_step(state: dict, genes: jax.Array, scores: jax.Array, mask: jax.Array,
               qmask: jax.Array | None = None, *, model: SurrogateModel,
               loss: LossSettings, opt: OptimizerSettings) -> tuple[dict, dict]:
  def objective(params):
    listnet, reg = episode_losses(model.merge(params), model.space, genes, scores, mask,
                                  loss, qmask)
    total = loss.rank_weight * listnet.mean() + loss.reg_weight * reg.mean()
    return total, {"loss": total, "listnet": listnet.mean(), "huber": reg.mean()}

  (_, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
  updates, opt_state = make_optimizer(opt).update(grads, state["opt_state"], state["params"])
  metrics["grad_norm"] = optax.tree.norm(grads)
  params = optax.apply_updates(state["params"], updates)
  # The top of a ranking flips with every step's noise; the average of the last few
  # hundred steps' weights picks the same best archs run after run.
  ema = optax.incremental_update(params, state["ema"], 1.0 - opt.ema_decay)
  return {"params": params, "opt_state": opt_state, "ema": ema}, metrics


# ---- evaluation ----------------------------------------------------------------------


# The first picks a user would train: the `top10_quantile` metric reads the best of them.
FIRST_PICKS = 10


def pick_quantiles(pred: np.ndarray, scores: np.ndarray, refs: np.ndarray, *,
                   minimize: bool) -> tuple[float, float]:
  """(top-1, top-10) quantiles of the archs a user would train next, in predicted order.

  Each is the share of the task's archs that are no better than the pick (the best
  of the first `FIRST_PICKS` for top-10), so the task's optimum scores 1.0. References
  are already trained, so they are never picked. Spearman weighs every arch alike; a
  user trains only the first few, and a predictor can rank well overall yet pick badly.
  """
  if len(np.unique(refs)) >= len(scores):
    return float("nan"), float("nan")  # every arch is already trained: nothing to pick
  sign = -1.0 if minimize else 1.0
  truth = sign * scores.astype(np.float64)
  ranked = sign * pred.astype(np.float64)
  ranked[refs] = -np.inf
  # NaN predictions sort last, as a pick never trained.
  ranked = np.where(np.isnan(ranked), -np.inf, ranked)
  order = np.argsort(-ranked, kind="stable")[:FIRST_PICKS]
  first, best = truth[order[0]], truth[order].max()
  return float(np.mean(truth <= first)), float(np.mean(truth <= best))


def rank_metrics(bind, task: TaskArrays, ks: tuple[int, ...], *, seed: int,
                 num_archs: int, repeats: int) -> dict[int, dict[str, float]]:
  """Rank correlations and pick quantiles of predictions, per K, mean over repeats.

  `bind(ref_genes, ref_scores)` makes the predictor (the network's, or the linear
  prior's). References are drawn uniformly (as a user measures them). Spearman and
  Kendall are over a fixed seeded sample of the task's archs; the pick quantiles
  (`pick_quantiles`) rank every arch of the task, as guided generation does.
  """
  salt = zlib.crc32(task.name.encode())
  rng = np.random.default_rng([seed, salt])
  n = task.scores.shape[0]
  q = rng.choice(n, min(num_archs, n), replace=False)
  out = {}
  for k in ks:
    rows = []
    for r in range(repeats):
      refs = np.random.default_rng([seed, salt, k, r]).choice(n, min(k, n), replace=False)
      pred = np.asarray(bind(task.genes[refs], task.scores[refs]).scores(task.genes))
      top1, top10 = pick_quantiles(pred, task.scores, refs, minimize=task.minimize)
      rows.append((scipy.stats.spearmanr(pred[q], task.scores[q]).statistic,
                   scipy.stats.kendalltau(pred[q], task.scores[q]).statistic, top1, top10))
    out[k] = dict(zip(METRICS, map(float, np.nanmean(np.array(rows, np.float64), axis=0))))
  return out


def evaluate(cfg: SurrogateConfig, bind, val: list[TaskArrays]) -> dict:
  """`rank_metrics` of `bind`'s predictors on the validation tasks, per task and K."""
  per_task = {t.name: rank_metrics(bind, t, cfg.eval_ks, seed=cfg.seed,
                                   num_archs=cfg.eval_archs, repeats=cfg.eval_repeats)
              for t in val}
  by_k = {k: {m: float(np.mean([per_task[t][k][m] for t in per_task])) for m in METRICS}
          for k in cfg.eval_ks}
  return {"by_k": by_k, "per_task": per_task}


def _report_by_k(ev: dict) -> dict:
  return {f"{m}_by_k": {str(k): v[m] for k, v in ev["by_k"].items()} for m in METRICS}


def _linear_report(cfg: SurrogateConfig, space, workdir, excluded: list[str],
                   val: list[TaskArrays]) -> dict | None:
  """`report.json`'s `linear_prior`: the validation through the linear prior, if any."""
  prior = stage.load_linear_prior(workdir, space, excluded)
  if prior is None:
    return None
  return {"tasks": int(prior["tasks"]), **_report_by_k(evaluate(
      cfg, functools.partial(stage.linear_predictor, space, prior), val))}


# ---- the loop ------------------------------------------------------------------------


def train_and_evaluate(cfg: SurrogateConfig, workdir: str | Path, *, data_dir=None,
                       tasks: dict | None = None, progress: bool = True,
                       stop_after: int | None = None) -> dict:
  """Meta-trains (resuming from the latest checkpoint) into `workdir/surrogate`.

  `tasks` (name -> `tasks.Task`) defaults to the space's built-in tasks; tests pass
  their own to prove that excluded ones are never loaded. A run already finished with
  this config returns its report as it is (`reports.finished`), after refitting a
  missing linear prior (and then only the prior's figures are measured again).
  """
  space = get_space(cfg.space)
  if tasks is None:
    tasks = tasks_lib.builtin_tasks(space.name, data_dir)
    # Without them only the formula tasks (params, flops) are left, and split_tasks
    # would only say that too few tasks are allowed.
    tasks_lib.require_tables(tasks, f"meta-training on {space.name}")
  train_names, val_names, excluded = split_tasks(cfg, tasks)
  frozen = {**cfg.frozen(), "excluded_tasks": tuple(excluded)}
  # Recorded, and checked on resume where recorded: another data dir (or a table added
  # to it) would otherwise turn held-out tasks into training tasks halfway.
  split = {"train_tasks": tuple(train_names), "val_tasks": tuple(val_names)}
  out_dir = Path(workdir) / stage.NAME
  model, params = stage.init(cfg)
  loss = LossSettings.of(cfg)
  opt = OptimizerSettings.of(cfg)
  state = init_state(params, opt)
  key = jax.random.key(cfg.seed)  # unused by the step; kept for the checkpoint layout
  encoder_source = None  # where the arch encoder started: the stage-1 run and step
  if cfg.encoder_init and stage.read_meta(workdir) is None:
    # A new run's, read before the checkpointer creates W/surrogate/checkpoints: a bad
    # path leaves nothing behind. A resumed run has its encoder in its checkpoint.
    params, encoder_source = stage.encoder_from_stage1(cfg, params)
    state = init_state(params, opt)

  with ckpt_lib.StageCheckpointer(workdir, stage.NAME, max_to_keep=2,
                                  save_interval_steps=1) as ckpt:
    start, seconds_before, done_report = 0, 0.0, None
    if ckpt.latest_step() is not None:
      meta = ckpt.read_meta()
      where = f"workdir {workdir}"
      ckpt_lib.check_meta(meta, {"space": cfg.space, "stage": stage.NAME}, where=where)
      lineage.check_frozen(meta, frozen, SurrogateConfig, where=f"{where}/{stage.NAME}")
      lineage.check_recorded(meta, split, where=f"{where}/{stage.NAME}")
      lineage.check_not_past(ckpt.latest_step(), cfg.steps, where=f"{where}/{stage.NAME}",
                             limit=f"steps={cfg.steps}", how="steps")
      lineage.check_finished(meta, cfg, ckpt.latest_step(), cfg.steps,
                             where=f"{where}/{stage.NAME}")
      ema, rest, key, _ = ckpt.restore(
          params_template=state["ema"],
          opt_state_template={"opt": state["opt_state"], "params": state["params"]})
      state = {"params": rest["params"], "opt_state": rest["opt"], "ema": ema}
      start = ckpt.latest_step()
      encoder_source = meta.get("encoder_init")
      # Before config.json is rewritten; a finished run returns once its prior is there.
      done_report, seconds_before = reports.resumed(meta, out_dir, start, cfg.steps,
                                                    cfg.to_json())
    # Data is read only now, after every check: a refused resume reads nothing.
    train = [task_arrays(tasks[n]) for n in train_names]
    out_dir.mkdir(parents=True, exist_ok=True)
    # A pure function of the training tasks, so a resume (or a rerun of a finished
    # run, which is how runs from before it get one) writes the same prior. One fitted
    # on other tasks is a run's killed before its first checkpoint, under another
    # config: kept, it would fail this run at its end, or hold its held-out tasks.
    refit = False
    if not stage.linear_prior_fits(workdir, excluded, train_names):
      fitted = [(t.genes, t.scores) for t in train]
      if linear_lib.usable_tasks(fitted) >= 2:
        stage.save_linear_prior(workdir, linear_lib.fit_prior(space, fitted), excluded,
                                train_names)
        refit = True
      else:
        stage.linear_prior_path(workdir).unlink(missing_ok=True)
    if done_report is not None:
      # The network is unchanged, so are its figures: only a new prior's are measured
      # (or one whose measurement a kill cut short: the prior is saved before it).
      if refit or (done_report.get("linear_prior") is None
                   and stage.linear_prior_path(workdir).is_file()):
        done_report["linear_prior"] = _linear_report(
            cfg, space, workdir, excluded, [task_arrays(tasks[n]) for n in val_names])
        reports.write_report(out_dir, done_report)
      return done_report
    atomic.write_text(out_dir / "config.json", cfg.to_json())
    state = jax.device_put(state, jax.devices()[0])
    members = family_members(train)
    mixing = mix_tables(train) if cfg.task_mix else None

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    t0 = time.perf_counter()
    # The report's time is the last checkpoint's, which a rerun that measures anew reads
    # back: the final save and what follows it are no training.
    train_seconds = seconds_before
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, disable=not progress,
               desc=f"surrogate {space.name}", dynamic_ncols=True)
    with reports.open_metrics(out_dir, start) as log:
      for step in bar:
        genes, scores, mask = episode_batch(cfg, train, members, step, mixing)
        state, metrics = train_step(state, genes, scores, mask, model=model, loss=loss,
                                    opt=opt)
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
          row = {k: float(v) for k, v in jax.device_get(metrics).items()}
          bar.set_postfix(loss=f"{row['loss']:.4f}")
          log.write(json.dumps({"step": done, "split": "train", **row}) + "\n")
        if done % cfg.checkpoint_every == 0 or done == end:
          train_seconds = seconds_before + time.perf_counter() - t0
          meta = lineage.stage_meta(stage=stage.NAME, space=space.name,
                                    config=config_lib.to_dict(cfg), params=state["ema"],
                                    frozen={**frozen, **split}, train_seconds=train_seconds)
          if encoder_source is not None:
            meta["encoder_init"] = encoder_source
          ckpt.save(done, state["ema"], {"opt": state["opt_state"], "params": state["params"]},
                    key, meta, force=True)
        log.flush()
    ckpt.wait_until_finished()
    if end < cfg.steps:
      return {"steps": end, "stopped_early": True}

    val = [task_arrays(tasks[n]) for n in val_names]
    ev = evaluate(cfg, functools.partial(stage.predictor, model, state["ema"]), val)
    report = {
        "space": space.name,
        "steps": cfg.steps,
        "train_seconds": train_seconds,
        "resumed_from": start,
        "exclude": list(cfg.exclude),
        "encoder_init": encoder_source,
        "excluded_tasks": excluded,
        "train_tasks": train_names,
        "val_tasks": val_names,
        **_report_by_k(ev),
        # The same validation tasks and references, through the linear prior instead.
        "linear_prior": _linear_report(cfg, space, workdir, excluded, val),
        "per_task": {t: {str(k): v for k, v in r.items()} for t, r in ev["per_task"].items()},
        "device": str(jax.devices()[0]),
    }
    reports.write_report(out_dir, report)
    return report


# ---- `pnag train surrogate` -----------------------------------------------------------


def config_for(workdir, *, preset: str | None, space: str | None, seed: int | None,
               exclude: tuple[str, ...], overrides=()) -> SurrogateConfig:
  """A new run's config, or the saved one of the run `workdir` resumes.

  A resumed run keeps its space, seed and exclusions; giving others is an error
  (the check itself happens against the checkpoint's frozen settings).
  """
  if space is not None:
    get_space(space)
  saved = stage.read_config(workdir)
  if saved is not None:
    # The exclusions act as a set: their order is no setting.
    for name, given, same in (("space", space, space == saved.space),
                              ("seed", seed, seed == saved.seed),
                              ("exclude", exclude, set(exclude or ()) == set(saved.exclude))):
      if given is not None and not same:
        raise PnagError(
            f"workdir {workdir} holds a surrogate trained with {name} "
            f"{getattr(saved, name)!r}; --{name} {given!r} disagrees (resume with the same "
            "settings, or use a new --workdir)")
    if preset is None:
      return config_lib.with_overrides(saved, overrides, where=f"workdir {workdir}",
                                       own=stage.OWN_SETTINGS)
    return stage.make_config(preset, saved.space, saved.seed, saved.exclude, overrides)
  return stage.make_config(preset or "quick", space or "nb201", seed or 0, exclude or (),
                           overrides)


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.description = ("Meta-train the stage-3 surrogate over a space's tasks. Rerunning the "
                   "same command resumes from the latest checkpoint.")
  p.epilog = ("example: (leave CIFAR-10 out)\n  pnag train surrogate --workdir runs/nb201 "
              "--space nb201 --exclude 'cifar10(?!0)'\n\nconfig keys for --set: "
              + config_lib.set_keys(SurrogateConfig, stage.OWN_SETTINGS))
  p.add_argument("--workdir", required=True, help="run directory; the surrogate goes to "
                                                  "WORKDIR/surrogate")
  p.add_argument("--space", default=None,
                 help=f"search space ({', '.join(SPACE_NAMES)}; default: nb201)")
  p.add_argument("--exclude", action="append", default=None, metavar="REGEX",
                 help="never read tasks whose name matches (re.search); repeatable; a "
                      "pattern that matches no task is an error. A resumed run keeps its "
                      "saved exclusions when this is not given, and refuses other ones")
  p.add_argument("--preset", choices=tuple(stage.PRESETS), default=None,
                 help=config_lib.PRESET_HELP)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override one config value; repeatable")
  p.add_argument("--seed", type=int, default=None, help="seed of a new run (default: 0)")
  p.add_argument("--data-dir", help=DATA_DIR_HELP)


def main(args: argparse.Namespace) -> None:
  exclude = tuple(args.exclude) if args.exclude is not None else None
  cfg = config_for(args.workdir, preset=args.preset, space=args.space, seed=args.seed,
                   exclude=exclude, overrides=args.set)
  report = train_and_evaluate(cfg, args.workdir, data_dir=args.data_dir)
  ks = ", ".join(f"K={k}: {v:.3f}" for k, v in report["spearman_by_k"].items())
  print(f"surrogate {report['space']}: {report['steps']} steps in "
        f"{report['train_seconds']:.1f} s on {len(report['train_tasks'])} tasks "
        f"({len(report['excluded_tasks'])} excluded)")
  picks = ", ".join(f"K={k}: {v:.3f}" for k, v in report["top1_quantile_by_k"].items())
  print(f"  Spearman on {len(report['val_tasks'])} held-out tasks: {ks}")
  print(f"  their first pick's quantile (1 = the optimum): {picks}")
  print(f"  report: {Path(args.workdir) / stage.NAME / 'report.json'}")
