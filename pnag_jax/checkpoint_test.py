"""StageCheckpointer: round trips, retention, atomicity, manifests, one-line errors."""

import gc
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pnag_jax import checkpoint
from pnag_jax.checkpoint import STAGE_FOLDERS, CheckpointError, StageCheckpointer, check_meta

_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax 0.12.8 atomicity_types.TMP_DIR_SUFFIX
_MANIFEST = "pnag_manifest.json"


def _params(seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {
      "enc": {"w": jax.random.normal(k1, (3, 4)), "b": jnp.zeros(4)},
      "head": jax.random.normal(k2, (4,), jnp.bfloat16),
  }


_TX = optax.adamw(1e-2)


def _trained_state(steps=2, seed=0):
  """Params and adamw state after a few updates, so moments are non-trivial."""
  params = _params(seed)
  opt_state = _TX.init(params)
  for i in range(steps):
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1 * (i + 1)), params)
    updates, opt_state = _TX.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  return params, opt_state


def _meta(step):
  return {"space": "nb201", "version": "0.1.0", "config": {"lr": 0.01, "step": step}}


def _save_steps(workdir, steps, **kwargs):
  """Saves `steps`; returns {step: (params, opt_state, key, meta)}."""
  saved = {}
  with StageCheckpointer(workdir, "stage1", **kwargs) as ckpt:
    for step in steps:
      params, opt_state = _trained_state(steps=step, seed=step)
      key = jax.random.fold_in(jax.random.key(7), step)
      assert ckpt.save(step, params, opt_state, key, _meta(step), force=True)
      saved[step] = (params, opt_state, key, _meta(step))
  return saved


def _restore(workdir, step=None):
  params, opt_state = _trained_state(steps=0)
  with StageCheckpointer(workdir, "stage1") as ckpt:
    return ckpt.restore(step, params_template=params, opt_state_template=opt_state)


def _assert_same_state(got, want):
  for g, w in zip(got[:2], want[:2]):
    assert jax.tree.structure(g) == jax.tree.structure(w)
    jax.tree.map(np.testing.assert_array_equal, g, w)
  np.testing.assert_array_equal(jax.random.key_data(got[2]),
                                jax.random.key_data(want[2]))
  assert got[3] == want[3]


def _files_under(path):
  return sorted(os.path.join(root, f) for root, _, fs in os.walk(path) for f in fs)


def _data_files(step_dir):
  """Tensorstore/OCDBT data files of the params item (under its `d/` dirs)."""
  files = [f for f in _files_under(os.path.join(step_dir, "params"))
           if os.path.basename(os.path.dirname(f)) == "d"]
  assert files
  return files


def test_round_trip_is_bit_identical(tmp_path):
  saved = _save_steps(tmp_path, [1, 2, 3])
  ckpt_dir = tmp_path / "stage1" / "checkpoints"
  assert sorted(os.listdir(ckpt_dir)) == ["1", "2", "3"]
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    assert ckpt.latest_step() == 3
    assert ckpt.read_meta() == _meta(3)
    assert ckpt.read_meta(2) == _meta(2)
  got = _restore(tmp_path)
  _assert_same_state(got, saved[3])
  # NamedTuples survive: the restored state feeds straight back into optax.
  assert type(got[1][0]) is optax.ScaleByAdamState
  assert got[2].dtype == jax.random.key(0).dtype
  assert got[0]["head"].dtype == jnp.bfloat16
  _assert_same_state(_restore(tmp_path, step=1), saved[1])


def test_abstract_templates(tmp_path):
  saved = _save_steps(tmp_path, [1])
  params_abs = jax.eval_shape(_params)
  opt_abs = jax.eval_shape(_TX.init, params_abs)
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    got = ckpt.restore(params_template=params_abs, opt_state_template=opt_abs)
  _assert_same_state(got, saved[1])


_RESTORE_ON_ONE_DEVICE = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from pnag_jax import checkpoint_test as t
    from pnag_jax.checkpoint import StageCheckpointer
    assert len(jax.devices()) == 1
    params, opt_state = t._trained_state(steps=0)
    with StageCheckpointer(sys.argv[1], "stage1", read_only=True) as ckpt:
      p, o, key, meta = ckpt.restore(params_template=params,
                                     opt_state_template=opt_state)
    leaves = jax.tree.leaves((p, o)) + [jax.random.key_data(key)]
    np.savez(sys.argv[2], *[np.asarray(x, np.float32) for x in leaves])
