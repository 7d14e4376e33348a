"""Stage 2, the conditional next-scale transformer prior: config, model, init and load.

  run2 = load("runs/nb201")                  # W/stage2, checked against W/stage1
  net = run2.model.merge(run2.params)        # a `models.var.ScaleTransformer`

Stage 2 is built on a frozen stage 1: it models the token maps of stage 1's MSQ, and
its inputs are reconstructions from stage 1's codebook. The stage-1 step and the
sha256 of its params are recorded in every stage-2 checkpoint, and loading fails in
one line if stage 1 changed underneath.

Conditions (`condition`):

* `none`: unconditional; the model always reads its learned null condition.
* `task`: a task and a target. The vector is the frozen stage-3 surrogate's task
  embedding of K reference pairs (`W/surrogate`; scores oriented so that higher is
  better) followed by a target quantile q in [0, 1] of the task's score over the
  space's strictly valid archs (q = 1: the best). An unseen task is only a set of
  references. Stage 2 then records the surrogate as a second parent and inherits its
  exclusions: the tasks the surrogate never read, stage 2 never reads either.
* `budget`: a parameter count and/or a FLOP count (multiply-adds), counted by the
  project's own formulas (`tasks.costs`) at the paper-size network. For each count
  of `budgets` the vector holds a flag for whether it was given (a user may give
  either or both); then, for each, its log, scaled to [0, 1] over the range of stage
  1's training archs (0 where not given). All flags come first, then all logs. The range is recorded in the checkpoint, and a
  budget outside it is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np
from flax import nnx

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.errors import PnagError
from pnag_jax.models import var
from pnag_jax.models.var import ScaleTransformer
from pnag_jax.stages import lineage
from pnag_jax.stages import stage1
from pnag_jax.stages import surrogate
from pnag_jax.stages.stage1 import Stage1Model, Stage1Run

NAME = "stage2"
#: The best held-out step's checkpoints (`keep_best`), beside the run's own.
BEST = f"{NAME}/best"

CONDITIONS = ("none", "task", "budget")
BUDGETS = ("params", "flops")


@dataclasses.dataclass(frozen=True)
class Stage2Config:
  """Stage-2 settings. Frozen and hashable; see `PRESETS`."""

  seed: int = 0
  condition: str = "none"         # one of CONDITIONS
  # Model.
  width: int = 128
  depth: int = 4
  heads: int = 4
  mlp_ratio: int = 4
  cond_drop: float = 0.1          # null condition this often in training (for CFG)
  # The condition's embedding (var.ConditionEmbed): "mlp" lets the target interact
  # with the task vector, "linear" only adds them (the first design; it learned to
  # ignore the condition, see eval/reports/stage2).
  cond_embed: str = "mlp"
  cond_frequencies: int = 8
  # Data: strictly valid training archs only (NB201's training half has 2.2% that
  # are not, and the prior should never learn to draw them).
  valid_only: bool = True
  # Task condition: each training task gets `task_bank` embeddings of random reference
  # sets of k_min..k_max archs, drawn once; a training pair takes one at random.
  task_bank: int = 32
  k_min: int = 5
  k_max: int = 20
  # Budget condition: the counts it reads, comma-separated (`BUDGETS`).
  budgets: str = "params,flops"
  # Optimisation (paper, stage 2: AdamW, lr 1e-3, wd 1e-4, batch 256, 300 epochs).
  learning_rate: float = 1e-3
  weight_decay: float = 1e-4
  batch_size: int = 256
  epochs: int = 300
  # > 0 caps the run regardless of epochs; 0 (the default, and the paper preset's) is
  # no cap: every epoch is trained.
  max_steps: int = 0
  warmup_steps: int = 0
  grad_clip: float = 2.0          # VAR clips at 2
  # The batch's gradient taken in this many equal slices, one after another
  # (`training.stage2.train_step`): the same step with 1/m of the activations alive.
  # Long token maps need it: MBV3's paper-size step at batch 256 asked an H200 for
  # 42 GiB at once (eval/bench_stage2_memory.py measures the step's temporaries).
  micro_batches: int = 1
  # Bookkeeping.
  eval_size: int = 0              # held-out archs in the final report; 0: all of them
  eval_every: int = 500
  # Keep the params of the best periodic held-out NLL in W/stage2/best, and serve
  # them (`load`): at the paper size NB201's training half is memorised, and held-out
  # NLL was best at 2,000 of 8,700 steps (eval/reports/stage2/train_gpu_paper.json).
  keep_best: bool = True
  checkpoint_every: int = 500
  log_every: int = 50

  FROZEN_ON_RESUME: ClassVar[tuple[str, ...]] = (
      "seed", "condition", "width", "depth", "heads", "mlp_ratio", "cond_embed",
      "cond_frequencies", "valid_only", "task_bank", "k_min", "k_max", "budgets")
  #: What changes no trained parameter: what a finished run may be rerun with
  #: (`lineage.check_finished`), its report measured anew. Bookkeeping; `micro_batches`,
  #: which slices the same step (memory, not the model); and `keep_best`, whose change
  #: from true to false a finished run refuses on its own (`training.stage2`).
  AFTER_TRAINING: ClassVar[tuple[str, ...]] = (
      "eval_size", "eval_every", "keep_best", "checkpoint_every", "log_every",
      "micro_batches")
  #: What only sets the step count (`num_steps`).
  LENGTH_KEYS: ClassVar[tuple[str, ...]] = ("max_steps", "epochs")
  # Values of keys in checkpoints written before the key existed (`lineage.config_of`):
  # before the embedding was a setting, it was always linear; no best step was kept.
  ADDED_KEYS: ClassVar[dict[str, Any]] = {"cond_embed": "linear", "keep_best": False}

  def __post_init__(self):
    if self.condition not in CONDITIONS:
      raise PnagError(f"condition must be one of {', '.join(CONDITIONS)}, "
                      f"got {self.condition!r}")
    if self.cond_embed not in var.COND_EMBEDS:
      raise PnagError(f"cond_embed must be one of {', '.join(var.COND_EMBEDS)}, "
                      f"got {self.cond_embed!r}")
    if self.cond_frequencies < 0:
      raise PnagError(f"cond_frequencies must be >= 0, got {self.cond_frequencies}")
    keys = self.budget_keys
    if not keys or len(set(keys)) != len(keys) or not set(keys) <= set(BUDGETS):
      raise PnagError(f"budgets must be distinct names from {', '.join(BUDGETS)}, "
                      f"comma-separated; got {self.budgets!r}")
    if not 1 <= self.k_min <= self.k_max:
      raise PnagError(f"need 1 <= k_min <= k_max, got {self.k_min} and {self.k_max}")
    config_lib.check_at_least(self, ("width", "depth", "heads", "mlp_ratio", "batch_size",
                                     "epochs", "micro_batches"), 1)
    if self.batch_size % self.micro_batches:
      raise PnagError(f"batch_size ({self.batch_size}) must be a multiple of "
                      f"micro_batches ({self.micro_batches})")
    if self.width % self.heads:
      raise PnagError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
    if not 0.0 <= self.cond_drop <= 1.0:
      raise PnagError(f"cond_drop must be in [0, 1], got {self.cond_drop}")
    # None of these could train: a division by zero in the loop, or an empty bank.
    config_lib.check_at_least(self, ("eval_every", "checkpoint_every", "log_every",
                                     "task_bank"), 1)

  def check_new(self) -> None:
    """Checks of values given for a new run (`config.make`, `--set`); not run on configs
    read back, so runs trained before them still load."""
    config_lib.check_seed(self.seed)
    config_lib.check_at_least(self, ("eval_size", "max_steps", "warmup_steps"), 0)
    config_lib.check_learning_rate(self.learning_rate)
    # grad_clip 0 means no clipping (NaN compared False there and meant the same, silently).
    config_lib.check_non_negative(self, ("weight_decay", "grad_clip"))

  @property
  def budget_keys(self) -> tuple[str, ...]:
    return tuple(k.strip() for k in self.budgets.split(",") if k.strip())

  def frozen(self) -> dict[str, Any]:
    # `budgets` only binds a budget-conditioned run (and runs from before it existed
    # resume as they were).
    out = {k: getattr(self, k) for k in self.FROZEN_ON_RESUME
           if k != "budgets" or self.condition == "budget"}
    if "budgets" in out:  # one spelling: "params, flops" is "params,flops"
      out["budgets"] = ",".join(self.budget_keys)
    return out

  def to_json(self) -> str:
    return config_lib.to_json(self)

  def replace(self, **kw) -> "Stage2Config":
    return dataclasses.replace(self, **kw)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's stage-2 optimiser, verbatim; our size (the paper gives none).
    "paper": {},
    # About 25 minutes on 2 CPU cores (1 s/step). Two heads and batch 128: on XLA:CPU
    # the attention scores of four 16-wide heads at batch 256 fall out of cache, and
    # cost 2x per sample.
    "quick": {"width": 64, "depth": 3, "heads": 2, "batch_size": 128,
              "learning_rate": 2e-3, "max_steps": 1500,
              "warmup_steps": 100, "eval_every": 500, "checkpoint_every": 500},
    # Seconds: the test suite's.
    "test": {"width": 32, "depth": 1, "heads": 2, "learning_rate": 5e-3, "batch_size": 16,
             "max_steps": 12, "warmup_steps": 3, "eval_every": 1000, "eval_size": 256,
             "checkpoint_every": 6, "log_every": 6},
}


#: What `make_config` takes as its own arguments (the command's flags): refused as
#: `--set` keys, on a new run and on a resumed one.
OWN_SETTINGS = ("seed",)


def make_config(preset: str = "quick", seed: int = 0, overrides=()) -> Stage2Config:
  return config_lib.make(Stage2Config, PRESETS, preset, overrides, seed=seed)


# ---- the model ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Stage2Model:
  """The static part: stage 1's static model, graphdef and abstract state."""

  stage1: Stage1Model
  cond_dim: int
  graphdef: nnx.GraphDef
  template: nnx.State

  @property
  def layout(self):
    return self.stage1.layout

  def merge(self, params: dict) -> ScaleTransformer:
    state = jax.tree.map(lambda x: x, self.template)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(self.graphdef, state)

  def abstract_params(self) -> dict:
    return nnx.to_pure_dict(self.template)


