"""Stage 1, the VQ-VAE over architecture graphs: its config, model, init and load.

  cfg = make_config("quick", space="nb201", overrides=["codebook_size=128"])
  model, params = init(cfg)                            # fresh params (pure dict)
  run = load("runs/nb201")                             # a trained run, no optimizer
  vqvae = run.model.merge(run.params)                  # an nnx module, e.g. inside jit

Trainers (`pnag_jax.training.stage1`) import this module; generation and evaluation
load runs through it and never import a trainer.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np
from flax import nnx

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.data.splits import train_heldout
from pnag_jax.errors import PnagError
from pnag_jax.models import msq
from pnag_jax.models.vqvae import VQVAE
from pnag_jax.spaces import get_space
from pnag_jax.spaces.base import SearchSpace
from pnag_jax.stages import lineage

NAME = "stage1"


@dataclasses.dataclass(frozen=True)
class Stage1Config:
  """Stage-1 settings. Frozen and hashable; see `PRESETS` for the named sets."""

  space: str = "nb201"
  seed: int = 0
  # Model.
  dim: int = 32                   # C, channels of the feature map e (N, N, C)
  encoder_layers: int = 3
  decoder_hidden: int = 256
  codebook_size: int = 64         # V, one codebook shared by every scale
  first_scale: int = 3            # scales are first_scale, ..., N (DESIGN §3)
  num_scales: int = 0             # 0: every size first_scale..N; k: k evenly spaced, last N
  # Losses.
  beta: float = 0.25              # VQ commitment weight
  beta_kl: float = 1e-4
  scc_lambda: float = 1.0         # weight of each constrained prefix term
  scc_t_max: int = -1             # constrained steps 0..T; -1 means all (T)
  scc_variant: str = "prefix"     # "prefix" (default) or "paper_literal"
  arch_scc: bool = False          # also decode every constrained prefix
  # Optimisation (paper, stage 1: AdamW, lr 1e-4, wd 1e-4, batch 256, 300 epochs).
  learning_rate: float = 1e-4
  weight_decay: float = 1e-4
  batch_size: int = 256
  epochs: int = 300
  # > 0 caps the run regardless of epochs; 0 (the default, and the paper preset's) is
  # no cap: every epoch is trained.
  max_steps: int = 0
  warmup_steps: int = 0
  # Data for sampled spaces (enumerable NB201 always uses its seeded 50/50 split).
  train_size: int = 50_000
  heldout_size: int = 10_000
  # Bookkeeping.
  eval_every: int = 500
  eval_size: int = 0              # archs of each split in the final report; 0: all of them
  checkpoint_every: int = 500
  log_every: int = 50

  #: What a resumed run must share with its checkpoint: the data and the model.
  FROZEN_ON_RESUME: ClassVar[tuple[str, ...]] = (
      "space", "seed", "dim", "encoder_layers", "decoder_hidden", "codebook_size",
      "first_scale", "num_scales", "train_size", "heldout_size")
  #: Bookkeeping that changes no trained parameter: what a finished run may be rerun
  #: with (`lineage.check_finished`), its report measured anew.
  AFTER_TRAINING: ClassVar[tuple[str, ...]] = (
      "eval_every", "eval_size", "checkpoint_every", "log_every")
  #: What only sets the step count (`num_steps`).
  LENGTH_KEYS: ClassVar[tuple[str, ...]] = ("max_steps", "epochs")

  def __post_init__(self):
    if self.num_scales < 0 or self.first_scale < 1:
      raise PnagError("num_scales must be >= 0 and first_scale >= 1")
    if self.scc_variant not in ("prefix", "paper_literal"):
      raise PnagError(f"scc_variant must be 'prefix' or 'paper_literal', "
                      f"got {self.scc_variant!r}")
    if self.eval_size < 0:
      raise PnagError(f"eval_size must be >= 0 (0: every arch), got {self.eval_size}")
    # None of these could train: zero steps, or a division by zero in the loop.
    config_lib.check_at_least(self, ("dim", "encoder_layers", "decoder_hidden",
                                     "codebook_size", "batch_size", "epochs", "eval_every",
                                     "checkpoint_every", "log_every"), 1)

  def check_new(self) -> None:
    """Checks of values given for a new run (`config.make`, `--set`); not run on configs
    read back, so runs trained before them still load."""
    config_lib.check_at_least(self, ("max_steps", "warmup_steps"), 0)
    space = get_space(self.space)
    if not space.enumerable:  # NB201 has its fixed 50/50 split
      config_lib.check_at_least(self, ("train_size", "heldout_size"), 1)
    # `msq.scale_schedule` would clamp a first scale past N, or more scales than the
    # sizes first_scale..N, while the config (and the run's frozen settings) kept the
    # values asked.
    n = space.num_nodes
    if self.first_scale > n:
      raise PnagError(f"first_scale must be <= {n} for {space.name} (its node count), "
                      f"got {self.first_scale}")
    most = n - self.first_scale + 1
    if self.num_scales > most:
      raise PnagError(f"num_scales must be <= {most} for {space.name} (scales "
                      f"{self.first_scale}..{n}; 0: all of them), got {self.num_scales}")
    config_lib.check_seed(self.seed)
    if self.scc_t_max < -1:
      raise PnagError(f"scc_t_max must be -1 (all steps) or a step count >= 0, "
                      f"got {self.scc_t_max}")
    config_lib.check_learning_rate(self.learning_rate)
    config_lib.check_non_negative(self, ("weight_decay", "beta", "beta_kl", "scc_lambda"))

  def replace(self, **kw) -> "Stage1Config":
    return dataclasses.replace(self, **kw)

  def to_json(self) -> str:
    return config_lib.to_json(self)

  def frozen(self) -> dict[str, Any]:
    return {k: getattr(self, k) for k in self.FROZEN_ON_RESUME}

  def scales(self, num_nodes: int) -> tuple[int, ...]:
    return msq.scale_schedule(num_nodes, self.first_scale, self.num_scales)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's hyperparameters, verbatim.
    "paper": {},
    # About a minute on 2 CPU cores: a larger step size compensates for far fewer steps.
    "quick": {"learning_rate": 3e-3, "epochs": 10_000, "max_steps": 400,
              "warmup_steps": 50, "eval_every": 200, "checkpoint_every": 200,
              "train_size": 20_000, "heldout_size": 2_000},
}


#: What `make_config` takes as its own arguments (the command's flags): refused as
#: `--set` keys, on a new run and on a resumed one.
OWN_SETTINGS = ("space", "seed")


def make_config(preset: str = "quick", space: str = "nb201", seed: int = 0,
                overrides: list[str] | tuple[str, ...] = ()) -> Stage1Config:
  """The preset, then `space`/`seed`, then `key=value` overrides."""
  return config_lib.make(Stage1Config, PRESETS, preset, overrides, space=space, seed=seed)


def step_weights(cfg: Stage1Config, num_steps: int) -> np.ndarray:
  """float32[T]: the loss weight of each MSQ step's VQ term (`msq.scc_weights`)."""
  t_max = num_steps if cfg.scc_t_max < 0 else cfg.scc_t_max
  if t_max > num_steps:
    raise PnagError(f"scc_t_max ({cfg.scc_t_max}) exceeds the {num_steps} MSQ steps of "
                    f"{cfg.space}")
  return msq.scc_weights(num_steps, t_max, cfg.scc_lambda)


