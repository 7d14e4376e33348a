"""Trained stages: each module owns its config, model, `init` and `load(workdir, step)`.

A stage is what a `pnag train <stage>` run leaves under `<workdir>/<stage>/`. Loading
one needs no trainer and no optimizer, so generation and evaluation import stages
only. Stages are imported lazily by name, like spaces.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pnag_jax.errors import PnagError

#: Stage name -> module. Each exposes NAME, a config class, `init` and `load`.
_REGISTRY = {
    "stage1": "pnag_jax.stages.stage1",
    "surrogate": "pnag_jax.stages.surrogate",
}

STAGE_NAMES = tuple(_REGISTRY)


def get_stage(name: str) -> ModuleType:
  if name not in _REGISTRY:
    raise PnagError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
  return importlib.import_module(_REGISTRY[name])


__all__ = ["STAGE_NAMES", "get_stage"]