_DIMS = ("width", "depth", "heads", "mlp_ratio", "cond_embed", "cond_frequencies")


def _transformer(m1: Stage1Model, dims: dict, cond_dim: int, rngs: nnx.Rngs) -> ScaleTransformer:
  return ScaleTransformer(code_dim=m1.dim, vocab=m1.codebook_size, scales=m1.scales,
                          cond_dim=cond_dim, rngs=rngs, **dims)


@functools.lru_cache(maxsize=None)
def _static_model(m1: Stage1Model, dims: tuple, cond_dim: int) -> Stage2Model:
  graphdef, template = nnx.split(nnx.eval_shape(
      lambda: _transformer(m1, dict(dims), cond_dim, nnx.Rngs(0))))
  return Stage2Model(m1, cond_dim, graphdef, template)


def condition_dim(cfg: Stage2Config, task_dim: int = 0) -> int:
  """Length of the condition vector: 0; the surrogate's task vector and q; or a
  "given" flag and a scaled log count per budget."""
  if cfg.condition == "task":
    return task_dim + 1
  if cfg.condition == "budget":
    return 2 * len(cfg.budget_keys)
  return 0


def _dims(cfg: Stage2Config) -> tuple:
  # A budget vector ends in one target per count; a task vector in one quantile.
  targets = len(cfg.budget_keys) if cfg.condition == "budget" else 1
  return tuple((k, getattr(cfg, k)) for k in _DIMS) + (("cond_targets", targets),)


