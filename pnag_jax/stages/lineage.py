"""Checkpoint lineage: what a stage was built on, and what must not change on resume.

Every stage checkpoint's metadata (`meta`) holds

  stage, space, config, version    what the run is;
  params_sha256                    a content hash of the params saved at that step;
  parents                          per parent stage, the step it was built on and that
                                   step's params_sha256 (empty for stage 1);
  frozen                           the settings a resumed run must share (data split,
                                   model sizes; for a surrogate, its excluded tasks);
  train_seconds                    the training time up to that step, over every
                                   invocation (a trainer's report reads it on resume).

Loading a stage whose parent changed underneath it (retrained, resumed past the
recorded step, or another run copied in), or resuming with other frozen settings, is
a one-line `CheckpointError` instead of a model silently built on something else.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

import pnag_jax
from pnag_jax import config as config_lib
from pnag_jax.checkpoint import CheckpointError, check_meta


def params_sha256(params: Any) -> str:
  """sha256 over every leaf's path, dtype, shape and bytes, in path order."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape};".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def stage_meta(*, stage: str, space: str, config: Mapping[str, Any], params: Any,
               frozen: Mapping[str, Any], parents: tuple[dict, ...] = (),
               train_seconds: float | None = None) -> dict:
  """The metadata saved with each checkpoint step of a stage."""
  meta = {"stage": stage, "space": space, "config": dict(config),
          "version": pnag_jax.__version__, "params_sha256": params_sha256(params),
          "parents": list(parents), "frozen": dict(frozen)}
  if train_seconds is not None:
    meta["train_seconds"] = float(train_seconds)
  return meta


def config_of(meta: Mapping[str, Any], cls, *, stage: str, workdir) -> Any:
  """The `cls` config saved in a `stage` checkpoint's metadata.

  Raises:
    CheckpointError: the checkpoint is another stage's, or has no readable config.
  """
  check_meta(meta, {"stage": stage}, where=f"workdir {workdir}")
  if not isinstance(meta.get("config"), dict):
    raise CheckpointError(f"workdir {workdir}: {stage} checkpoint has no readable config")
  return config_lib.from_dict(cls, _as_trained(cls, meta["config"]),
                              where=f"workdir {workdir}")


