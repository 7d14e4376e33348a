"""Loading a stage-1 run: params only, no optimizer, no trainer; one-line errors."""

import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage1


def _same(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_load_restores_the_saved_params_without_an_optimizer(untrained_run, stage1_saver,
                                                             tmp_path):
  run = untrained_run("nb201", dim=8, decoder_hidden=32)
  # Whatever optimizer the trainer used, loading does not need to know it.
  opt_state = optax.sgd(0.1, momentum=0.9).init(run.params)
  stage1_saver(run, tmp_path, step=7, opt_state=opt_state)
  loaded = stage1.load(tmp_path)
  assert loaded.step == 7 and loaded.cfg == run.cfg and loaded.space.name == "nb201"
  _same(loaded.params, run.params)
  assert loaded.model is run.model  # one static model per structure: shared compiles
  assert loaded.meta["params_sha256"] and loaded.meta["parents"] == []
  assert stage1.read_config(tmp_path) == run.cfg
  vqvae = loaded.model.merge(loaded.params)
  assert vqvae.scales == (3, 4, 5, 6, 7, 8)


def test_init_is_seeded_and_static_models_are_shared():
  cfg = stage1.make_config("quick", overrides=["dim=8", "decoder_hidden=32"])
  m1, p1 = stage1.init(cfg)
  m2, p2 = stage1.init(cfg)
  _, p3 = stage1.init(cfg.replace(seed=1))
  _same(p1, p2)
  assert not np.array_equal(p1["codebook"], p3["codebook"])
  assert m1 is m2 and m1 is stage1.init(cfg.replace(seed=1, learning_rate=1.0))[0]
  assert stage1.static_model(cfg.replace(dim=16)) is not m1
  abstract = m1.abstract_params()
  assert jax.tree.structure(abstract) == jax.tree.structure(p1)
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))


def test_a_workdir_from_before_lineage_still_loads(untrained_run, stage1_saver, tmp_path):
  run = untrained_run("nb201", dim=8, decoder_hidden=32)
  old_meta = {"stage": "stage1", "space": "nb201", "config": config_lib.to_dict(run.cfg),
              "version": "0.1.0"}
  stage1_saver(run, tmp_path, step=400, meta=old_meta)
  for manifest in (tmp_path / "stage1" / "checkpoints").glob("*/pnag_manifest.json"):
    manifest.unlink()  # nor had its checkpoints manifests
  loaded = stage1.load(tmp_path)
  assert loaded.step == 400
  _same(loaded.params, run.params)


def test_bad_workdirs_are_one_line_errors(untrained_run, stage1_saver, tmp_path):
  with pytest.raises(ckpt_lib.CheckpointError, match="no stage-1 checkpoints under .*"
                     "train first: pnag train stage1 --workdir"):
    stage1.load(tmp_path / "nothing")
  assert stage1.read_config(tmp_path / "nothing") is None
  run = untrained_run("nb201", dim=8, decoder_hidden=32)
  stage1_saver(run, tmp_path / "a", step=3)
  with pytest.raises(ckpt_lib.CheckpointError, match=r"no checkpoint for step 5 .*\[3\]"):
    stage1.load(tmp_path / "a", step=5)
  # The stage's own folder is not a workdir: training there would nest a second run.
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=f"is a run's stage1/ folder; give the run's workdir, {tmp_path / 'a'}$"):
    stage1.load(tmp_path / "a" / "stage1")
  other = {"stage": "stage2", "space": "nb201", "config": {}}
  stage1_saver(run, tmp_path / "b", meta=other)
  with pytest.raises(ckpt_lib.CheckpointError, match="trained for stage 'stage2', not 'stage1'"):
    stage1.load(tmp_path / "b")
  future = {"stage": "stage1", "space": "nb201",
            "config": {**config_lib.to_dict(run.cfg), "warp_drive": True}}
  stage1_saver(run, tmp_path / "c", meta=future)
  with pytest.raises(PnagError, match="unknown config keys warp_drive"):
    stage1.load(tmp_path / "c")
  shutil.copytree(tmp_path / "a", tmp_path / "d")
  for f in (tmp_path / "d" / "stage1" / "checkpoints" / "3" / "params").rglob("*"):
    if f.is_file() and f.stat().st_size > 100:
      f.write_bytes(b"\0" * 8)
  with pytest.raises(ckpt_lib.CheckpointError) as err:
    stage1.load(tmp_path / "d")
  assert "\n" not in str(err.value) and "corrupt" in str(err.value)


def test_scales_beyond_the_spaces_sizes_are_refused():
  # NB201 has N = 8: scales 3..8, six of them. More, or a first scale past 8, were
  # clamped while the config and the frozen settings kept the values asked for.
  assert stage1.make_config("quick", overrides=["num_scales=6"]).scales(8) == (3, 4, 5, 6, 7,
                                                                              8)
  with pytest.raises(PnagError, match=r"^num_scales must be <= 6 for nb201 \(scales 3\.\.8; "
                                      r"0: all of them\), got 99$"):
    stage1.make_config("quick", overrides=["num_scales=99"])
  with pytest.raises(PnagError, match="num_scales must be <= 3 for nb201 .scales 6..8"):
    stage1.make_config("quick", overrides=["first_scale=6", "num_scales=4"])
  with pytest.raises(PnagError, match=r"^first_scale must be <= 8 for nb201 \(its node count\), "
                                      r"got 9$"):
    stage1.make_config("quick", overrides=["first_scale=9"])
  with pytest.raises(PnagError, match="num_scales must be <= 6 for nb201"):  # a resume's --set
    config_lib.with_overrides(stage1.make_config("quick"), ["num_scales=7"], where="W")
  n = get_space("mbv3").num_nodes
  assert len(stage1.make_config("quick", "mbv3", overrides=[f"num_scales={n - 2}"]).scales(
      n)) == n - 2
  with pytest.raises(PnagError, match=f"num_scales must be <= {n - 2} for mbv3"):
    stage1.make_config("quick", "mbv3", overrides=[f"num_scales={n - 1}"])


_NO_TRAINER = textwrap.dedent("""
    import sys
    import pnag_jax.generation, pnag_jax.evaluation
    from pnag_jax.generation import load_sampler, SamplerConfig
    run, sampler = load_sampler(sys.argv[1], SamplerConfig(chunk_size=8))
    import jax
    sampler.generate(jax.random.key(0), 16)
    from pnag_jax.evaluation import vun, speed, quality, executable
    leaked = sorted(m for m in sys.modules if m.startswith("pnag_jax.training"))
    assert not leaked, leaked
    print("ok")
""")


def test_generation_and_evaluation_import_no_trainer(nb201_workdir, one_device_env):
  r = subprocess.run([sys.executable, "-c", _NO_TRAINER, str(nb201_workdir)],
                     env=one_device_env, capture_output=True, text=True, timeout=300, check=False)
  assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