""")


def test_restore_on_another_topology(tmp_path, one_device_env):
  """Saved on device 5 of 8, read where only one device exists (GPU -> CPU)."""
  if len(jax.devices()) < 6:
    pytest.skip("needs the 8 fake CPU devices from conftest.py")
  params, opt_state = _trained_state(steps=2)
  on5 = lambda tree: jax.device_put(tree, jax.devices()[5])
  key = on5(jax.random.key(3))
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    ckpt.save(1, on5(params), on5(opt_state), key, {})
  out = tmp_path / "restored.npz"
  proc = subprocess.run(
      [sys.executable, "-c", _RESTORE_ON_ONE_DEVICE, str(tmp_path), str(out)],
      env=one_device_env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  want = jax.tree.leaves((params, opt_state)) + [jax.random.key_data(key)]
  with np.load(out) as got:
    assert len(got.files) == len(want)
    for i, w in enumerate(want):
      np.testing.assert_array_equal(got[f"arr_{i}"], np.asarray(w, np.float32))


def test_manifest_lists_every_file_of_every_kept_step(tmp_path):
  with StageCheckpointer(tmp_path, "stage1", max_to_keep=2) as ckpt:
    params, opt_state = _trained_state(steps=0)
    ckpt.save(1, params, opt_state, jax.random.key(0), {}, force=True)
    # Written by the time save returns: a run killed after it leaves a verifiable step.
    assert os.path.isfile(tmp_path / "stage1" / "checkpoints" / "1" / _MANIFEST)
    ckpt.save(2, params, opt_state, jax.random.key(0), {}, force=True)
    ckpt.save(3, params, opt_state, jax.random.key(0), {}, force=True)
  ckpt_dir = tmp_path / "stage1" / "checkpoints"
  assert sorted(os.listdir(ckpt_dir)) == ["2", "3"]
  for step in ("2", "3"):
    step_dir = ckpt_dir / step
    with open(step_dir / _MANIFEST) as f:
      files = json.load(f)["files"]
    on_disk = {os.path.relpath(f, step_dir) for f in _files_under(step_dir)}
    # Nothing else: no temporary manifest left behind.
    assert on_disk - set(files) == {_MANIFEST}
    assert {"commit_success.txt", "params/_METADATA", "meta/metadata"} <= set(files)
    assert {rel.split("/")[0] for rel in files if "/" in rel} == {
        "params", "opt_state", "rng", "meta"}
    for rel, entry in files.items():
      with open(step_dir / rel, "rb") as f:
        data = f.read()
      assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    assert ckpt.all_steps() == [2, 3]
    assert ckpt.latest_step() == 3
    assert set(ckpt._manager.item_metadata(3).keys()) == {  # pylint: disable=protected-access
        "params", "opt_state", "rng", "meta"}


def test_step_without_manifest_restores(tmp_path):
  """Steps saved before manifests existed (or killed before one) still load."""
  saved = _save_steps(tmp_path, [1, 2])
  for step in ("1", "2"):
    os.remove(tmp_path / "stage1" / "checkpoints" / step / _MANIFEST)
  with StageCheckpointer(tmp_path, "stage1", read_only=True) as ckpt:
    assert ckpt.read_meta() == _meta(2)
  _assert_same_state(_restore(tmp_path), saved[2])
  _assert_same_state(_restore(tmp_path, step=1), saved[1])


def test_each_step_is_hashed_once_per_checkpointer(tmp_path, monkeypatch):
  _save_steps(tmp_path, [1])
  hashed = []
  sha256 = checkpoint._sha256  # pylint: disable=protected-access
  monkeypatch.setattr(checkpoint, "_sha256", lambda p: hashed.append(p) or sha256(p))
  params, opt_state = _trained_state(steps=0)
  with StageCheckpointer(tmp_path, "stage1", read_only=True) as ckpt:
    ckpt.read_meta()
    ckpt.restore(params_template=params, opt_state_template=opt_state)
    ckpt.restore(params_template=params)
  step_dir = tmp_path / "stage1" / "checkpoints" / "1"
  assert sorted(hashed) == sorted(
      f for f in _files_under(step_dir) if not f.endswith(_MANIFEST))


def test_restore_without_opt_state(tmp_path):
  """For inference: no optimizer template needed, None in its place."""
  saved_params, _, saved_key, saved_meta = _save_steps(tmp_path, [1])[1]
  params_abs = jax.eval_shape(_params)
  with StageCheckpointer(tmp_path, "stage1", read_only=True) as ckpt:
    params, opt_state, key, meta = ckpt.restore(params_template=params_abs)
    with pytest.raises(CheckpointError, match="params template .*missing head"):
      ckpt.restore(params_template={"enc": params_abs["enc"]})
  assert opt_state is None
  assert jax.tree.structure(params) == jax.tree.structure(saved_params)
  jax.tree.map(np.testing.assert_array_equal, params, saved_params)
  np.testing.assert_array_equal(jax.random.key_data(key),
                                jax.random.key_data(saved_key))
  assert meta == saved_meta


def test_max_to_keep_and_interval(tmp_path):
  with StageCheckpointer(tmp_path, "stage1", max_to_keep=2,
                         save_interval_steps=2) as ckpt:
    params, opt_state = _trained_state(steps=0)
    key = jax.random.key(0)
    results = [ckpt.save(s, params, opt_state, key, {}) for s in range(1, 7)]
    # Orbax always writes the first step of a fresh directory (its initial
    # save policy), then every second step.
    assert results == [True, True, False, True, False, True]
    assert ckpt.save(7, params, opt_state, key, {}, force=True)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [6, 7]
  assert sorted(os.listdir(tmp_path / "stage1" / "checkpoints")) == ["6", "7"]


def test_stages_are_separate(tmp_path):
  _save_steps(tmp_path, [1, 2])
  with StageCheckpointer(tmp_path, "stage2") as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.directory == os.path.join(tmp_path, "stage2", "checkpoints")


def test_one_writer_a_stage_at_a_time(tmp_path):
  _save_steps(tmp_path, [1])
  with StageCheckpointer(tmp_path, "stage1") as writer:
    # A second trainer of the stage is refused; readers, and other stages, are not.
    with pytest.raises(CheckpointError, match=r"^\S*/stage1 is in use: another process is "
                                              "training it now"):
      StageCheckpointer(tmp_path, "stage1")
    with StageCheckpointer(tmp_path, "stage1", read_only=True) as reader:
      assert reader.read_meta() == _meta(1)
    with StageCheckpointer(tmp_path, "stage2"):
      pass
    params, opt_state = _trained_state(steps=0)
    writer.save(2, params, opt_state, jax.random.key(0), _meta(2))
  with StageCheckpointer(tmp_path, "stage1") as again:  # released by `close`
    assert again.latest_step() == 2


def test_a_folder_that_cannot_be_locked_leaves_no_folders(tmp_path, monkeypatch):
  real_open = os.open

  def refused(path, *args, **kwargs):
    if str(path).endswith("checkpoints"):
      raise PermissionError(13, "Permission denied", path)
    return real_open(path, *args, **kwargs)

  monkeypatch.setattr(checkpoint.os, "open", refused)
  with pytest.raises(CheckpointError, match="^cannot open .*checkpoints: .*Permission denied"):
    StageCheckpointer(tmp_path / "w", "stage1")
  assert not (tmp_path / "w").exists()


def test_a_disk_error_while_saving_is_one_line_that_names_it(tmp_path, monkeypatch):
  params = {"w": jax.random.normal(jax.random.key(1), (512, 1024))}  # 2 MB, incompressible
  opt_state = optax.sgd(0.1).init(params)
  # A real file size limit: tensorstore reports it as a ValueError whose OS error code
  # follows kilobytes of paths. (Python ignores SIGXFSZ, so the write fails instead.)
  assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, limit[1]))
    try:
      with pytest.raises(CheckpointError) as e:
        ckpt.save(1, params, opt_state, jax.random.key(0), _meta(1), force=True)
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    assert re.match(r"cannot save step 1 to \S+: File too large \[errno 27\] \(", str(e.value))
    assert "\n" not in str(e.value) and ckpt.all_steps() == []

    def a_bug(*args, **kwargs):
      raise ValueError("a bug, not the disk")
    monkeypatch.setattr(ckpt._manager, "save", a_bug)  # pylint: disable=protected-access
    with pytest.raises(ValueError, match="a bug"):
      ckpt.save(1, params, opt_state, jax.random.key(0), _meta(1))


def test_a_step_committed_before_an_error_still_gets_its_manifest(tmp_path, monkeypatch):
  params, opt_state = _trained_state(steps=0)
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    save = ckpt._manager.save  # pylint: disable=protected-access

    def then_fail_to_delete(*args, **kwargs):
      save(*args, **kwargs)
      raise PermissionError(13, "Permission denied", "checkpoints/1/_CHECKPOINT_METADATA")
    monkeypatch.setattr(ckpt._manager, "save", then_fail_to_delete)  # pylint: disable=protected-access
    with pytest.raises(CheckpointError, match="^step 2 was saved in .*, but what followed its "
                                              "commit failed: .*Permission denied"):
      ckpt.save(2, params, opt_state, jax.random.key(0), _meta(2))
  assert (tmp_path / "stage1" / "checkpoints" / "2" / "pnag_manifest.json").is_file()


def test_empty_dir_errors(tmp_path):
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    with pytest.raises(CheckpointError, match="no checkpoint in .*stage1/checkpoints"):
      ckpt.read_meta()
    params, opt_state = _trained_state(steps=0)
    with pytest.raises(CheckpointError, match="no checkpoint in"):
      ckpt.restore(params_template=params, opt_state_template=opt_state)


def test_read_only_creates_nothing(tmp_path):
  workdir = tmp_path / "typo"
  with StageCheckpointer(workdir, "stage1", read_only=True) as ckpt:
    assert ckpt.latest_step() is None
    with pytest.raises(CheckpointError, match="no checkpoint in"):
      ckpt.read_meta()
    with pytest.raises(CheckpointError, match="read-only"):
      ckpt.save(1, {}, (), jax.random.key(0), {})
  assert not workdir.exists()


def test_a_run_failing_before_its_first_save_leaves_no_folders(tmp_path):
  (tmp_path / "kept").mkdir()
  with pytest.raises(ValueError), StageCheckpointer(tmp_path / "new", "stage2"):
    raise ValueError("refused before any step")
  assert not (tmp_path / "new").exists()
  # A workdir that already existed stays; so does anything written into the stage.
  with pytest.raises(ValueError), StageCheckpointer(tmp_path / "kept", "stage2"):
    (tmp_path / "kept" / "stage2" / "config.json").write_text("{}")
    raise ValueError("refused after the config was written")
  assert sorted(p.name for p in (tmp_path / "kept").rglob("*")) == ["config.json", "stage2"]
  saved = _save_steps(tmp_path / "w", [1])
  with pytest.raises(ValueError), StageCheckpointer(tmp_path / "w", "stage1"):
    raise ValueError("a resumed run that fails")
  _assert_same_state(_restore(tmp_path / "w"), saved[1])


def test_a_stage_folder_is_refused_as_a_workdir(tmp_path):
  _save_steps(tmp_path, [1])
  with pytest.raises(CheckpointError, match="is a run's stage1/ folder; give the run's "
                     f"workdir, {re.escape(str(tmp_path))}$"):
    StageCheckpointer(tmp_path / "stage1", "stage1")
  assert not (tmp_path / "stage1" / "stage1").exists()
  # Stage 2's best step has its own checkpoints/ two levels down.
  (tmp_path / "stage2" / "best" / "checkpoints").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="is a run's stage2/best/ folder; give the run's "
                     f"workdir, {re.escape(str(tmp_path))}$"):
    StageCheckpointer(tmp_path / "stage2" / "best", "stage1")
  # A user's own folder that happens to hold checkpoints/ is a workdir like any other.
  for mine in ("mine", "best"):
    (tmp_path / mine / "checkpoints").mkdir(parents=True)
    with StageCheckpointer(tmp_path / mine, "stage1") as ckpt:
      assert ckpt.latest_step() is None


def test_stage_folders_are_the_stages_names():
  from pnag_jax.arch_training import train  # pylint: disable=g-import-not-at-top
  from pnag_jax.stages import stage1, stage2, surrogate  # pylint: disable=g-import-not-at-top
  assert set(STAGE_FOLDERS) == {stage1.NAME, stage2.NAME, stage2.BEST, surrogate.NAME,
                                train.STAGE}


def test_missing_step(tmp_path):
  _save_steps(tmp_path, [1, 2])
  with pytest.raises(CheckpointError, match=r"no checkpoint for step 5 .*\[1, 2\]"):
    _restore(tmp_path, step=5)


def _corrupt_truncate(step_dir):
  for f in _data_files(step_dir):
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)


def _corrupt_garbage(step_dir):
  rng = np.random.default_rng(0)
  for f in _data_files(step_dir):
    size = os.path.getsize(f)  # Before "wb" empties the file.
    with open(f, "wb") as fh:
      fh.write(rng.bytes(size))


def _corrupt_metadata(step_dir):
  with open(os.path.join(step_dir, "params", "_METADATA"), "r+b") as fh:
    fh.truncate(5)


def _delete_params(step_dir):
  shutil.rmtree(os.path.join(step_dir, "params"))


def _corrupt_manifest(step_dir):
  with open(os.path.join(step_dir, _MANIFEST), "wb") as fh:
    fh.write(b"\0" * 64)


@pytest.mark.parametrize("corrupt,problem", [
    (_corrupt_truncate, r"params/.*d/\w+ has \d+ bytes, expected \d+"),
    (_corrupt_garbage, r"params/.*d/\w+ does not match its sha256"),
    (_corrupt_metadata, r"params/_METADATA has 5 bytes, expected \d+"),
    (_delete_params, r"params/\S+ is missing"),
    (_corrupt_manifest, r"its pnag_manifest.json is unreadable \(JSONDecodeError"),
])
def test_corrupt_latest_step(tmp_path, corrupt, problem):
  _save_steps(tmp_path, [1, 2])
  corrupt(os.path.join(tmp_path, "stage1", "checkpoints", "2"))
  hook = sys.unraisablehook
  asyncio_filters = list(logging.getLogger("asyncio").filters)
  with StageCheckpointer(tmp_path, "stage1", read_only=True) as ckpt:
    with pytest.raises(CheckpointError,
                       match="cannot restore step 2 from .*: the step is corrupt, "
                       + problem) as info:
      ckpt.read_meta()
  message = str(info.value)
  assert "\n" not in message
  assert len(message) < 500
  assert os.path.join("stage1", "checkpoints") in message
  with pytest.raises(CheckpointError) as info:
    _restore(tmp_path)
  assert str(info.value) == message
  # Nothing process-wide is left installed after a failure.
  assert sys.unraisablehook is hook
  assert logging.getLogger("asyncio").filters == asyncio_filters
  # Older steps are unaffected.
  _restore(tmp_path, step=1)


def test_failed_restore_leaves_no_tracebacks(tmp_path, monkeypatch, caplog):
  """Orbax's abandoned sibling reads must not print tracebacks after the error."""
  params = {f"w{i}": jnp.full((64,), i, jnp.float32) for i in range(32)}
  opt_state = optax.sgd(0.1).init(params)
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    ckpt.save(1, params, opt_state, jax.random.key(0), {})
  _corrupt_truncate(os.path.join(tmp_path, "stage1", "checkpoints", "1"))
  unraisable = []
  monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    # Caught by the manifest check, so orbax never starts the failing read.
    with pytest.raises(CheckpointError,
                       match="cannot restore step 1 from .*: the step is corrupt"):
      ckpt.restore(params_template=params, opt_state_template=opt_state)
  gc.collect()
  assert not unraisable, [str(u.exc_value) for u in unraisable]
  assert "never retrieved" not in caplog.text