def static_model(cfg: Stage2Config, m1: Stage1Model, cond_dim: int) -> Stage2Model:
  return _static_model(m1, _dims(cfg), cond_dim)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_params(key: jax.Array, m1: Stage1Model, dims: tuple, cond_dim: int) -> dict:
  # One compiled program instead of dozens of eager initialiser calls.
  net = _transformer(m1, dict(dims), cond_dim, nnx.Rngs(params=key))
  return nnx.to_pure_dict(nnx.state(net))


def init(cfg: Stage2Config, m1: Stage1Model, cond_dim: int) -> tuple[Stage2Model, dict]:
  dims = _dims(cfg)
  key = jax.random.fold_in(jax.random.key(cfg.seed), 4)
  return static_model(cfg, m1, cond_dim), _init_params(key, m1, dims, cond_dim)


# ---- the task condition ------------------------------------------------------------------


def task_condition(srun, ref_genes: np.ndarray, ref_scores: np.ndarray, *, minimize: bool,
                   target: float) -> np.ndarray:
  """The condition vector float32[task_dim + 1] of a task given by K reference pairs.

  The references' scores are oriented (negated when the task is minimized) before the
  surrogate embeds them, so that a task vector always reads "higher is better" and
  q = 1 always means the best archs, for accuracy and latency alike.
  """
  if not 0.0 <= target <= 1.0:
    raise PnagError(f"--target must be a quantile in [0, 1], got {target}")
  scores = np.asarray(ref_scores, np.float32)
  emb = srun.predictor(ref_genes, -scores if minimize else scores).embedding
  return np.concatenate([np.asarray(emb, np.float32).reshape(-1),
                         np.float32([target])])


