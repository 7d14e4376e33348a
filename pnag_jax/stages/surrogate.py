"""Stage 3, the meta-learned surrogate: its config, model, init, load and predictor.

  run = load("runs/nb201")                       # W/surrogate; needs no other stage
  pred = run.predictor(ref_genes, ref_scores)    # a task, given by K measured archs
  scores = pred.scores(genes)                    # float64[n], in the task's units
  pred = run.linear_predictor(ref_genes, ref_scores)   # the additive-cost model instead

The surrogate stands alone: it is not built on stage 1 (its arch encoder has the same
layers, trained from scratch on the tasks), so a workdir may hold only `surrogate/`.
What it was trained without is part of the run: the `--exclude` patterns and the
task names they matched are frozen in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax import atomic
from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.padding import pow2_at_least
from pnag_jax.errors import PnagError
from pnag_jax.models import linear_prior as linear_lib
from pnag_jax.models.surrogate import Surrogate, standardise
from pnag_jax.spaces import get_space
from pnag_jax.spaces.base import SearchSpace
from pnag_jax.stages import lineage

NAME = "surrogate"

#: Rows per step of prediction's on-device loop. A chunk's activations stay in a CPU
#: core's caches: measured on 2 cores, 1,024 rows predict 2x faster than 8,192.
PREDICT_CHUNK = 1024
#: Chunks per jitted call at most: one dispatch per 16k rows, not per chunk.
PREDICT_BLOCK = 16


@dataclasses.dataclass(frozen=True)
class SurrogateConfig:
  """Stage-3 settings. Frozen and hashable; see `PRESETS`."""

  space: str = "nb201"
  seed: int = 0
  exclude: tuple[str, ...] = ()   # regexes (re.search) over task names, never read
  # A stage-1 workdir of the same space: the arch encoder starts from its graph
  # encoder (same dim and layers) instead of at random. Only the start: the surrogate
  # never reads stage 1 again, so it still stands alone.
  encoder_init: str = ""
  # Model.
  dim: int = 32                   # node state width of the message passing
  layers: int = 2
  emb_dim: int = 64               # arch embedding
  hidden: int = 128
  task_dim: int = 64              # the task vector: stage 2's condition
  ridge: bool = True              # a closed-form ridge fit of the references in the head
  # The task encoder also reads the references' relative spread, log(std / |mean|),
  # which standardising drops (`models.surrogate.log_spread`).
  task_spread: bool = False
  # Episodes.
  k_min: int = 1
  k_max: int = 50                 # references per episode, K in k_min..k_max
  # "uniform" over k_min..k_max, or "log": K = floor(exp(U[ln k_min, ln(k_max + 1)))),
  # which spends most episodes on the few references users measure (P(K <= 10) = 0.61
  # for 1..50, against 0.20).
  k_sampling: str = "uniform"
  queries: int = 48
  # Half of each episode's queries come from the task's two tails, each this share of
  # its archs: picking the best needs the top of the ranking right.
  tail_share: float = 0.02
  episodes: int = 12              # episodes per step
  task_sampling: str = "family"   # "family": a family, then one of its tasks; "task"
  # Share of episodes in which the last m ~ U{1..K} references come from the task's
  # best 5%, as when trained picks are fed back (`--guide feedback`); 0 keeps them all
  # uniform, as a user's first measurements are.
  fed_back_refs: float = 0.0
  # Share of episodes whose task interpolates two training tasks of one family over the
  # same archs, lambda * z_a + (1 - lambda) * z_b, lambda ~ U(0, 1) (README, "Task
  # interpolation"; measured, not adopted).
  task_mix: float = 0.0
  # Loss: listwise ranking (ListNet) + Huber regression on standardised scores.
  rank_weight: float = 1.0
  rank_target: str = "rank"       # ListNet target from "rank" (place) or "score" (standardised)
  # In places, for "rank"; 4 over 2: on the held-out tasks of both seeds' leave-dataset-out
  # surrogates, better first picks at K = 10 and Spearman +0.04 (README, "The ListNet
  # temperature").
  rank_temperature: float = 4.0
  # In stds, for "score": a separate field, since a place and a std are not one unit.
  score_temperature: float = 2.0
  reg_weight: float = 0.1
  # Optimisation.
  learning_rate: float = 2e-3
  weight_decay: float = 1e-4
  steps: int = 2000
  warmup_steps: int = 100
  ema_decay: float = 0.99         # the saved params are this moving average
  # Validation: tasks held out of meta-training (chosen by seed), by K.
  num_val_tasks: int = 4
  eval_ks: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
  eval_archs: int = 2000
  eval_repeats: int = 4
  # Bookkeeping.
  checkpoint_every: int = 500
  log_every: int = 50

  FROZEN_ON_RESUME: ClassVar[tuple[str, ...]] = (
      "space", "seed", "exclude", "encoder_init", "dim", "layers", "emb_dim", "hidden", "task_dim",
      "ridge", "task_spread", "num_val_tasks", "k_max", "queries", "episodes")
  #: Bookkeeping that changes no trained parameter: what a finished run may be rerun
  #: with (`lineage.check_finished`), its report measured anew.
  AFTER_TRAINING: ClassVar[tuple[str, ...]] = (
      "eval_ks", "eval_archs", "eval_repeats", "checkpoint_every", "log_every")
  # Values of keys in checkpoints written before the key existed (`lineage.config_of`),
  # where they differ from today's default; a function reads the rest of the saved config.
  # The first surrogates sampled tasks uniformly, had score targets and no weight average;
  # score mode kept its temperature in `rank_temperature` until `score_temperature`.
  ADDED_KEYS: ClassVar[dict[str, Any]] = {
      "ridge": False, "task_spread": False, "task_sampling": "task", "rank_target": "score",
      "ema_decay": 0.0,
      "score_temperature": lambda saved: (
          saved.get("rank_temperature", SurrogateConfig.score_temperature)
          if saved.get("rank_target", "score") == "score"
          else SurrogateConfig.score_temperature)}

  def check_new(self) -> None:
    """Checks of values given for a new run (`config.make`, `--set`); not run on configs
    read back, so runs trained before them still load."""
    config_lib.check_seed(self.seed)
    config_lib.check_learning_rate(self.learning_rate)
    config_lib.check_at_least(self, ("warmup_steps",), 0)
    # A NaN weight or an average that never forgets trains, and reports, a NaN model.
    config_lib.check_non_negative(self, ("rank_weight", "reg_weight", "weight_decay"))
    if not 0.0 <= self.ema_decay < 1.0:
      raise PnagError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

  def __post_init__(self):
    # Below 1, the loop divides by zero or the final evaluation has nothing to rank.
    config_lib.check_at_least(self, ("dim", "layers", "emb_dim", "hidden", "task_dim",
                                     "queries", "episodes", "steps", "k_min",
                                     "checkpoint_every", "log_every", "num_val_tasks",
                                     "eval_archs", "eval_repeats"), 1)
    if not self.eval_ks or min(self.eval_ks) < 1:
      raise PnagError(f"eval_ks must be one or more K >= 1, got {self.eval_ks}")
    if self.rank_target not in ("score", "rank"):
      raise PnagError(f"rank_target must be 'score' or 'rank', got {self.rank_target!r}")
    for name in ("rank_temperature", "score_temperature"):
      if not getattr(self, name) > 0:
        raise PnagError(f"{name} must be > 0, got {getattr(self, name)}")
    if self.k_sampling not in ("uniform", "log"):
      raise PnagError(f"k_sampling must be 'uniform' or 'log', got {self.k_sampling!r}")
    if not 0.0 < self.tail_share <= 0.5:
      raise PnagError(f"tail_share must be in (0, 0.5], got {self.tail_share}")
    if self.task_sampling not in ("family", "task"):
      raise PnagError(f"task_sampling must be 'family' or 'task', got {self.task_sampling!r}")
    if self.k_max < self.k_min:
      raise PnagError(f"k_max ({self.k_max}) must be >= k_min ({self.k_min})")
    if not 0.0 <= self.fed_back_refs <= 1.0:
      raise PnagError(f"fed_back_refs must be a share in [0, 1], got {self.fed_back_refs}")
    if not 0.0 <= self.task_mix <= 1.0:
      raise PnagError(f"task_mix must be a share in [0, 1], got {self.task_mix}")
    if self.task_mix and self.task_spread:
      # A mix is in table-standardised units, centred near 0: log(std / |mean|) of its
      # references would be noise, so the spread input would be trained on nothing.
      raise PnagError("task_mix and task_spread cannot be combined: a mixed task has no "
                      "meaningful spread (std / |mean|)")

  def frozen(self) -> dict[str, Any]:
    return {k: getattr(self, k) for k in self.FROZEN_ON_RESUME}

  def to_json(self) -> str:
    return config_lib.to_json(self)


PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on 2 CPU cores (the acceptance budget is 5).
    "quick": {},
    # The published meta-learned predictors' scale: wider, 10x the episodes.
    "paper": {"dim": 64, "layers": 3, "emb_dim": 128, "hidden": 256, "task_dim": 128,
              "episodes": 32, "queries": 128, "steps": 20_000, "learning_rate": 1e-3,
              "warmup_steps": 500, "checkpoint_every": 2000},
    # Seconds: the test suite's.
    "test": {"steps": 60, "episodes": 8, "queries": 32, "k_max": 20, "eval_archs": 256,
             "eval_ks": (2, 10), "eval_repeats": 1, "checkpoint_every": 100,
             "num_val_tasks": 2, "learning_rate": 3e-3, "ema_decay": 0.95},
}


#: What `make_config` takes as its own arguments (the command's flags): refused as
#: `--set` keys, on a new run and on a resumed one.
OWN_SETTINGS = ("space", "seed", "exclude")


def make_config(preset: str = "quick", space: str = "nb201", seed: int = 0,
                exclude: tuple[str, ...] = (), overrides=()) -> SurrogateConfig:
  return config_lib.make(SurrogateConfig, PRESETS, preset, overrides, space=space, seed=seed,
                         exclude=tuple(exclude))


# ---- the model ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class SurrogateModel:
  """The static part (space, graphdef, abstract state); hashable by identity."""

  space: SearchSpace
  graphdef: nnx.GraphDef
  template: nnx.State

  def merge(self, params: dict) -> Surrogate:
    state = jax.tree.map(lambda x: x, self.template)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(self.graphdef, state)

  def abstract_params(self) -> dict:
    return nnx.to_pure_dict(self.template)


_DIMS = ("dim", "layers", "emb_dim", "hidden", "task_dim", "ridge", "task_spread")


def _surrogate(space: SearchSpace, dims: dict, rngs: nnx.Rngs) -> Surrogate:
  return Surrogate(num_ops=space.num_ops, num_nodes=space.num_nodes, dim=dims["dim"],
                   num_layers=dims["layers"], emb_dim=dims["emb_dim"], hidden=dims["hidden"],
                   task_dim=dims["task_dim"], ridge=dims["ridge"],
                   spread=dims["task_spread"], rngs=rngs)


@functools.lru_cache(maxsize=None)
def _static_model(space_name: str, dims: tuple) -> SurrogateModel:
  space = get_space(space_name)
  graphdef, template = nnx.split(nnx.eval_shape(
      lambda: _surrogate(space, dict(dims), nnx.Rngs(0))))
  return SurrogateModel(space, graphdef, template)


def static_model(cfg: SurrogateConfig) -> SurrogateModel:
  return _static_model(cfg.space, tuple((k, getattr(cfg, k)) for k in _DIMS))


def init(cfg: SurrogateConfig) -> tuple[SurrogateModel, dict]:
  rngs = nnx.Rngs(params=jax.random.fold_in(jax.random.key(cfg.seed), 3))
  params = nnx.to_pure_dict(nnx.state(_surrogate(get_space(cfg.space),
                                                 {k: getattr(cfg, k) for k in _DIMS}, rngs)))
  return static_model(cfg), params


#: The arch encoder's parts that the stage-1 graph encoder has too (all but the readout).
SHARED_ENCODER_PARTS = ("op_embed", "pos_embed", "layers", "norm")


def encoder_from_stage1(cfg: SurrogateConfig, params: dict) -> tuple[dict, dict]:
  """(params with the arch encoder taken from `cfg.encoder_init`'s stage 1, its lineage).

  Raises:
    CheckpointError: no stage-1 run there; PnagError: another space, or another width
      or depth than this surrogate's.
  """
  from pnag_jax.stages import stage1  # pylint: disable=g-import-not-at-top
  where = f"--set encoder_init={cfg.encoder_init}"
  try:
    run = stage1.load(cfg.encoder_init)
  except ckpt_lib.CheckpointError as e:  # say which setting named the path
    raise ckpt_lib.CheckpointError(f"{where}: {e}") from e
  if run.cfg.space != cfg.space:
    raise PnagError(f"{where}: stage 1 there is space {run.cfg.space!r}, the surrogate "
                    f"{cfg.space!r}")
  if (run.cfg.dim, run.cfg.encoder_layers) != (cfg.dim, cfg.layers):
    raise PnagError(f"{where}: its encoder has dim={run.cfg.dim}, layers="
                    f"{run.cfg.encoder_layers}; set the surrogate's to match (now dim="
                    f"{cfg.dim}, layers={cfg.layers})")
  encoder = run.params["encoder"]
  arch = {**params["arch"], **{k: encoder[k] for k in SHARED_ENCODER_PARTS}}
  return {**params, "arch": arch}, lineage.parent_entry("stage1", run.step, run.params)


# ---- prediction -------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="model")
def task_state(params: dict, ref_genes: jax.Array, ref_scores: jax.Array, mask: jax.Array,
               *, model: SurrogateModel) -> dict:
  """Everything prediction needs from the references, computed once per task."""
  net = model.merge(params)
  ref_emb = net.embed(model.space, ref_genes)
  ref_z, mean, std, task = net.encode_task(ref_emb, ref_scores, mask)
  return {"ref_emb": ref_emb, "ref_z": ref_z, "mask": mask, "mean": mean, "std": std,
          "task": task}


def _predict(params: dict, task: dict, genes: jax.Array, model: SurrogateModel) -> jax.Array:
  net = model.merge(params)
  z = net.head(net.embed(model.space, genes), task["ref_emb"], task["ref_z"], task["mask"],
               task["task"])
  return z * task["std"] + task["mean"]


@functools.partial(jax.jit, static_argnames="model")
def predict_chunks(params: dict, task: dict, genes: jax.Array, *,
                   model: SurrogateModel) -> jax.Array:
  """Scores of `genes int[S, C, G]` in the task's units (un-standardised), float32[S, C].

  A `lax.map` over the S chunks: one dispatch for many rows, while each chunk's
  working set stays small.
  """
  return jax.lax.map(lambda g: _predict(params, task, g, model), genes)


def _pad_rows(genes: np.ndarray, chunk: int):
  """Blocks of `genes int[n, G]` padded to a power-of-two number of `chunk`-row chunks."""
  genes = np.asarray(genes, np.int32)
  n, g = genes.shape
  for start in range(0, n, chunk * PREDICT_BLOCK):
    part = genes[start:start + chunk * PREDICT_BLOCK]
    k = part.shape[0]
    # Pad to a power-of-two number of chunks: a handful of compiles serve every n.
    s = pow2_at_least(-(-k // chunk))
    part = np.concatenate([part, np.zeros((s * chunk - k, g), np.int32)])
    yield part.reshape(s, chunk, g), k


def _scores_of(blocks) -> np.ndarray:
  out = [scores.reshape(-1)[:k] for scores, k in blocks]
  if not out:
    return np.zeros((0,), np.float64)
  return np.asarray(jnp.concatenate(out), np.float64)


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A surrogate bound to one task's references: `scores(genes)` for any number."""

  model: SurrogateModel
  params: dict
  task: dict

  @property
  def embedding(self) -> np.ndarray:
    """The task vector: stage 2's condition."""
    return np.asarray(self.task["task"])

  def scores(self, genes: np.ndarray, chunk: int = PREDICT_CHUNK) -> np.ndarray:
    """Scores of `genes int[n, G]`, float64[n], `chunk` rows per step on the device."""
    return _scores_of((predict_chunks(self.params, self.task, part, model=self.model), k)
                      for part, k in _pad_rows(genes, chunk))


#: The references' moments are taken in float32 on the device. Measured scores whose
#: spread is below this share of their magnitude lose their order in the cast (float32
#: keeps about 7 digits).
MIN_REF_RESOLUTION = 1e-5
#: A smaller spread squares to below float32's smallest normal number (1.2e-38).
MIN_REF_SPREAD = 1e-18


def check_resolution(scores: np.ndarray) -> None:
  """A one-line error for a user's scores that float32 cannot tell apart (see above).

  For files of measured scores (`pnag predict`, guided `pnag generate`): there a spread
  this fine is a unit or an offset, and refusing it beats ranking by rounding noise.
  Benchmark tables never come near it, and the protocols' reference draws are not
  checked: equal or near-equal draws are a case the model handles (`standardise`).
  """
  scores = np.asarray(scores, np.float64)
  largest, spread = np.abs(scores).max(), scores.max() - scores.min()
  if 0 < spread and (spread < MIN_REF_RESOLUTION * largest or spread < MIN_REF_SPREAD):
    raise PnagError(f"reference scores vary by only {spread:.3g} at a magnitude of "
                    f"{largest:.3g}, finer than the surrogate's float32 resolves; subtract "
                    "a constant from the scores or rescale the task's unit")


def _padded_refs(ref_genes: np.ndarray, ref_scores: np.ndarray):
  """(genes, scores, mask) with K padded to a power of two: few compiles serve every K."""
  ref_genes = np.asarray(ref_genes, np.int32)
  if ref_genes.shape[0] < 1 or ref_genes.shape[0] != np.shape(ref_scores)[0]:
    raise PnagError(f"need K >= 1 reference archs with one score each, got "
                    f"{ref_genes.shape[0]} archs and {np.shape(ref_scores)[0]} scores")
  k = ref_genes.shape[0]
  kp = pow2_at_least(k)
  largest = np.abs(np.asarray(ref_scores, np.float64)).max()
  # K squared deviations, each below (2 * largest)**2, must sum within float32.
  limit = float(np.sqrt(np.finfo(np.float32).max / (4 * kp)))
  if not largest <= limit:
    raise PnagError(f"reference scores must lie within +-{limit:.1e} for {k} references "
                    f"(got up to {largest:.3g}); rescale the task's unit")
  ref_scores = np.asarray(ref_scores, np.float32)
  mask = np.arange(kp) < k
  genes = np.concatenate([ref_genes, np.repeat(ref_genes[:1], kp - k, 0)])
  scores = np.concatenate([ref_scores, np.zeros(kp - k, np.float32)])
  return genes, scores, mask


def predictor(model: SurrogateModel, params: dict, ref_genes: np.ndarray,
              ref_scores: np.ndarray) -> Predictor:
  """Binds references (genes int[K, G], scores float[K], K >= 1) to the surrogate."""
  genes, scores, mask = _padded_refs(ref_genes, ref_scores)
  return Predictor(model, params, task_state(params, genes, scores, mask, model=model))


# ---- the linear prior: an additive-cost model beside the network ----------------------

LINEAR_PRIOR_FILE = "linear_prior.npz"


@functools.partial(jax.jit, static_argnames="space")
def linear_task_state(prior: dict, ref_genes: jax.Array, ref_scores: jax.Array,
                      mask: jax.Array, *, space: SearchSpace) -> dict:
  ref_z, mean, std = standardise(ref_scores, mask)
  w, noise, tied = linear_lib.posterior(prior, linear_lib.features(space, ref_genes), ref_z,
                                        mask)
  return {"w": w, "noise": noise, "tied": tied, "mean": mean, "std": std}


@functools.partial(jax.jit, static_argnames="space")
def linear_predict_chunks(task: dict, genes: jax.Array, *, space: SearchSpace) -> jax.Array:
  return jax.lax.map(
      lambda g: linear_lib.features(space, g) @ task["w"] * task["std"] + task["mean"], genes)


@dataclasses.dataclass(frozen=True)
class LinearPredictor:
  """The linear prior's posterior for one task's references; `scores` as `Predictor`."""

  space: SearchSpace
  task: dict

  @property
  def noise(self) -> float:
    """The noise variance the references' evidence chose (in squared stds)."""
    return float(self.task["noise"])

  @property
  def tied(self) -> float:
    """The tied hypothesis' posterior probability (`models/linear_prior.py`)."""
    return float(self.task["tied"])

  def scores(self, genes: np.ndarray, chunk: int = PREDICT_CHUNK) -> np.ndarray:
    return _scores_of((linear_predict_chunks(self.task, part, space=self.space), k)
                      for part, k in _pad_rows(genes, chunk))


def linear_predictor(space: SearchSpace, prior: dict, ref_genes: np.ndarray,
                     ref_scores: np.ndarray) -> LinearPredictor:
  """Binds references (as `predictor` takes them) to the linear prior `prior`."""
  genes, scores, mask = _padded_refs(ref_genes, ref_scores)
  arrays = {k: jnp.asarray(v) for k, v in linear_lib.gaussians(prior).items()}
  return LinearPredictor(space, linear_task_state(arrays, genes, scores, mask, space=space))


def linear_prior_path(workdir: str | Path) -> Path:
  return Path(workdir) / NAME / LINEAR_PRIOR_FILE


def save_linear_prior(workdir: str | Path, prior: dict, excluded_tasks, train_tasks) -> Path:
  """Writes the prior beside the checkpoints, atomically (a kill leaves none or all)."""
  path = linear_prior_path(workdir)
  about = json.dumps({"excluded_tasks": list(excluded_tasks), "train_tasks": list(train_tasks)})
  with atomic.open_replacing(path, "wb", parents=True) as f:
    np.savez(f, **linear_lib.gaussians(prior), tasks=prior["tasks"], about=np.asarray(about))
  return path


def linear_prior_fits(workdir: str | Path, excluded_tasks, train_tasks) -> bool:
  """Whether the saved linear prior was fitted on exactly `train_tasks`, with
  `excluded_tasks` excluded; False where it is missing or unreadable."""
  try:
    with np.load(linear_prior_path(workdir)) as z:
      about = json.loads(str(z["about"]))
  except Exception:  # pylint: disable=broad-except  # missing, zip, key, JSON: refit it
    return False
  return (isinstance(about, dict) and about.get("excluded_tasks") == list(excluded_tasks)
          and about.get("train_tasks") == list(train_tasks))


def load_linear_prior(workdir: str | Path, space: SearchSpace, excluded_tasks
                      ) -> dict | None:
  """The run's linear prior, or None for a run trained before it existed.

  Raises:
    CheckpointError: the file is unreadable, of another space's width, or was fitted
      under other exclusions than the checkpoints' (it would leak what they exclude).
  """
  path = linear_prior_path(workdir)
  if not path.is_file():
    return None
  f = linear_lib.num_features(space)
  try:
    with np.load(path) as z:
      prior = {k: np.asarray(z[k]) for k in ("mean", "cov", "tasks")}
      # A prior saved before the tied hypothesis existed is the untied one alone.
      if "tied_mean" in z.files:
        prior.update(tied_mean=np.asarray(z["tied_mean"]), tied_cov=np.asarray(z["tied_cov"]))
      about = json.loads(str(z["about"]))
  except Exception as e:  # pylint: disable=broad-except  # zip, key, JSON: all "corrupt"
    raise ckpt_lib.CheckpointError(f"{path} is corrupt ({type(e).__name__}); retrain "
                                   "the surrogate, or delete it to predict without it") from e
  if any(prior[mu].shape != (f,) or prior[c].shape != (f, f)
         for mu, c in linear_lib.HYPOTHESES if mu in prior):
    raise ckpt_lib.CheckpointError(f"{path} has {prior['mean'].shape[0]} features, but "
                                   f"space {space.name} has {f}")
  if tuple(about.get("excluded_tasks", ())) != tuple(excluded_tasks):
    raise ckpt_lib.CheckpointError(f"{path} was fitted without {about.get('excluded_tasks')}"
                                   f", the surrogate without {list(excluded_tasks)}")
  return prior


# ---- trained runs ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SurrogateRun:
  model: SurrogateModel
  cfg: SurrogateConfig
  params: dict
  step: int
  workdir: Path
  meta: dict
  linear_prior: dict | None = None

  @property
  def space(self) -> SearchSpace:
    return self.model.space

  @property
  def excluded_tasks(self) -> tuple[str, ...]:
    return tuple(self.meta.get("frozen", {}).get("excluded_tasks", ()))

  def predictor(self, ref_genes: np.ndarray, ref_scores: np.ndarray) -> Predictor:
    return predictor(self.model, self.params, ref_genes, ref_scores)

  def linear_predictor(self, ref_genes: np.ndarray, ref_scores: np.ndarray
                       ) -> LinearPredictor:
    if self.linear_prior is None:
      raise PnagError(f"the surrogate in {self.workdir} has no linear prior (trained before "
                      f"it existed): run `pnag train surrogate --workdir {self.workdir}` "
                      "again to add it (seconds; the network is unchanged)")
    return linear_predictor(self.space, self.linear_prior, ref_genes, ref_scores)


def checkpoint_dir(workdir: str | Path) -> Path:
  return Path(workdir) / NAME / "checkpoints"


def _config_of(meta: dict, workdir) -> SurrogateConfig:
  return lineage.config_of(meta, SurrogateConfig, stage=NAME, workdir=workdir)


def latest_step(workdir: str | Path) -> int | None:
  """The step of the latest surrogate checkpoint, or None where there is none."""
  if not checkpoint_dir(workdir).is_dir():
    return None
  with ckpt_lib.StageCheckpointer(workdir, NAME, read_only=True) as ckpt:
    return ckpt.latest_step()


def read_meta(workdir: str | Path) -> dict | None:
  """The latest surrogate checkpoint's metadata, or None where there is none."""
  if not checkpoint_dir(workdir).is_dir():
    return None
  with ckpt_lib.StageCheckpointer(workdir, NAME, read_only=True) as ckpt:
    if ckpt.latest_step() is None:
      return None
    return ckpt.read_meta()


def read_config(workdir: str | Path) -> SurrogateConfig | None:
  """The config of the latest surrogate checkpoint in `workdir`, or None."""
  meta = read_meta(workdir)
  return None if meta is None else _config_of(meta, workdir)


def load(workdir: str | Path, step: int | None = None, *, space: str | None = None
         ) -> SurrogateRun:
  """Restores `workdir/surrogate` (params only).

  Raises:
    CheckpointError: no surrogate there, or a corrupt one; PnagError: `space` given
      and the surrogate is another space's.
  """
  workdir = Path(workdir)
  if not checkpoint_dir(workdir).is_dir():
    raise ckpt_lib.CheckpointError(
        f"no surrogate under {workdir} (train one: pnag train surrogate --workdir {workdir} "
        f"--space {space or 'nb201'})")
  with ckpt_lib.StageCheckpointer(workdir, NAME, read_only=True) as ckpt:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise ckpt_lib.CheckpointError(f"workdir {workdir}: no committed surrogate checkpoint")
    meta = ckpt.read_meta(step)
    cfg = _config_of(meta, workdir)
    if space is not None and space != cfg.space:
      raise PnagError(f"workdir {workdir} holds a surrogate of space {cfg.space!r}, "
                      f"not {space!r}")
    model = static_model(cfg)
    params, _, _, _ = ckpt.restore(step, params_template=model.abstract_params())
  excluded = tuple(meta.get("frozen", {}).get("excluded_tasks", ()))
  prior = load_linear_prior(workdir, model.space, excluded)
  return SurrogateRun(model, cfg, params, int(step), workdir, meta, prior)
