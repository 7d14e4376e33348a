"""Fitting the surrogate to one task's references: test-time adaptation, and from scratch.

The meta-learned surrogate reads a new task only through its K references, in one
forward pass. With tens of references that pass leaves information unused: a task
that ranks archs much as a seen one does, but not quite (CIFAR-10 FGSM accuracy ranks
cells like clean accuracy, Spearman +0.81), is predicted as the seen one. A few steps
of the meta-training loss on the references themselves fit what the forward pass
cannot. Episodes are built from the references alone: a random non-empty subset is
the context and all K are the queries, so the model never sees a score the user did
not give. From the meta-trained params this is adaptation; from random init, the
same loop is the from-scratch baseline of `pnag eval transfer`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.padding import pow2_at_least
from pnag_jax.stages import surrogate as stage

#: Adaptation's learning rate, as a fraction of meta-training's: it refines a model
#: that already ranks, and must not forget the prior in 50 steps on a handful of archs.
ADAPT_LR_FRACTION = 0.1
EPISODES = 8
#: What ranks archs for a task given by references: the meta-learned network, or the
#: run's linear prior (`models/linear_prior.py`), which ranks additive costs better.
PREDICTORS = ("network", "linear")


def fit_on_references(cfg: stage.SurrogateConfig, params: dict, ref_genes: np.ndarray,
                      ref_scores: np.ndarray, *, steps: int, seed: int,
                      learning_rate: float, ema_decay: float = 0.0) -> dict:
  """`params` after `steps` of the meta-training loss on the K references alone."""
  from pnag_jax.training import surrogate as trainer  # pylint: disable=g-import-not-at-top
  genes = np.asarray(ref_genes, np.int32)
  scores = np.asarray(ref_scores, np.float32)
  k = len(genes)
  if steps < 0:
    raise PnagError(f"adaptation steps must be >= 0, got {steps}")
  if steps == 0:
    return params
  cfg = stage.SurrogateConfig(**{**cfg.__dict__, "seed": seed, "k_min": 1, "k_max": k,
                                 "queries": k, "episodes": EPISODES, "steps": steps,
                                 "warmup_steps": min(10, steps), "exclude": (),
                                 "learning_rate": learning_rate, "ema_decay": ema_decay})
  model = stage.static_model(cfg)
  loss = trainer.LossSettings.of(cfg)
  opt = trainer.OptimizerSettings.of(cfg)
  # The step donates its state: train a copy, or the caller's params (a loaded run's,
  # reused for the next task) would be deleted under it.
  state = trainer.init_state(jax.tree.map(jnp.copy, params), opt)
  # K padded to a power of two, for the context and the queries alike: a feedback walk
  # adapts at K, K + 1, K + 2, ..., and each new shape would compile the whole step.
  kp = pow2_at_least(k)
  pad = np.zeros((EPISODES, kp - k), np.int64)  # row 0 stands in; masked out
  qmask = np.broadcast_to(np.arange(kp) < k, (EPISODES, kp))
  rng = np.random.default_rng([seed, 13, k])
  for _ in range(steps):
    ctx = np.stack([rng.permutation(k) for _ in range(EPISODES)])
    take = np.concatenate([ctx, pad, np.tile(np.arange(k), (EPISODES, 1)), pad], 1)
    sizes = rng.integers(1, k + 1, EPISODES)
    mask = np.arange(kp)[None, :] < sizes[:, None]
    state, _ = trainer.train_step(state, genes[take], scores[take], mask, qmask,
                                  model=model, loss=loss, opt=opt)
  return state["ema"]


def adapted_predictor(run: stage.SurrogateRun, ref_genes: np.ndarray, ref_scores: np.ndarray,
                      *, steps: int, seed: int = 0) -> stage.Predictor:
  """The run's surrogate fine-tuned for `steps` on the references, bound to them.

  `steps=0` is the meta-trained surrogate itself (`run.predictor`).
  """
  if len(ref_genes) < 2 and steps > 0:
    raise PnagError("adapting to the references needs at least 2 of them")
  params = fit_on_references(run.cfg, run.params, ref_genes, ref_scores, steps=steps,
                             seed=seed,
                             learning_rate=run.cfg.learning_rate * ADAPT_LR_FRACTION)
  return stage.predictor(run.model, params, ref_genes, ref_scores)


def bound_predictor(run: stage.SurrogateRun, ref_genes: np.ndarray, ref_scores: np.ndarray,
                    *, predictor: str = "network", adapt_steps: int = 0, seed: int = 0):
  """The `predictor` of `PREDICTORS` bound to the references."""
  if predictor not in PREDICTORS:
    raise PnagError(f"unknown predictor {predictor!r}; choose from {', '.join(PREDICTORS)}")
  if predictor == "linear":
    if adapt_steps:
      raise PnagError("--adapt-steps fine-tunes the network; it does not go with "
                      "--predictor linear")
    return run.linear_predictor(ref_genes, ref_scores)
  return adapted_predictor(run, ref_genes, ref_scores, steps=adapt_steps, seed=seed)


def scratch_predictor(cfg: stage.SurrogateConfig, ref_genes: np.ndarray,
                      ref_scores: np.ndarray, *, seed: int, steps: int = 150
                      ) -> stage.Predictor:
  """The surrogate trained from scratch on K references only (a baseline)."""
  cfg = stage.SurrogateConfig(**{**cfg.__dict__, "seed": seed, "encoder_init": ""})
  model, params = stage.init(cfg)
  params = fit_on_references(cfg, params, ref_genes, ref_scores, steps=steps, seed=seed,
                             learning_rate=cfg.learning_rate)
  return stage.predictor(model, params, ref_genes, ref_scores)