# ---- the model ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Stage1Model:
  """What is static about a stage-1 model: sizes, graphdef and an abstract state.

  One instance per distinct structure (`static_model` caches them), compared by
  identity: it is hashable, so jitted functions take it as a static argument and
  every run of the same structure shares their compiles.
  """

  space: SearchSpace
  layout: msq.TokenLayout
  dim: int
  codebook_size: int
  decoder_hidden: int
  graphdef: nnx.GraphDef
  template: nnx.State

  @property
  def scales(self) -> tuple[int, ...]:
    return self.layout.scales

  def merge(self, params: dict) -> VQVAE:
    """The module holding `params` (a pure dict; concrete or traced)."""
    state = jax.tree.map(lambda x: x, self.template)  # fresh copy; filled in place below
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(self.graphdef, state)

  def abstract_params(self) -> dict:
    """The params' shapes and dtypes (`jax.ShapeDtypeStruct` leaves): restore targets."""
    return nnx.to_pure_dict(self.template)


def _vqvae(space: SearchSpace, cfg: Stage1Config, rngs: nnx.Rngs) -> VQVAE:
  return VQVAE(num_ops=space.num_ops, num_nodes=space.num_nodes,
               edge_budget=space.edge_budget, dim=cfg.dim,
               encoder_layers=cfg.encoder_layers, decoder_hidden=cfg.decoder_hidden,
               codebook_size=cfg.codebook_size, scales=cfg.scales(space.num_nodes),
               rngs=rngs)


