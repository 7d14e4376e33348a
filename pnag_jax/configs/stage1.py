"""Stage-1 (VQ-VAE) configuration: a frozen, hashable dataclass with named presets.

  pnag train stage1 --space nb201 --preset quick --set codebook_size=128 --set scc_t_max=0
"""

from __future__ import annotations

import dataclasses
import json
import typing

import numpy as np

from pnag_jax.errors import PnagError


@dataclasses.dataclass(frozen=True)
class Stage1Config:
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
  max_steps: int = 0              # > 0 caps the run regardless of epochs
  warmup_steps: int = 0
  # Data for sampled spaces (NB201 always uses its seeded 50/50 split).
  train_size: int = 50_000
  heldout_size: int = 10_000
  # Bookkeeping.
  eval_every: int = 500
  checkpoint_every: int = 500
  log_every: int = 50

  def replace(self, **kw) -> "Stage1Config":
    return dataclasses.replace(self, **kw)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


PRESETS: dict[str, dict] = {
    # The paper's hyperparameters, verbatim.
    "paper": {},
    # About a minute on 2 CPU cores: a larger step size compensates for far fewer steps.
    "quick": {"learning_rate": 3e-3, "epochs": 10_000, "max_steps": 400,
              "warmup_steps": 50, "eval_every": 200, "checkpoint_every": 200,
              "train_size": 20_000, "heldout_size": 2_000},
}


def scale_schedule(cfg: Stage1Config, n: int) -> tuple[int, ...]:
  """The MSQ scales for an N-node space: coarse to fine, ending at N."""
  first = min(cfg.first_scale, n)
  if cfg.num_scales <= 0 or cfg.num_scales >= n - first + 1:
    return tuple(range(first, n + 1))
  if cfg.num_scales == 1:
    return (n,)
  return tuple(sorted({int(round(x)) for x in np.linspace(first, n, cfg.num_scales)}))


def _coerce(field: dataclasses.Field, raw: str):
  kind = typing.get_type_hints(Stage1Config)[field.name]
  try:
    if kind is bool:
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(raw)
      return raw.lower() in ("true", "1")
    return kind(raw)
  except ValueError:
    raise PnagError(f"--set {field.name}={raw}: expected {kind.__name__}") from None


def make_config(preset: str = "quick", space: str = "nb201", seed: int = 0,
                overrides: list[str] | tuple[str, ...] = ()) -> Stage1Config:
  """Preset, then `--space/--seed`, then `key=value` overrides.

  Raises:
    PnagError: unknown preset, unknown key, or a value of the wrong type.
  """
  if preset not in PRESETS:
    raise PnagError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
  cfg = Stage1Config(space=space, seed=seed, **PRESETS[preset])
  fields = {f.name: f for f in dataclasses.fields(Stage1Config)}
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep:
      raise PnagError(f"--set expects key=value, got {item!r}")
    if key not in fields:
      raise PnagError(f"unknown config key {key!r}; keys: {', '.join(sorted(fields))}")
    cfg = cfg.replace(**{key: _coerce(fields[key], raw)})
  if cfg.num_scales < 0 or cfg.first_scale < 1:
    raise PnagError("num_scales must be >= 0 and first_scale >= 1")
  if cfg.scc_variant not in ("prefix", "paper_literal"):
    raise PnagError(f"scc_variant must be 'prefix' or 'paper_literal', got {cfg.scc_variant!r}")
  return cfg
