"""Per-stage training checkpoints on orbax-checkpoint (v0 API, 0.12.x).

Each training stage owns one `orbax.checkpoint.CheckpointManager`, rooted at
`<workdir>/<stage>/checkpoints`. A step directory holds four items:

  params     StandardSave of the parameter pytree (a plain dict).
  opt_state  StandardSave of the optax state.
  rng        StandardSave of `{"key_data": jax.random.key_data(key)}`. Raw key
             data is portable across JAX versions, unlike a typed key array.
  meta       JsonSave of a caller-supplied dict (config, space, version, ...).

Restores always go through abstract targets built from caller templates: without
a target orbax has no record of the Python types, and optax NamedTuple states
come back as lists or dicts.

Atomicity (what orbax 0.12.8 does on a local filesystem; see
`orbax/checkpoint/_src/path/atomicity.py` and `.../path/step.py`):

  * A save of step N writes into `<root>/N.orbax-checkpoint-tmp/`; each item
    goes first to `<item>.orbax-checkpoint-tmp/` inside it and is renamed to
    `<item>/` once written.
  * On commit orbax writes `commit_success.txt` into the step directory and
    renames `N.orbax-checkpoint-tmp` to `N` (`AtomicRenameTemporaryPath`).
    A POSIX rename is atomic, so step `N` appears whole or not at all.
  * Step discovery skips every name containing `.orbax-checkpoint-tmp`
    (`AtomicRenameTemporaryPath.validate_final`), so a run killed mid-save
    leaves only complete steps visible; `latest_step()` and `restore()` see the
    last committed step. Saving step N again deletes a stale
    `N.orbax-checkpoint-tmp` before writing, so a resumed run that reaches
    step N simply overwrites the debris.
  * We leave `cleanup_tmp_directories` off: it deletes every temporary
    directory when a manager is created, which would destroy a save still in
    flight from another process (e.g. a trainer, while `pnag generate` reads
    the same workdir).
  * Old steps beyond `max_to_keep` are deleted with a plain `rmtree` after the
    new step commits; a kill during that can leave a partial *old* step, never
    a partial newest one.

Verification. `save` returns once the step is committed, and the saving
process then writes `N/pnag_manifest.json`, the size and sha256 of every file
of step N, through a temporary file and a rename. (Saves were asynchronous
once, with the manifest written at the next save: a run killed in between left
its newest step, the one a rerun resumes from, unverified for a whole
checkpoint interval. Orbax now saves synchronously; our steps are small, so
waiting for the write costs little.) `read_meta` and `restore` check a step against it
before orbax reads anything, so a damaged step fails with one line naming the
file. Orbax finding the damage itself is noisier: a failed tensorstore read
abandons its sibling reads, which later print "Event loop is closed" tracebacks.
Orbax ignores the file (it finds steps by directory name, items by
subdirectory). A step without a manifest (saved before manifests existed, or
killed between orbax's commit and the manifest) is restored unverified: if it
is damaged the error is still one line, but orbax's tracebacks may follow it.
Only a kill in the moment between orbax's commit and the manifest's rename
leaves such a step now.
No manifest is added to such a step later; that could bless damage. The one
exception is a step whose save raised after orbax renamed it into place (orbax
removing older steps failed): it is complete, so `save` adds its manifest before
it raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import types
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pnag_jax import atomic
from pnag_jax.errors import PnagError

PyTree = Any

# Longest detail copied from an underlying exception into a CheckpointError;
# tensorstore messages can run to kilobytes of JSON spec.
_MAX_DETAIL_CHARS = 300

_MANIFEST = "pnag_manifest.json"


class CheckpointError(PnagError):
  """A checkpoint is missing, corrupt, or does not match what was expected."""


def _io_detail(e: Exception) -> str:
  """An I/O error in one line, its cause first: tensorstore's messages give the OS's
  error as a code after kilobytes of paths and spec, which `_one_line` would cut."""
  code = re.search(r"os_error_code='?(\d+)", str(e))
  if code is not None and not isinstance(e, OSError):
    return f"{os.strerror(int(code[1]))} [errno {code[1]}] ({_one_line(e)})"
  return _one_line(e)


def _one_line(exc: BaseException) -> str:
  """Returns `exc` as a short single line: `TypeName: message`."""
  # KeyError's str() adds quotes around its argument; use the argument itself.
  if isinstance(exc, KeyError) and len(exc.args) == 1:
    msg = str(exc.args[0])
  else:
    msg = str(exc)
  # Tensorstore appends the full driver spec as JSON; it is noise to a user.
  msg = re.sub(r"\s*\[tensorstore_spec=.*", "", msg, flags=re.DOTALL)
  msg = " ".join(msg.split())
  if len(msg) > _MAX_DETAIL_CHARS:
    msg = msg[:_MAX_DETAIL_CHARS - 3] + "..."
  return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _abstract(tree: PyTree) -> PyTree:
  """Abstract restore target for a concrete or abstract template pytree.

  Leaves without a sharding (e.g. from `jax.eval_shape`) are pinned to the
  first local device: orbax would otherwise fall back to the sharding recorded
  at save time, which is unsafe when the device topology changed.
  """
  device = jax.local_devices()[0]

  def leaf(x):
    sds = ocp.utils.to_shape_dtype_struct(x)
    if isinstance(sds, jax.ShapeDtypeStruct) and sds.sharding is None:
      sds = jax.ShapeDtypeStruct(
          sds.shape, sds.dtype, sharding=jax.sharding.SingleDeviceSharding(device))
    return sds

  return jax.tree.map(leaf, tree)


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _write_manifest(step_dir: str) -> None:
  """Writes `step_dir/pnag_manifest.json`: size and sha256 of every file."""
  files = {}
  for root, _, names in os.walk(step_dir):
    for name in names:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      # Skips the manifest and its temporary files (a previous attempt's).
      if not rel.startswith(_MANIFEST):
        files[rel] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
  tmp = os.path.join(step_dir, f"{_MANIFEST}.{os.getpid()}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump({"files": files}, f, indent=1, sort_keys=True)
    # Else a power cut after the rename could leave an empty manifest, which
    # would reject a sound step.
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, os.path.join(step_dir, _MANIFEST))


def check_meta(meta: dict, expected: dict, *, where: str = "checkpoint") -> None:
  """Checks that saved metadata agrees with what the caller is about to build.

  Args:
    meta: Metadata as returned by `StageCheckpointer.read_meta` or `restore`.
    expected: Keys and values that must be present and equal in `meta`, e.g.
      `{"space": "nb201"}`.
    where: What to name in the message, e.g. `f"workdir {workdir}"`.

  Raises:
    CheckpointError: A key is missing from `meta` or has a different value.
      For `expected={"space": "nb201"}` and a saved space 'mbv3' the message
      reads "workdir W was trained for space 'mbv3', not 'nb201'".
  """
  for key, want in expected.items():
    if key not in meta:
      raise CheckpointError(f"{where} has no {key!r} in its metadata")
    if meta[key] != want:
      raise CheckpointError(
          f"{where} was trained for {key} {meta[key]!r}, not {want!r}")


#: The stages' folders in a workdir (`stages.*.NAME`, stage 2's `BEST`,
#: `arch_training.train.STAGE`).
STAGE_FOLDERS = ("stage1", "stage2", "stage2/best", "surrogate", "train_arch")


def _stage_folder(path: str) -> str | None:
  """The entry of `STAGE_FOLDERS` that `path` (absolute) ends in, or None."""
  parts = os.path.normpath(path).split(os.sep)
  return next((s for s in STAGE_FOLDERS
               if parts[-len(s.split("/")):] == s.split("/")), None)


class StageCheckpointer:
  """Saves and restores one training stage's checkpoints.

  Usage:

    with StageCheckpointer(workdir, "stage1", max_to_keep=3) as ckpt:
      if ckpt.latest_step() is not None:
        check_meta(ckpt.read_meta(), {"space": space.name},
                   where=f"workdir {workdir}")
        params, opt_state, key, meta = ckpt.restore(
            params_template=params, opt_state_template=opt_state)
      ...
      ckpt.save(step, params, opt_state, key, meta, force=is_last)

  `save` returns once the step is committed and has its manifest (see the
  module docstring), so `wait_until_finished`, leaving the `with` block and
  `close` find no save in flight; they remain for callers that do not assume it.
  """

  def __init__(
      self,
      workdir: str | os.PathLike[str],
      stage: str,
      *,
      max_to_keep: int | None = 3,
      save_interval_steps: int = 1,
      read_only: bool = False,
  ):
    """Opens (and unless `read_only`, creates) `<workdir>/<stage>/checkpoints`.

    Args:
      workdir: Run directory shared by all stages.
      stage: Stage name, used as a subdirectory of `workdir`.
      max_to_keep: Number of most recent steps kept on disk; None keeps all.
      save_interval_steps: `save` without `force` writes only steps that are a
        multiple of this.
      read_only: Create no directories and refuse to save; for commands that
        only read a trained workdir, so that a mistyped path is not created.
    """
    # orbax needs absolute paths; a relative --workdir is relative to where pnag runs.
    self.workdir = os.path.abspath(os.fspath(workdir))
    self.stage = stage
    self.directory = os.path.join(self.workdir, stage, "checkpoints")
    self._read_only = read_only
    folder = None if read_only else _stage_folder(self.workdir)
    if folder is not None and os.path.isdir(os.path.join(self.workdir, "checkpoints")):
      # A stage's own folder given as the workdir: training would nest a second run.
      root = os.path.normpath(os.path.join(self.workdir, *[".."] * len(folder.split("/"))))
      raise CheckpointError(f"{self.workdir} is a run's {folder}/ folder; give the run's "
                            f"workdir, {root}")
    # What opening creates, to take back where the run fails before its first save:
    # a refused run (no training steps, a bad data dir) leaves no empty stage folder,
    # which later commands would take for a run without checkpoints. Only empty
    # folders are removed, so nothing a run wrote is ever lost.
    self._created = [] if read_only else atomic.missing_dirs(self.directory)
    # Steps already checked against their manifest (`restore` would otherwise
    # hash a step twice).
    self._verified: set[int] = set()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=save_interval_steps,
        create=not read_only,
        # `save` commits before it returns, so the manifest follows at once (module
        # docstring): orbax's background thread would only be waited for.
        enable_async_checkpointing=False,
    )
    try:
      # Handlers rather than bare item names: a fresh manager can then read
      # item metadata before any save or restore has told it the item types.
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=options,
          item_handlers={
              "params": ocp.StandardCheckpointHandler(),
              "opt_state": ocp.StandardCheckpointHandler(),
              "rng": ocp.StandardCheckpointHandler(),
              "meta": ocp.JsonCheckpointHandler(),
          })
    except OSError as e:
      raise CheckpointError(
          f"cannot open checkpoints in {self.directory}: {_one_line(e)}") from e
    self._lock = None if read_only else self._take_lock()

  def _take_lock(self) -> int:
    """Locks the checkpoint folder for this writer, or refuses: two trainers of one
    stage interleaved their steps, their `metrics.jsonl` rows and their reports, and
    both said they finished (`atomic.lock_or_busy`). Readers take none, so generating
    from a run while it trains still works."""
    try:
      fd = os.open(self.directory, os.O_RDONLY)
    except OSError as e:
      self._manager.close()
      atomic.remove_empty(self._created)  # as `__exit__` would, which never runs
      raise CheckpointError(f"cannot open {self.directory}: {_one_line(e)}") from e
    if not atomic.lock_or_busy(fd):
      os.close(fd)
      self._manager.close()
      # Its folders are not taken back: they are the other process's.
      raise CheckpointError(
          f"{os.path.dirname(self.directory)} is in use: another process is training "
          "it now; wait for it to finish, or use another --workdir")
    return fd

  def __enter__(self) -> StageCheckpointer:
    return self

  def __exit__(self, exc_type: type[BaseException] | None,
               exc: BaseException | None,
               tb: types.TracebackType | None) -> None:
    self.close()
    if exc_type is not None:
      atomic.remove_empty(self._created)  # not empty: a step or a file was written

  def __repr__(self) -> str:
    return f"StageCheckpointer({self.directory!r})"

  def all_steps(self) -> list[int]:
    """Committed steps on disk, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest committed step, or None if there is none."""
    return self._manager.latest_step()

  def save(
      self,
      step: int,
      params: PyTree,
      opt_state: PyTree,
      rng_key: jax.Array,
      meta: dict,
      force: bool = False,
  ) -> bool:
    """Saves one step, and returns once it is committed and has its manifest.

    Args:
      step: Training step; must be larger than any step already saved.
      params: Parameter pytree of arrays.
      opt_state: Optimizer state pytree of arrays.
      rng_key: Typed PRNG key (`jax.random.key`), stored as raw key data.
      meta: JSON-serialisable dict. It round-trips as JSON: tuples come back
        as lists and dict keys as strings.
      force: Save even if `step` is off the `save_interval_steps` grid.

    Returns:
      Whether the step was saved (False if skipped by the interval policy).

    Raises:
      CheckpointError: The checkpointer is read-only, or the disk refused.
      TypeError: `rng_key` is not a typed key, or `meta` is not JSON.
    """
    if self._read_only:
      raise CheckpointError(f"cannot save to {self.directory}: opened read-only")
    if not jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
      raise TypeError(
          f"rng_key must be a typed key from jax.random.key, got {rng_key.dtype}")
    # Fail before orbax writes any of the step's items.
    json.dumps(meta)
    args = ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        opt_state=ocp.args.StandardSave(opt_state),
        # StandardSave rejects a bare array, hence the one-entry dict.
        rng=ocp.args.StandardSave({"key_data": jax.random.key_data(rng_key)}),
        meta=ocp.args.JsonSave(meta),
    )
    try:
      started = self._manager.save(step, args=args, force=force)
    except (OSError, ValueError) as e:
      # Tensorstore reports the disk's errors (a full disk, a file size limit) as
      # ValueErrors that carry an os_error_code; others are no I/O error.
      if not isinstance(e, OSError) and "os_error_code" not in str(e):
        raise
      detail = _io_detail(e)
      if os.path.isdir(self._step_dir(step)):
        # Renamed into place, so committed: what failed came after (orbax removing
        # the steps past `max_to_keep`). The step still gets its manifest, or
        # resuming would take it unchecked.
        self._add_manifest(step)
        raise CheckpointError(
            f"step {step} was saved in {self.directory}, but what followed its commit "
            f"failed: {detail}") from e
      raise CheckpointError(f"cannot save step {step} to {self.directory}: {detail}") from e
    if started:
      self._add_manifest(step)
    return started

  def _add_manifest(self, step: int) -> None:
    step_dir = self._step_dir(step)
    # Orbax's finalize logs some save errors instead of raising them; such a
    # step was never renamed to its final directory.
    if not os.path.isdir(step_dir):
      return
    try:
      _write_manifest(step_dir)
    except OSError as e:
      raise CheckpointError(
          f"cannot write the manifest of step {step} in {self.directory}: "
          f"{_one_line(e)}") from e

  def delete(self, step: int) -> None:
    """Removes committed step `step` (e.g. one past where a resumed run restarts)."""
    if self._read_only:
      raise CheckpointError(f"cannot delete from {self.directory}: opened read-only")
    self.wait_until_finished()
    try:
      self._manager.delete(step)
    except OSError as e:
      raise CheckpointError(
          f"cannot delete step {step} from {self.directory}: {_one_line(e)}") from e
    self._verified.discard(step)

  def wait_until_finished(self) -> None:
    """Blocks until orbax has no save in flight (`save` itself already waits)."""
    try:
      self._manager.wait_until_finished()
    except OSError as e:
      raise CheckpointError(
          f"saving to {self.directory} failed: {_one_line(e)}") from e

  def close(self) -> None:
    """Waits for pending saves, then releases orbax's threads and the writer's lock."""
    try:
      self.wait_until_finished()
    finally:
      try:
        self._manager.close()
      finally:
        if self._lock is not None:
          os.close(self._lock)
          self._lock = None

  def _step_dir(self, step: int) -> str:
    # Orbax's default step name format, which the manager is created with.
    return os.path.join(self.directory, str(step))

  def _resolve_step(self, step: int | None) -> int:
    """Returns `step`, or the latest step if None; checks that it exists."""
    # Orbax lists a step as soon as its save starts, before it is committed.
    self.wait_until_finished()
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    if step is None:
      return steps[-1]
    if step not in steps:
      raise CheckpointError(
          f"no checkpoint for step {step} in {self.directory} "
          f"(available: {steps})")
    return step

  def _verify(self, step: int) -> None:
    """Checks `step` against its manifest, if it has one, before orbax reads it.

    Raises:
      CheckpointError: The manifest is unreadable, or a file it lists is
        missing or differs in size or sha256.
    """
    if step in self._verified:
      return
    step_dir = self._step_dir(step)

    def corrupt(problem: str) -> CheckpointError:
      return CheckpointError(
          f"cannot restore step {step} from {self.directory}: the step is "
          f"corrupt, {problem}; delete {step_dir} to fall back to an earlier "
          "step, or retrain")

    try:
      with open(os.path.join(step_dir, _MANIFEST), "rb") as f:
        files = json.load(f)["files"]
      expected = {rel: (int(e["size"]), str(e["sha256"]))
                  for rel, e in files.items()}
    except FileNotFoundError:
      expected = {}  # Saved without a manifest: nothing to check against.
    except (OSError, ValueError, LookupError, TypeError, AttributeError) as e:
      raise corrupt(f"its {_MANIFEST} is unreadable ({_one_line(e)})") from e
    for rel, (size, digest) in sorted(expected.items()):
      path = os.path.join(step_dir, rel)
      try:
        actual = os.path.getsize(path)
        same = actual == size and _sha256(path) == digest
      except FileNotFoundError:
        raise corrupt(f"{rel} is missing") from None
      except OSError as e:
        raise corrupt(f"cannot read {rel} ({_one_line(e)})") from e
      if actual != size:
        raise corrupt(f"{rel} has {actual} bytes, expected {size}")
      if not same:
        raise corrupt(f"{rel} does not match its sha256 in {_MANIFEST}")
    self._verified.add(step)

  def _restore(self, step: int, **items: Any) -> Any:
    """Restores `items` of `step`, mapping any failure to CheckpointError."""
    try:
      return self._manager.restore(step, args=ocp.args.Composite(**items))
    # Orbax and tensorstore report a damaged or mismatched checkpoint with a
    # spread of types (ValueError, KeyError, FileNotFoundError,
    # JSONDecodeError, RuntimeError, ...) that is not part of their API, so
    # this boundary catches them all and reports one line.
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise CheckpointError(
          f"cannot restore step {step} from {self.directory} (corrupt, or "
          f"templates do not match what was saved): {_one_line(e)}") from e

  def _saved_leaves(self, step: int) -> dict[str, dict[tuple[str, ...], Any]]:
    """Per array item, the step's saved leaf metadata keyed by tree path.

    Empty if the metadata cannot be read: the restore itself does not need it
    when given targets, and will diagnose a damaged step on its own.
    """
    try:
      saved = self._manager.item_metadata(step)
      return {name: ocp.tree.to_flat_dict(saved[name].tree)
              for name in ("params", "opt_state", "rng")}
    except Exception:  # pylint: disable=broad-exception-caught
      return {}

  def _check_template(self, step: int, name: str, target: PyTree,
                      saved: dict[tuple[str, ...], Any]) -> None:
    """Compares a target's structure and shapes with what the step saved.

    Orbax would also reject a mismatch, but only mid-read, with a terser
    message and with sibling reads left behind as orphaned coroutines.
    """
    want = ocp.tree.to_flat_dict(target)
    problems = []
    missing = sorted(saved.keys() - want.keys())
    unexpected = sorted(want.keys() - saved.keys())
    if missing:
      problems.append("missing " + ", ".join("/".join(k) for k in missing[:5]))
    if unexpected:
      problems.append(
          "not in checkpoint " + ", ".join("/".join(k) for k in unexpected[:5]))
    for k in sorted(want.keys() & saved.keys()):
      saved_shape = getattr(saved[k], "shape", None)
      if saved_shape is not None and tuple(saved_shape) != np.shape(want[k]):
        problems.append(f"{'/'.join(k)} saved {tuple(saved_shape)}, "
                        f"template {np.shape(want[k])}")
    if problems:
      raise CheckpointError(
          f"{name} template does not match step {step} in {self.directory}: "
          + "; ".join(problems[:5]))

  def read_meta(self, step: int | None = None) -> dict:
    """Restores only the JSON metadata of `step` (default: the latest).

    Use it to check the space and config before building a model. It reads
    only the metadata, but first hashes the step's files against its manifest,
    once per checkpointer: a later `restore` of the step does not repeat that.

    Raises:
      CheckpointError: No such step, the step is corrupt, or the metadata is
        unreadable.
    """
    step = self._resolve_step(step)
    self._verify(step)
    meta = self._restore(step, meta=ocp.args.JsonRestore())["meta"]
    if not isinstance(meta, dict):
      raise CheckpointError(
          f"metadata of step {step} in {self.directory} is not a JSON object")
    return meta

  def restore(
      self,
      step: int | None = None,
      *,
      params_template: PyTree,
      opt_state_template: PyTree | None = None,
  ) -> tuple[PyTree, PyTree | None, jax.Array, dict]:
    """Restores one step (default: the latest).

    Args:
      step: Step to restore; None means the latest committed step.
      params_template: Pytree with the structure, shapes and dtypes of the
        saved params; concrete arrays or `jax.ShapeDtypeStruct`s (e.g. from
        `jax.eval_shape`). Restored arrays take the template's sharding, or the
        first local device where it has none. A differing dtype is cast to
        the template's (orbax's behaviour), not rejected.
      opt_state_template: Same, for the optimizer state, e.g.
        `jax.eval_shape(tx.init, params_template)`; NamedTuple states come
        back as the template's NamedTuples. None skips the optimizer state,
        e.g. to load a model for inference.

    Returns:
      `(params, opt_state, rng_key, meta)`, with `rng_key` rewrapped as a
      typed key of the default PRNG implementation, and `opt_state` None if
      `opt_state_template` was None.

    Raises:
      CheckpointError: No checkpoint, no such step, a corrupt step, or
        templates whose structure or shapes differ from what was saved.
    """
    step = self._resolve_step(step)
    self._verify(step)
    try:
      params_target = _abstract(params_template)
      opt_target = (None if opt_state_template is None
                    else _abstract(opt_state_template))
    except (TypeError, ValueError, AttributeError) as e:
      raise CheckpointError(
          f"invalid restore template for {self.directory}: {_one_line(e)}") from e
    saved = self._saved_leaves(step)
    if saved:
      self._check_template(step, "params", params_target, saved["params"])
      if opt_target is not None:
        self._check_template(step, "opt_state", opt_target, saved["opt_state"])
    # The rng item needs a target too: without one orbax places it on the
    # device recorded at save time, which fails on another machine (saved on
    # GPU, read on CPU). Its shape depends on the PRNG implementation, so it
    # comes from the saved metadata when that is readable.
    key_data = saved.get("rng", {}).get(("key_data",))
    if key_data is None:
      key_data = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))
    rng_target = _abstract(
        {"key_data": jax.ShapeDtypeStruct(key_data.shape, key_data.dtype)})
    items = {
        "params": ocp.args.StandardRestore(params_target),
        "rng": ocp.args.StandardRestore(rng_target),
        "meta": ocp.args.JsonRestore(),
    }
    if opt_target is not None:
      items["opt_state"] = ocp.args.StandardRestore(opt_target)
    restored = self._restore(step, **items)
    try:
      rng_key = jax.random.wrap_key_data(restored["rng"]["key_data"])
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointError(
          f"cannot rebuild the PRNG key of step {step} in {self.directory}: "
          f"{_one_line(e)}") from e
    return (restored["params"], restored.get("opt_state"), rng_key,
            restored["meta"])
