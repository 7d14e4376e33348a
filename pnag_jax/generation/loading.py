"""Loads a trained stage-1 run (workdir) for generation: model, params, training set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.configs.stage1 import Stage1Config
from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space
from pnag_jax.training import stage1


@dataclasses.dataclass(frozen=True)
class TrainedStage1:
  """A restored stage-1 model: static parts, params (pure dict) and its step."""

  model: stage1.Stage1Model
  params: dict
  step: int
  workdir: Path

  @property
  def space(self):
    return self.model.space

  @property
  def cfg(self) -> Stage1Config:
    return self.model.cfg

  def train_genes(self) -> np.ndarray:
    """The training split the model saw (NB201: the seeded half), host int32[R, G]."""
    return stage1.make_datasets(self.space, self.cfg)[0]


def load_stage1(workdir: str | Path, step: int | None = None) -> TrainedStage1:
  """Restores `workdir/stage1` at `step` (default: the latest).

  Raises:
    PnagError (CheckpointError): no run there, a corrupt checkpoint, or metadata
      that is not a stage-1 run.
  """
  workdir = Path(workdir)
  if not (workdir / stage1.STAGE / "checkpoints").is_dir():
    raise ckpt_lib.CheckpointError(f"no stage-1 checkpoints under {workdir} "
                                   f"(train first: pnag train stage1 --workdir {workdir})")
  with ckpt_lib.StageCheckpointer(workdir, stage1.STAGE, read_only=True) as ckpt:
    meta = ckpt.read_meta(step)
    ckpt_lib.check_meta(meta, {"stage": stage1.STAGE}, where=f"workdir {workdir}")
    try:
      cfg = Stage1Config(**meta["config"])
    except (KeyError, TypeError) as e:
      raise ckpt_lib.CheckpointError(
          f"workdir {workdir}: checkpoint config is unreadable ({e})") from e
    space = get_space(cfg.space)
    m, params = stage1.build_model(space, cfg)
    # Templates only: restoring against abstract shapes allocates nothing twice.
    params_t = jax.eval_shape(lambda: params)
    # The optimizer state's structure does not depend on the schedule's length.
    opt_t = jax.eval_shape(stage1.make_optimizer(cfg, 2).init, params_t)
    params, _, _, _ = ckpt.restore(step, params_template=params_t, opt_state_template=opt_t)
    resolved = step if step is not None else ckpt.latest_step()
  if resolved is None:
    raise PnagError(f"workdir {workdir}: no committed checkpoint")
  return TrainedStage1(m, params, int(resolved), workdir)
