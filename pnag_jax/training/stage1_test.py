"""Stage-1 training end to end: it learns, it resumes bit-identically, it refuses bad state."""

import json
import shutil

import jax
import numpy as np
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.configs.stage1 import make_config
from pnag_jax.errors import PnagError
from pnag_jax.training import stage1

TINY = ["dim=8", "decoder_hidden=32", "encoder_layers=1", "codebook_size=16",
        "max_steps=12", "checkpoint_every=4", "log_every=4", "eval_every=1000"]


def test_quick_nb201_reconstructs_heldout(tmp_path):
  # The quick preset, shortened; an untrained or broken model scores ~0 here.
  cfg = make_config("quick", overrides=["max_steps=150", "eval_every=1000"])
  report = stage1.train_and_evaluate(cfg, tmp_path, progress=False)
  assert report["heldout_exact_match"] >= 0.9
  assert report["num_heldout"] == 7813
  assert len(report["step_validity"]) == len(report["codebook_perplexity"]) == 6
  assert all(0.0 <= v <= 1.0 for v in report["step_validity"])
  assert all(1.0 <= p <= cfg.codebook_size for p in report["codebook_perplexity"])
  written = json.loads((tmp_path / "stage1" / "report.json").read_text())
  assert {"space", "steps", "train_seconds", "heldout_exact_match", "train_exact_match",
          "codebook_perplexity", "step_validity"} <= set(written)
  lines = (tmp_path / "stage1" / "metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["split"] == "final"


def _params(workdir, cfg):
  m, params = stage1.build_model(stage1.get_space(cfg.space), cfg)
  tx = stage1.make_optimizer(cfg, cfg.max_steps)
  with ckpt_lib.StageCheckpointer(workdir, "stage1", read_only=True) as ck:
    p, _, _, _ = ck.restore(params_template=params, opt_state_template=tx.init(params))
  return p


def test_killed_run_resumes_bit_identically(tmp_path):
  cfg = make_config("quick", overrides=TINY)
  stage1.train_and_evaluate(cfg, tmp_path / "straight", progress=False)
  out = stage1.train_and_evaluate(cfg, tmp_path / "killed", progress=False, stop_after=8)
  assert out == {"steps": 8, "stopped_early": True}
  assert not (tmp_path / "killed" / "stage1" / "report.json").exists()
  report = stage1.train_and_evaluate(cfg, tmp_path / "killed", progress=False)
  assert report["resumed_from"] == 8 and report["steps"] == 12
  a, b = _params(tmp_path / "straight", cfg), _params(tmp_path / "killed", cfg)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_batch_order_is_a_function_of_seed_and_step():
  a = stage1.batch_indices(0, 5, 1000, 100)
  np.testing.assert_array_equal(a, stage1.batch_indices(0, 5, 1000, 100))
  assert not np.array_equal(a, stage1.batch_indices(1, 5, 1000, 100))
  epoch = np.concatenate([stage1.batch_indices(0, s, 1000, 100) for s in range(10)])
  np.testing.assert_array_equal(np.sort(epoch), np.arange(1000))


def test_workdir_of_another_space_and_corrupt_checkpoint(tmp_path):
  cfg = make_config("quick", overrides=TINY)
  stage1.train_and_evaluate(cfg, tmp_path, progress=False, stop_after=4)
  other = make_config("quick", space="autoformer",
                      overrides=TINY + ["train_size=600", "heldout_size=100"])
  with pytest.raises(PnagError, match="trained for space 'nb201', not 'autoformer'"):
    stage1.train_and_evaluate(other, tmp_path, progress=False)
  # Wreck every data file of the saved params: resuming must fail with one clear line.
  params_dir = next((tmp_path / "stage1" / "checkpoints").glob("*/params"))
  for f in params_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  with pytest.raises(ckpt_lib.CheckpointError) as err:
    stage1.train_and_evaluate(cfg, tmp_path, progress=False)
  assert "\n" not in str(err.value)
  shutil.rmtree(params_dir)
  with pytest.raises(ckpt_lib.CheckpointError):
    stage1.train_and_evaluate(cfg, tmp_path, progress=False)


def test_config_overrides_are_checked():
  assert make_config("paper").learning_rate == 1e-4
  assert make_config("paper").batch_size == 256 and make_config("paper").epochs == 300
  with pytest.raises(PnagError, match="unknown config key 'nope'"):
    make_config("quick", overrides=["nope=1"])
  with pytest.raises(PnagError, match="expected int"):
    make_config("quick", overrides=["dim=abc"])
  with pytest.raises(PnagError, match="unknown preset"):
    make_config("fast")


def test_scale_schedule():
  from pnag_jax.configs.stage1 import scale_schedule  # pylint: disable=g-import-not-at-top
  assert scale_schedule(make_config("quick"), 8) == (3, 4, 5, 6, 7, 8)  # DESIGN default
  assert scale_schedule(make_config("quick", overrides=["num_scales=6"]), 22) == (3, 7, 11, 14, 18, 22)
  assert scale_schedule(make_config("quick", overrides=["num_scales=1"]), 22) == (22,)
  assert scale_schedule(make_config("quick", overrides=["num_scales=50"]), 8) == (3, 4, 5, 6, 7, 8)
  with pytest.raises(PnagError, match="num_scales"):
    make_config("quick", overrides=["num_scales=-1"])
