"""The `ar` prior: stage 2's next-scale transformer as a sampler plug-in (DESIGN §4).

  sampler = Sampler.from_run(stage1.load(w), SamplerConfig(prior="ar", top_k=16))

Each architecture's tokens come from `models.var.generate` for a batch of one, under
the sampler's `vmap`: scale by scale against a KV cache, with classifier-free
guidance, temperature, top-k and top-p. Everything the engine guarantees holds
unchanged: architecture i still draws from `fold_in(key, i)` alone, so the output is
the same for any chunk size or device count up to XLA's floating point.

The transformer's params are jit arguments (`consts["prior"]["params"]`); its static
graph is a field of the prior, filled by `bind(run)`, which loads `W/stage2` beside the
sampler's `W/stage1` and checks that stage 2 was trained on exactly that stage 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.generation.priors import Prior, register
from pnag_jax.models import var
from pnag_jax.stages import lineage
from pnag_jax.stages.stage1 import Stage1Model, Stage1Run


@register
@dataclasses.dataclass(frozen=True)
class ARPrior(Prior):
  """Stage 2's conditional transformer, sampled scale by scale.

  Attributes:
    temperature: divides the logits (1: as trained; 0: argmax at every scale).
    cfg_scale: classifier-free guidance at the last scale, rising linearly from 0 at
      the first (VAR's ramp); 0 computes no null half at all.
    top_k: keep the k most likely codes of each token (0: all).
    top_p: keep the smallest set of codes with mass >= p (1: all).
    net: stage 2's static model; set by `bind`.
  """

  name: ClassVar[str] = "ar"
  default_temperature: ClassVar[float] = 1.0
  takes_condition: ClassVar[bool] = True

  cfg_scale: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  net: Any = None
  # The loaded stage-2 run: host arrays, so out of eq and hash (the static spec).
  run2: Any = dataclasses.field(default=None, compare=False, repr=False)

  def __post_init__(self):
    super().__post_init__()
    if not math.isfinite(self.cfg_scale) or self.cfg_scale < 0:
      raise PnagError(f"--cfg-scale must be a finite number >= 0, got {self.cfg_scale}")
    if self.top_k < 0:
      raise PnagError(f"--top-k must be >= 0 (0 keeps every code), got {self.top_k}")
    if not 0.0 < self.top_p <= 1.0:
      raise PnagError(f"--top-p must be in (0, 1], got {self.top_p}")

  def bind(self, run: Stage1Run) -> "ARPrior":
    # Stage 2 imports stage 1's training code; only `ar` needs it.
    from pnag_jax.stages import stage2  # pylint: disable=g-import-not-at-top
    run2 = stage2.load(run.workdir)
    # stage2.load checked its recorded parent; the sampler's stage 1 may be a later step.
    if lineage.parent_hashes(run2.meta).get("stage1") != lineage.params_sha256(run.params):
      raise PnagError(f"stage 2 in {run.workdir} was trained on another stage 1 than the "
                      f"one being sampled (step {run.step})")
    if self.cfg_scale and run2.model.cond_dim == 0:
      raise PnagError(f"--cfg-scale needs a conditional stage 2; the one in {run.workdir} "
                      f"is unconditional (condition 'none')")
    return dataclasses.replace(self, net=run2.model, run2=run2)

  def tables(self, run: Stage1Run) -> dict[str, Any]:
    del run
    if self.run2 is None:
      raise PnagError("the ar prior is not bound to a stage-2 run (Prior.bind)")
    return {"params": self.run2.params}

  def condition_dim(self) -> int:
    return 0 if self.net is None else self.net.cond_dim

  def draw(self, consts, key, cond, model: Stage1Model):
    net = self.net.merge(consts["prior"]["params"])
    if jax.tree.leaves(cond):
      chex.assert_shape(cond, (self.net.cond_dim,))
      c = net.condition(cond[None], jnp.zeros((1,), bool))
    else:
      c = net.condition(None, jnp.ones((1,), bool))
    tokens = var.generate(net, consts["codebook"], key, c, cfg_scale=self.cfg_scale,
                          temperature=self.tau, top_k=self.top_k, top_p=self.top_p)
    chex.assert_shape(tokens, (1, model.layout.num_tokens))
    return tokens[0]


def task_condition_from_file(workdir, refs, *, minimize: bool, target: float) -> np.ndarray:
  """`--refs refs.csv [--minimize] --target q` -> the condition vector of `W/stage2`.

  Raises:
    PnagError: stage 2 is not task-conditioned, or the references or target are bad.
  """
  from pnag_jax import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from pnag_jax.stages import stage2  # pylint: disable=g-import-not-at-top
  run2 = stage2.load_conditioned(workdir, "task", "--target needs")
  data = tasks_lib.read_task_csv(refs, run2.stage1.space.name, minimize=minimize).data()
  return stage2.task_condition(run2.surrogate, data.genes, data.scores, minimize=minimize,
                               target=target)


def budget_condition_from_workdir(workdir, *, params: float | None = None,
                                  flops: float | None = None) -> np.ndarray:
  """`--params N` / `--flops N` -> the condition vector of `W/stage2`.

  Raises:
    PnagError: stage 2 is not budget-conditioned, or a budget is outside its range.
  """
  from pnag_jax.stages import stage2  # pylint: disable=g-import-not-at-top
  run2 = stage2.load_conditioned(workdir, "budget", "--params and --flops need")
  return stage2.budget_condition(run2.budget_range, run2.cfg.budget_keys, params=params,
                                 flops=flops)