@functools.lru_cache(maxsize=None)
def _static_model(space_name: str, dims: tuple) -> Stage1Model:
  space = get_space(space_name)
  cfg = Stage1Config(space=space_name, **dict(dims))
  graphdef, template = nnx.split(nnx.eval_shape(lambda: _vqvae(space, cfg, nnx.Rngs(0))))
  return Stage1Model(space, msq.TokenLayout(cfg.scales(space.num_nodes)), cfg.dim,
                     cfg.codebook_size, cfg.decoder_hidden, graphdef, template)


def static_model(cfg: Stage1Config) -> Stage1Model:
  """The (cached) static model of `cfg`; allocates no parameters."""
  dims = tuple((k, getattr(cfg, k)) for k in ("dim", "encoder_layers", "decoder_hidden",
                                              "codebook_size", "first_scale", "num_scales"))
  return _static_model(cfg.space, dims)


def init(cfg: Stage1Config) -> tuple[Stage1Model, dict]:
  """(static model, initial params as a pure dict), seeded by `cfg.seed`."""
  rngs = nnx.Rngs(params=jax.random.fold_in(jax.random.key(cfg.seed), 1))
  params = nnx.to_pure_dict(nnx.state(_vqvae(get_space(cfg.space), cfg, rngs)))
  return static_model(cfg), params


# ---- trained runs -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage1Run:
  """A restored stage-1 run: the static model, its params (pure dict), step and meta."""

  model: Stage1Model
  cfg: Stage1Config
  params: dict
  step: int
  workdir: Path
  meta: dict

  @property
  def space(self) -> SearchSpace:
    return self.model.space

  def train_genes(self) -> np.ndarray:
    """The training split the model saw (NB201: the seeded half), host int32[R, G]."""
    return datasets(self.cfg)[0]


def datasets(cfg: Stage1Config) -> tuple[np.ndarray, np.ndarray]:
  """(train genes, held-out genes) of a run with this config (`data.splits`)."""
  return train_heldout(get_space(cfg.space), cfg.seed, cfg.train_size, cfg.heldout_size)


def checkpoint_dir(workdir: str | Path) -> Path:
  return Path(workdir) / NAME / "checkpoints"


def read_meta(workdir: str | Path, step: int | None = None) -> dict | None:
  """The metadata of the stage-1 run's checkpoint `step` (default: the latest), without
  its params; None where there is no run."""
  if not checkpoint_dir(workdir).is_dir():
    return None
  with ckpt_lib.StageCheckpointer(workdir, NAME, read_only=True) as ckpt:
    if ckpt.latest_step() is None:
      return None
    return ckpt.read_meta(step)


def read_config(workdir: str | Path, step: int | None = None) -> Stage1Config | None:
  """The config of the stage-1 run in `workdir`, or None where there is none."""
  meta = read_meta(workdir, step)
  return None if meta is None else _config_of(meta, workdir)


def _config_of(meta: dict, workdir: str | Path) -> Stage1Config:
  return lineage.config_of(meta, Stage1Config, stage=NAME, workdir=workdir)


def load(workdir: str | Path, step: int | None = None) -> Stage1Run:
  """Restores the params of `workdir/stage1` at `step` (default: the latest).

  Needs no optimizer: only the params, as plain arrays on the default device.

  Raises:
    CheckpointError (a PnagError): no run there, no such step, a corrupt checkpoint,
      or metadata that is not a stage-1 run's.
  """
  workdir = Path(workdir)
  if not checkpoint_dir(workdir).is_dir():
    if (workdir / "checkpoints").is_dir() and workdir.name == NAME:
      # The stage's own folder: training there would nest a second run inside it.
      raise ckpt_lib.CheckpointError(
          f"{workdir} is a run's {NAME}/ folder; give the run's workdir, {workdir.parent}")
    raise ckpt_lib.CheckpointError(
        f"no stage-1 checkpoints under {workdir} "
        f"(train first: pnag train stage1 --workdir {workdir})")
  with ckpt_lib.StageCheckpointer(workdir, NAME, read_only=True) as ckpt:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise ckpt_lib.CheckpointError(f"workdir {workdir}: no committed stage-1 checkpoint")
    meta = ckpt.read_meta(step)
    cfg = _config_of(meta, workdir)
    model = static_model(cfg)
    params, _, _, _ = ckpt.restore(step, params_template=model.abstract_params())
  return Stage1Run(model, cfg, params, int(step), workdir, meta)