def test_corrupt_meta(tmp_path):
  _save_steps(tmp_path, [1])
  meta_dir = os.path.join(tmp_path, "stage1", "checkpoints", "1", "meta")
  for f in _files_under(meta_dir):
    with open(f, "w") as fh:
      fh.write("{not json")
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    with pytest.raises(CheckpointError, match="cannot restore step 1"):
      ckpt.read_meta()


@pytest.mark.parametrize("change,match", [
    ("shape", r"params template does not match .*head saved \(4,\), template \(5,\)"),
    ("extra_leaf", "params template does not match .*not in checkpoint extra"),
    ("missing_leaf", "params template does not match .*missing head"),
    ("optimizer", "opt_state template does not match"),
    # Same leaves, different empty nodes: caught by orbax during the read.
    ("optimizer_chain", "do not match what was saved"),
])
def test_template_mismatch(tmp_path, change, match):
  _save_steps(tmp_path, [1])
  params, opt_state = _trained_state(steps=0)
  if change == "shape":
    params = {**params, "head": jnp.zeros((5,), jnp.bfloat16)}
  elif change == "extra_leaf":
    params = {**params, "extra": jnp.zeros(2)}
  elif change == "missing_leaf":
    params = {"enc": params["enc"]}
  elif change == "optimizer":
    opt_state = optax.sgd(0.1, momentum=0.9).init(params)
  else:
    opt_state = optax.adam(1e-2).init(params)
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    with pytest.raises(CheckpointError, match=match) as info:
      ckpt.restore(params_template=params, opt_state_template=opt_state)
  assert "\n" not in str(info.value)


