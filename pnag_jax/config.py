"""One config mechanism for every stage: frozen dataclasses, presets, typed overrides.

A stage's config is a frozen, hashable dataclass; its presets are dicts of field
values; a run is `preset, then explicit fields, then --set key=value overrides`:

  cfg = config.make(Stage1Config, PRESETS, "quick", ["dim=16", "arch_scc=true"],
                    space="mbv3")

Values are parsed by the field's annotation (int, float, bool, str, `X | None`, and
`tuple[X, ...]` written comma-separated), so a stage adds fields, not parsing code.
Validation lives in the dataclass's `__post_init__`, which also runs when a config is
read back from a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pnag_jax.errors import PnagError

C = TypeVar("C")

_BOOLS = {"true": True, "1": True, "false": False, "0": False}


#: PRNG seeds: JAX keeps a seed's low 32 bits, so a larger one would repeat a smaller.
MAX_SEED = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> None:
  """A one-line error unless `seed` is in [0, 2**32 - 1], as numpy and JAX read it alike."""
  if not 0 <= seed <= MAX_SEED:
    raise PnagError(f"{name} must be in [0, 2**32 - 1], got {seed}")


def check_learning_rate(value: float, name: str = "learning_rate") -> None:
  """A one-line error unless `value` is finite and > 0 (a NaN rate trains a NaN model)."""
  if not (math.isfinite(value) and value > 0):
    raise PnagError(f"{name} must be finite and > 0, got {value}")


def check_distinct(values: Sequence[Any], flag: str, what: str) -> None:
  """A one-line error where a repeatable flag gives a value twice (a protocol would run,
  or count, that value twice)."""
  if len(set(values)) < len(values):
    raise PnagError(f"{flag} gives {what} twice: {' '.join(map(str, values))}")


def check_non_negative(cfg: Any, names: Sequence[str]) -> None:
  """A one-line error for the first of `cfg`'s fields `names` not finite and >= 0."""
  for name in names:
    if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0):
      raise PnagError(f"{name} must be finite and >= 0, got {getattr(cfg, name)}")


def check_at_least(cfg: Any, names: Sequence[str], minimum: int) -> None:
  """A one-line error for the first of `cfg`'s fields `names` below `minimum`."""
  for name in names:
    if getattr(cfg, name) < minimum:
      raise PnagError(f"{name} must be >= {minimum}, got {getattr(cfg, name)}")


def _parse(kind: Any, raw: str, key: str) -> Any:
  """`raw` as a value of the annotation `kind`."""
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin in (typing.Union, types.UnionType) and type(None) in args:
    if raw.lower() in ("none", "null", ""):
      return None
    (inner,) = [a for a in args if a is not type(None)]
    return _parse(inner, raw, key)
  if origin is tuple:
    inner = args[0]
    return tuple(_parse(inner, part.strip(), key) for part in raw.split(",") if part.strip())
  try:
    if kind is bool:
      return _BOOLS[raw.lower()]
    if kind in (int, float, str):
      return kind(raw)
  except (KeyError, ValueError):
    name = getattr(kind, "__name__", str(kind))
    raise PnagError(f"--set {key}={raw}: expected {name}") from None
  raise TypeError(f"config field {key!r} has an unsupported type {kind!r}")


def field_types(cls: type) -> dict[str, Any]:
  """Field name -> resolved annotation of a config dataclass."""
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_overrides(cls: type, overrides: Sequence[str]) -> dict[str, Any]:
  """`["key=value", ...]` -> typed values; later keys win.

  Raises:
    PnagError: no `=`, an unknown key, or a value of the wrong type.
  """
  kinds = field_types(cls)
  out = {}
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep:
      raise PnagError(f"--set expects key=value, got {item!r}")
    if key not in kinds:
      raise PnagError(f"unknown config key {key!r}; keys: {', '.join(sorted(kinds))}")
    out[key] = _parse(kinds[key], raw, key)
  return out


def make(cls: type[C], presets: Mapping[str, Mapping[str, Any]], preset: str,
         overrides: Sequence[str] = (), **fields: Any) -> C:
  """The preset's values, then `fields`, then the `key=value` overrides.

  Raises:
    PnagError: an unknown preset, a bad override, or a value `cls` rejects.
  """
  if preset not in presets:
    raise PnagError(f"unknown preset {preset!r}; presets: {', '.join(presets)}")
  parsed = parse_overrides(cls, overrides)
  _refuse_own(parsed, fields)
  return _checked_new(cls(**{**presets[preset], **fields, **parsed}))


def with_overrides(cfg: C, overrides: Sequence[str], *, where: str,
                   own: Sequence[str] = ()) -> C:
  """`cfg` with `key=value` overrides applied and checked (a resumed run's config);
  the keys in `own` are the command's, as `make`'s `fields`."""
  cls = type(cfg)
  parsed = parse_overrides(cls, overrides)
  _refuse_own(parsed, own)
  out = from_dict(cls, {**to_dict(cfg), **parsed}, where=where)
  return _checked_new(out) if overrides else out


def _refuse_own(parsed: Mapping[str, Any], own) -> None:
  # The command's own settings (its --space, --seed, --exclude): an override would win
  # over them unseen, e.g. an MBV3 run in an ablation its report calls NB201's.
  for key in sorted(set(parsed) & set(own)):
    raise PnagError(f"--set {key}=... is refused: the command sets {key} itself "
                    f"(with --{key.replace('_', '-')} where it has that flag)")


PRESET_HELP = ("named settings (default: quick for a new run; a resumed run keeps its "
               "saved config, which a preset given replaces, earlier --set values "
               "included; a preset that changes a setting frozen for resume is refused)")


def set_keys(cls: type, own: Sequence[str]) -> str:
  """The keys `--set` takes, for a trainer's help: the config's, less the command's own."""
  return ", ".join(k for k in field_types(cls) if k not in own)


def _checked_new(cfg: C) -> C:
  """`cfg`, after its class's `check_new()` if it has one: the checks of values a user
  gives now. They are not run on configs read back (`from_dict`), so a run trained
  before a check existed still loads; `__post_init__` keeps what no run could train.

  No float setting may be NaN or infinite: `--set weight_decay=nan` trained a NaN model
  and `grad_clip=nan` turned clipping off, both without a word.
  """
  check = getattr(cfg, "check_new", None)
  if check is not None:
    check()
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if isinstance(value, float) and not math.isfinite(value):
      raise PnagError(f"{f.name} must be finite, got {value}")
  return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
  return dataclasses.asdict(cfg)


def to_json(cfg: Any) -> str:
  return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def differing(saved: Any, asked: Any, skip: Sequence[str] = ()) -> list[str]:
  """The fields of config `asked`, but `skip`, whose values in `saved` differ, in order."""
  return [f.name for f in dataclasses.fields(asked)
          if f.name not in skip and getattr(saved, f.name) != getattr(asked, f.name)]


def from_dict(cls: type[C], values: Mapping[str, Any], *, where: str) -> C:
  """A config read back from JSON (a checkpoint or `config.json`).

  JSON turns tuples into lists; they are turned back so the config stays hashable.

  Raises:
    PnagError: keys `cls` does not have, or values it rejects.
  """
  kinds = field_types(cls)
  unknown = sorted(set(values) - set(kinds))
  if unknown:
    raise PnagError(f"{where}: unknown config keys {', '.join(unknown)} "
                    "(written by a newer pnag_jax?)")
  fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
  try:
    return cls(**fixed)
  except TypeError as e:
    raise PnagError(f"{where}: unreadable config ({e})") from e