def _as_trained(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
  """A saved `cls` config with the keys added to `cls` since, at the value each had
  then (`cls.ADDED_KEYS`, not always today's default). A value that is a function is
  applied to the saved config: for a key split out of another. Both `config_of` and
  `check_frozen` read a checkpoint through this, so the two cannot disagree."""
  added = {k: v(saved) if callable(v) else v
           for k, v in getattr(cls, "ADDED_KEYS", {}).items()}
  return {**added, **saved}


def _defaults(cls) -> dict[str, Any]:
  return {f.name: f.default for f in dataclasses.fields(cls)
          if f.default is not dataclasses.MISSING}


def parent_entry(stage: str, step: int, params: Any) -> dict:
  """How a child records the parent run it is built on."""
  return {"stage": stage, "step": int(step), "params_sha256": params_sha256(params)}


def parent_hashes(meta: Mapping[str, Any]) -> dict[str, str]:
  """stage name -> the params sha256 a child recorded for that parent."""
  return {p["stage"]: p["params_sha256"] for p in meta.get("parents", [])}


def check_frozen(meta: Mapping[str, Any], frozen: Mapping[str, Any], cls, *,
                 where: str) -> None:
  """A resumed run must keep the settings its checkpoint was made with.

  Checkpoints from before lineage was recorded have no `frozen`; their config holds
  the same keys. A key that the config class `cls` gained later reads as it was then
  (`_as_trained`), and any other missing key as today's default, as in `config_of`.

  Raises:
    CheckpointError: settings differ; the one line names each and both its values.
  """
  config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
  # As `config_of` reads it (today's defaults fill what `_as_trained` does not, as
  # `from_dict` does); the frozen block wins, and is absent before lineage.
  saved = {**_defaults(cls), **_as_trained(cls, config), **(meta.get("frozen") or {})}
  differ = []
  for key, want in frozen.items():
    have = _tuples(saved.get(key))
    if have != want:
      differ.append(f"{key}={have!r}, not {want!r}")
  if differ:
    raise CheckpointError(f"{where} was trained with {'; '.join(differ)}; resume with the "
                          "same settings or use a new --workdir")


def _tuples(value: Any) -> Any:
  """`value` with JSON's lists turned back into tuples, at any depth (a config's
  `tuple[tuple[str, object], ...]` comes back from JSON as lists of lists)."""
  return tuple(map(_tuples, value)) if isinstance(value, list) else value


def check_not_past(step: int, total: int, *, where: str, limit: str, how: str) -> None:
  """A resumed run may not be shorter than its checkpoint: it would report `total` steps
  and serve the later step's params.

  Args:
    step: the checkpoint's step; total: the run's steps now.
    where, limit, how: for the message: the run, its step limit, and the setting that
      raises it.

  Raises:
    CheckpointError: `step` > `total`.
  """
  if step > total:
    raise CheckpointError(f"{where} is at step {step}, past {limit}; resume with {how} >= "
                          f"{step} or use a new --workdir")


def check_finished(meta: Mapping[str, Any], cfg: Any, step: int, total: int, *,
                   where: str, steps_of=None) -> None:
  """A run resumed at its last step (`step == total`) trains no more, so a rerun may
  change only what changes no trained parameter (`AFTER_TRAINING` of the config's
  class), which its report then measures anew. Any other setting would be written into
  `config.json` and the report without a step trained under it.

  `steps_of(config)`: a config's step count. Where the checkpoint's config has as many
  steps, the keys that only set that count (`LENGTH_KEYS`: `max_steps`, `epochs`) may
  be spelt otherwise; a run killed at this step of a longer schedule may not.

  Raises:
    CheckpointError: a training setting differs from the checkpoint's; the one line
      names each and both its values.
  """
  if step != total:
    return
  cls = type(cfg)
  config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
  saved = config_lib.from_dict(cls, _as_trained(cls, config), where=where)  # as config_of
  after = getattr(cls, "AFTER_TRAINING", ())
  free = (*after, *getattr(cls, "LENGTH_KEYS", ())) if (
      steps_of is not None and steps_of(saved) == total) else after
  differ = [f"{k}={getattr(saved, k)!r}, not {getattr(cfg, k)!r}"
            for k in config_lib.differing(saved, cfg, free)]
  if differ:
    raise CheckpointError(
        f"{where} finished its {total} steps trained with {'; '.join(differ)}, and trains "
        f"no more (a rerun may change only {', '.join(after)}); train it on for more "
        "steps, or use a new --workdir")


def check_recorded(meta: Mapping[str, Any], recorded: Mapping[str, tuple[str, ...]], *,
                   where: str,
                   remedy: str = "resume with the same data dir or use a new --workdir") -> None:
  """A resumed run must read the tasks it started with (`recorded`: name lists that the
  run derived from its data dir, saved in its `frozen` block).

  Another data dir, or a table added to it, would otherwise change them halfway: a
  held-out task trained on, or conditions drawn from another bank. Checkpoints from
  before a list was recorded are not checked for it.

  Raises:
    CheckpointError: a list differs; the message names the first few of each side.
  """
  saved = meta.get("frozen") or {}
  for key, now in recorded.items():
    if key not in saved or tuple(saved[key]) == tuple(now):
      continue
    was = tuple(saved[key])
    added = _first_few([t for t in now if t not in was])
    gone = _first_few([t for t in was if t not in now])
    raise CheckpointError(
        f"{where} was trained with other {key} ({len(was)}, now {len(now)}; new: {added}; "
        f"gone: {gone}); {remedy}")


def _first_few(names: list[str], n: int = 5) -> str:
  if not names:
    return "none"
  return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def retrain_advice(meta: Mapping[str, Any], workdir: str | Path) -> str:
  """What to do with a stage (`meta` of its checkpoint) whose parents changed: retrain
  it, but not over its own checkpoints, which refuse that as another run's resume."""
  return (f"retrain it after removing {Path(workdir) / str(meta.get('stage'))}, or in a new "
          "--workdir holding its parents")


def check_parents(meta: Mapping[str, Any], workdir: str | Path, *, where: str,
                  load_parent) -> dict[str, Any]:
  """Loads each recorded parent at its recorded step and checks its params' hash.

  Args:
    meta: the child's checkpoint metadata.
    workdir: the run directory that holds parent and child.
    where: how to name the child in messages.
    load_parent: `(stage name, workdir, step) -> run` with a `.params` pytree.

  Returns:
    stage name -> the loaded parent run.

  Raises:
    CheckpointError: a parent step is gone, or holds other params than the child saw.
  """
  runs = {}
  for entry in meta.get("parents", []):
    name, step = entry["stage"], entry["step"]
    try:
      run = load_parent(name, workdir, step)
    except CheckpointError as e:
      raise CheckpointError(f"{where} was built on {name} step {step}, which cannot be "
                            f"loaded any more ({e}); {retrain_advice(meta, workdir)}") from e
    got = params_sha256(run.params)
    if got != entry["params_sha256"]:
      raise CheckpointError(
          f"{where} was built on {name} step {step} with params sha256 "
          f"{entry['params_sha256'][:12]}, but {Path(workdir) / name} now holds "
          f"{got[:12]} at that step: its parent changed underneath it; "
          f"{retrain_advice(meta, workdir)}")
    runs[name] = run
  return runs