# ---- the budget condition ----------------------------------------------------------------


def scale_budget(values, lo: float, hi: float) -> np.ndarray:
  """Counts -> their log scaled to [0, 1] over [lo, hi] (float32)."""
  span = max(math.log(hi) - math.log(lo), 1e-12)
  return ((np.log(np.asarray(values, np.float64)) - math.log(lo)) / span).astype(np.float32)


def budget_condition(budget_range: dict, keys: tuple[str, ...], **targets) -> np.ndarray:
  """The condition vector float32[2C] of the budgets given in `targets`: C "given"
  flags, then C scaled log counts (0 where not given), in the order of `keys`.

  `budget_range` is the stage-2 run's recorded {count: [lo, hi]}; `targets` maps a
  count to a number or None (not given). At least one must be given, and each
  within the range the model was trained on.
  """
  unknown = set(targets) - set(BUDGETS)
  if unknown:
    raise PnagError(f"unknown budget {sorted(unknown)[0]!r}; budgets: {', '.join(BUDGETS)}")
  given = {k: v for k, v in targets.items() if v is not None}
  if not given:
    raise PnagError(f"the budget condition needs --{' or --'.join(keys)}")
  for k in given:
    if k not in keys:
      raise PnagError(f"this stage 2 was trained on the budgets {', '.join(keys)}, not --{k}")
  c = len(keys)
  out = np.zeros(2 * c, np.float32)
  for i, k in enumerate(keys):
    if k not in given:
      continue
    lo, hi = budget_range[k]
    v = float(given[k])
    if not (math.isfinite(v) and lo <= v <= hi):
      raise PnagError(f"--{k} {v:g} is outside the range stage 2 was trained on: "
                      f"{lo:.10g} to {hi:.10g} (its training archs' {k})")
    out[i] = 1.0
    out[c + i] = scale_budget(v, lo, hi)
  return out


# ---- trained runs -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage2Run:
  """A restored stage-2 run, the stage-1 run it was trained on, and (for the task
  condition) the surrogate whose task vectors it reads."""

  model: Stage2Model
  cfg: Stage2Config
  params: dict
  step: int
  workdir: Path
  meta: dict
  stage1: Stage1Run
  surrogate: Any = None

  @property
  def budget_range(self) -> dict[str, list[float]]:
    """{count: [lo, hi]} of a budget-conditioned run (the training archs' range)."""
    return dict(self.meta["frozen"].get("budget_range", {}))


def checkpoint_dir(workdir: str | Path) -> Path:
  return Path(workdir) / NAME / "checkpoints"