def test_killed_save_is_invisible_and_resume_overwrites_it(tmp_path):
  saved = _save_steps(tmp_path, [1, 2, 3])
  ckpt_dir = os.path.join(tmp_path, "stage1", "checkpoints")
  # What a save of step 4 killed before its commit leaves behind: the step's
  # temporary directory, items still under their own temporary names, no
  # commit_success.txt, and partly written data.
  stray = os.path.join(ckpt_dir, "4" + _TMP_SUFFIX)
  shutil.copytree(os.path.join(ckpt_dir, "3"), stray)
  os.remove(os.path.join(stray, "commit_success.txt"))
  for item in ("params", "opt_state"):
    os.rename(os.path.join(stray, item), os.path.join(stray, item + _TMP_SUFFIX))
  for f in _files_under(os.path.join(stray, "params" + _TMP_SUFFIX)):
    with open(f, "r+b") as fh:
      fh.truncate(3)

  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    assert ckpt.all_steps() == [1, 2, 3]
    assert ckpt.latest_step() == 3
    assert ckpt.read_meta() == _meta(3)
  _assert_same_state(_restore(tmp_path), saved[3])

  # The resumed run reaches step 4 again; orbax replaces the debris.
  saved.update(_save_steps(tmp_path, [4]))
  assert sorted(os.listdir(ckpt_dir)) == ["2", "3", "4"]
  _assert_same_state(_restore(tmp_path), saved[4])


