"""Bulk generation from a trained stage-1 model (DESIGN §4)."""

from pnag_jax.generation.engine import Generated, GenerationConfig, Generator, PRIORS
from pnag_jax.generation.loading import TrainedStage1, load_stage1
from pnag_jax.generation.priors import FittedPriors, fit_priors, fitted_priors

__all__ = [
    "FittedPriors", "Generated", "GenerationConfig", "Generator", "PRIORS",
    "TrainedStage1", "fit_priors", "fitted_priors", "load_stage1",
]