def config_of(meta: dict, workdir) -> Stage2Config:
  """The config a stage-2 checkpoint's `meta` records (`lineage.config_of`)."""
  return lineage.config_of(meta, Stage2Config, stage=NAME, workdir=workdir)


def load_conditioned(workdir: str | Path, condition: str, needed_by: str) -> "Stage2Run":
  """`load`, refusing in one line a stage 2 trained with another condition.

  `needed_by` names what needs it, with its verb ("--target needs").
  """
  run2 = load(workdir)
  if run2.cfg.condition != condition:
    raise PnagError(f"stage 2 in {workdir} has condition {run2.cfg.condition!r}; "
                    f"{needed_by} one trained with --set condition={condition}")
  return run2


def read_config(workdir: str | Path) -> Stage2Config | None:
  if not checkpoint_dir(workdir).is_dir():
    return None
  with ckpt_lib.StageCheckpointer(workdir, NAME, read_only=True) as ckpt:
    if ckpt.latest_step() is None:
      return None
    return config_of(ckpt.read_meta(), workdir)


def load_parent(name: str, workdir, step: int):
  if name == stage1.NAME:
    return stage1.load(workdir, step)
  if name == surrogate.NAME:
    return surrogate.load(workdir, step)
  raise ckpt_lib.CheckpointError(f"stage 2 in {workdir} names an unknown parent {name!r}")


def best_dir(workdir: str | Path) -> Path:
  return Path(workdir) / BEST / "checkpoints"


def served_step(workdir: str | Path) -> tuple[str, int] | None:
  """(checkpoints name, step) that `load` serves: the best held-out step where the
  run keeps one, else the latest; None where there is no committed stage 2."""
  if not checkpoint_dir(workdir).is_dir():
    return None
  with ckpt_lib.StageCheckpointer(workdir, NAME, read_only=True) as ckpt:
    latest = ckpt.latest_step()
    if latest is None:
      return None
    keep_best = config_of(ckpt.read_meta(), workdir).keep_best
  if keep_best and best_dir(workdir).is_dir():
    with ckpt_lib.StageCheckpointer(workdir, BEST, read_only=True) as best:
      if best.latest_step() is not None:
        return BEST, best.latest_step()
  return NAME, latest


def load(workdir: str | Path, step: int | None = None) -> Stage2Run:
  """Restores `workdir/stage2` (params only) and the stage-1 run it was trained on.

  Without `step`, the served step: the best held-out one where the run keeps it
  (`keep_best`), else the latest.

  Raises:
    CheckpointError: no stage 2 there, a corrupt one, or a stage 1 that is gone or
      changed since stage 2 was trained on it.
  """
  workdir = Path(workdir)
  if not checkpoint_dir(workdir).is_dir():
    raise ckpt_lib.CheckpointError(
        f"no stage-2 checkpoints under {workdir} "
        f"(train first: pnag train stage2 --workdir {workdir})")
  served = served_step(workdir) if step is None else (NAME, step)
  if served is None:
    raise ckpt_lib.CheckpointError(f"workdir {workdir}: no committed stage-2 checkpoint")
  name, step = served
  with ckpt_lib.StageCheckpointer(workdir, name, read_only=True) as ckpt:
    meta = ckpt.read_meta(step)
    cfg = config_of(meta, workdir)
    parents = lineage.check_parents(meta, workdir, where=f"stage 2 in {workdir}",
                                    load_parent=load_parent)
    if stage1.NAME not in parents:
      raise ckpt_lib.CheckpointError(f"stage 2 in {workdir} records no stage-1 parent")
    run1, srun = parents[stage1.NAME], parents.get(surrogate.NAME)
    if cfg.condition == "task" and srun is None:
      raise ckpt_lib.CheckpointError(f"stage 2 in {workdir} is task-conditioned but records "
                                     "no surrogate parent")
    model = static_model(cfg, run1.model, condition_dim(cfg, srun.cfg.task_dim if srun else 0))
    params, _, _, _ = ckpt.restore(step, params_template=model.abstract_params())
  return Stage2Run(model, cfg, params, int(step), workdir, meta, run1, srun)