def test_check_meta():
  meta = {"space": "mbv3", "version": "0.1.0"}
  check_meta(meta, {"space": "mbv3"})
  with pytest.raises(CheckpointError,
                     match="workdir /w was trained for space 'mbv3', not 'nb201'"):
    check_meta(meta, {"space": "nb201"}, where="workdir /w")
  with pytest.raises(CheckpointError, match="no 'config'"):
    check_meta(meta, {"config": {}})


def test_save_rejects_raw_key_and_non_json_meta(tmp_path):
  params, opt_state = _trained_state(steps=0)
  with StageCheckpointer(tmp_path, "stage1") as ckpt:
    with pytest.raises(TypeError, match="typed key"):
      ckpt.save(1, params, opt_state, jax.random.PRNGKey(0), {})
    with pytest.raises(TypeError):
      ckpt.save(1, params, opt_state, jax.random.key(0), {"x": object()})
    assert ckpt.latest_step() is None


def test_relative_workdir_saves_and_restores(tmp_path, monkeypatch):
  # orbax rejects relative paths; the checkpointer resolves them against the cwd.
  monkeypatch.chdir(tmp_path)
  params = {"w": jnp.arange(3.0)}
  with StageCheckpointer("rel", "stage1") as ck:
    ck.save(1, params, {"n": jnp.zeros(())}, jax.random.key(0), {"stage": "stage1"},
            force=True)
  with StageCheckpointer("rel", "stage1", read_only=True) as ck:
    p, _, _, _ = ck.restore(params_template=params, opt_state_template={"n": jnp.zeros(())})
  np.testing.assert_array_equal(p["w"], params["w"])
  assert (tmp_path / "rel" / "stage1" / "checkpoints" / "1").is_dir()
