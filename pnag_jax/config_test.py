"""The config mechanism every stage shares: presets, typed overrides, JSON round trips."""

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given, strategies as st

from pnag_jax import config
from pnag_jax.errors import PnagError
from pnag_jax.stages import stage1


@dataclasses.dataclass(frozen=True)
class _Cfg:
  name: str = "a"
  steps: int = 1
  lr: float = 0.1
  flag: bool = False
  excluded: tuple[str, ...] = ()
  limit: int | None = None

  def __post_init__(self):
    if self.steps < 0:
      raise PnagError("steps must be >= 0")


_PRESETS: dict[str, dict[str, Any]] = {"small": {"steps": 2}, "big": {"steps": 9, "lr": 1.0}}


def test_preset_then_fields_then_overrides():
  cfg = config.make(_Cfg, _PRESETS, "big", ["lr=0.5", "flag=true", "excluded=cifar10, lat_*",
                                              "limit=7"], name="b")
  assert cfg == _Cfg(name="b", steps=9, lr=0.5, flag=True, excluded=("cifar10", "lat_*"),
                     limit=7)
  assert config.make(_Cfg, _PRESETS, "small", ["limit=none", "excluded="]) == _Cfg(steps=2)
  assert config.make(_Cfg, _PRESETS, "small", ["steps=3", "steps=4"]).steps == 4
  hash(cfg)  # static under jit


@pytest.mark.parametrize("overrides, match", [
    (["steps"], "--set expects key=value, got 'steps'"),
    (["nope=1"], "unknown config key 'nope'; keys: excluded, flag, limit, lr, name, steps"),
    (["steps=abc"], "--set steps=abc: expected int"),
    (["lr=fast"], "--set lr=fast: expected float"),
    (["flag=maybe"], "--set flag=maybe: expected bool"),
    (["limit=x"], "--set limit=x: expected int"),
    (["steps=-1"], "steps must be >= 0"),
])
def test_bad_overrides_are_one_line_errors(overrides, match):
  with pytest.raises(PnagError, match=match):
    config.make(_Cfg, _PRESETS, "small", overrides)


def test_unknown_preset():
  with pytest.raises(PnagError, match="unknown preset 'fast'; presets: small, big"):
    config.make(_Cfg, _PRESETS, "fast")


def test_json_round_trip_restores_tuples():
  cfg = _Cfg(excluded=("x", "y"), limit=3)
  import json  # pylint: disable=g-import-not-at-top
  back = config.from_dict(_Cfg, json.loads(config.to_json(cfg)), where="W")
  assert back == cfg and isinstance(back.excluded, tuple)
  with pytest.raises(PnagError, match="W: unknown config keys extra"):
    config.from_dict(_Cfg, {"extra": 1}, where="W")


@given(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_parse_back_exactly(n, x):
  cfg = config.make(_Cfg, _PRESETS, "small", [f"steps={abs(n)}", f"lr={x!r}"])
  assert cfg.steps == abs(n) and cfg.lr == x


def test_stage1_presets_and_checks():
  paper = stage1.make_config("paper")
  assert (paper.learning_rate, paper.weight_decay, paper.batch_size, paper.epochs) == (
      1e-4, 1e-4, 256, 300)
  quick = stage1.make_config("quick", space="mbv3", seed=3, overrides=["num_scales=6"])
  assert (quick.space, quick.seed, quick.max_steps) == ("mbv3", 3, 400)
  assert quick.scales(22) == (3, 7, 11, 14, 18, 22)
  with pytest.raises(PnagError, match="num_scales"):
    stage1.make_config("quick", overrides=["num_scales=-1"])
  with pytest.raises(PnagError, match="scc_variant must be"):
    stage1.make_config("quick", overrides=["scc_variant=other"])
  with pytest.raises(PnagError, match="dim must be >= 1"):
    stage1.make_config("quick", overrides=["dim=0"])
  # Each would fail later with a traceback (a zero modulus, numpy's negative seed) or
  # train silently on something else (a NaN model, seed 2**32 + 5 as seed 5).
  for bad, fragment in (("log_every=0", "log_every must be >= 1"),
                        ("eval_every=0", "eval_every must be >= 1"),
                        ("checkpoint_every=0", "checkpoint_every must be >= 1"),
                        ("scc_t_max=-5", "scc_t_max must be -1"),
                        ("learning_rate=nan", "learning_rate must be finite and > 0"),
                        ("weight_decay=nan", "weight_decay must be finite and >= 0"),
                        ("scc_lambda=-1", "scc_lambda must be finite and >= 0"),
                        ("beta_kl=inf", "beta_kl must be finite and >= 0, got inf")):
    with pytest.raises(PnagError, match=re.escape(fragment)):
      stage1.make_config("quick", overrides=[bad])
  for seed, fragment in ((-3, "seed must be in [0, 2**32 - 1], got -3"),
                         (2**32 + 5, "seed must be in [0, 2**32 - 1]")):
    with pytest.raises(PnagError, match=re.escape(fragment)):
      stage1.make_config("quick", seed=seed)
  # What the command sets itself (--space, --seed) is no --set key: the override won
  # unseen, and an ablation labelled NB201 trained MBV3 runs.
  for bad in ("space=mbv3", "seed=1"):
    with pytest.raises(PnagError, match=rf"--set {bad[:4]}\w*=\.\.\. is refused: the "
                                        "command sets"):
      stage1.make_config("quick", overrides=[bad])
  # A resumed run's config refuses them as well (a surrogate's --set space=darts was
  # reported as "--exclude ... matches no task").
  with pytest.raises(PnagError, match=r"^--set space=\.\.\. is refused: the command sets"):
    config.with_overrides(stage1.make_config("quick"), ["space=nb201"], where="W",
                          own=("space", "seed"))
  # A sampled space needs held-out archs; NB201's split is fixed, and ignores the size.
  with pytest.raises(PnagError, match="heldout_size must be >= 1"):
    stage1.make_config("quick", space="mbv3", overrides=["heldout_size=0"])
  assert stage1.make_config("quick", overrides=["heldout_size=0"]).heldout_size == 0
  # A run trained before these checks existed still loads: a config read back is not
  # held to them (only what no run could train is).
  old = config.from_dict(stage1.Stage1Config, {"seed": 2**32 + 5, "learning_rate": -1.0},
                         where="test")
  assert old.seed == 2**32 + 5
  with pytest.raises(PnagError, match="seed must be"):
    config.with_overrides(old, ["max_steps=5"], where="test")
  with pytest.raises(PnagError, match="log_every must be >= 1"):
    config.from_dict(stage1.Stage1Config, {"log_every": 0}, where="test")
  with pytest.raises(PnagError, match=r"scc_t_max \(99\) exceeds the 6 MSQ steps of nb201"):
    stage1.step_weights(stage1.make_config("quick", overrides=["scc_t_max=99"]), 6)


def test_every_stage_refuses_a_seed_that_jax_would_wrap():
  from pnag_jax.stages import stage2, surrogate  # pylint: disable=g-import-not-at-top
  for make in (lambda s: stage2.make_config("test", seed=s),
               lambda s: surrogate.make_config("test", "nb201", s)):
    make(2**32 - 1)
    for seed in (2**32, -1):
      with pytest.raises(PnagError, match=re.escape("seed must be in [0, 2**32 - 1]")):
        make(seed)
