"""Stage-1 training end to end: it learns, it resumes bit-identically, it refuses bad state."""

import json
import shutil

import jax
import numpy as np
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.errors import PnagError
from pnag_jax.stages import stage1
from pnag_jax.training import reports
from pnag_jax.training import stage1 as training

TINY = ["dim=8", "decoder_hidden=32", "encoder_layers=1", "codebook_size=16",
        "max_steps=12", "checkpoint_every=4", "log_every=4", "eval_every=6",
        "eval_size=256"]


def test_the_quick_run_reconstructs_heldout(trained_run):
  # The suite's shared run is `pnag demo`'s: the quick preset, cut to 120 steps. An untrained
  # or broken model scores ~0 here.
  workdir, _ = trained_run
  report = json.loads((workdir / "stage1" / "report.json").read_text())
  assert report["heldout_exact_match"] >= 0.95 and report["steps"] == 120
  assert report["num_heldout"] == 7813 and report["num_train"] == 7812
  assert report["num_evaluated"] == 7813  # eval_size 0: every held-out arch
  assert len(report["step_validity"]) == len(report["codebook_perplexity"]) == 6
  assert all(0.0 <= v <= 1.0 for v in report["step_validity"])
  assert all(1.0 <= p <= 64 for p in report["codebook_perplexity"])
  assert {"space", "steps", "train_seconds", "heldout_exact_match", "train_exact_match",
          "codebook_perplexity", "step_validity", "prefix_error"} <= set(report)
  lines = (workdir / "stage1" / "metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["split"] == "final"
  meta = stage1.load(workdir).meta
  assert meta["frozen"]["space"] == "nb201" and len(meta["params_sha256"]) == 64


def _params(workdir):
  return stage1.load(workdir).params


def test_killed_run_resumes_bit_identically_and_shares_one_compile(tmp_path):
  cfg = stage1.make_config("quick", overrides=TINY)
  before = training.train_step._cache_size()  # pylint: disable=protected-access
  training.train_and_evaluate(cfg, tmp_path / "straight", progress=False)
  out = training.train_and_evaluate(cfg, tmp_path / "killed", progress=False, stop_after=8)
  assert out == {"steps": 8, "stopped_early": True}
  assert not (tmp_path / "killed" / "stage1" / "report.json").exists()
  report = training.train_and_evaluate(cfg, tmp_path / "killed", progress=False)
  assert report["resumed_from"] == 8 and report["steps"] == 12
  lines = [json.loads(x) for x in
           (tmp_path / "straight" / "stage1" / "metrics.jsonl").read_text().splitlines()]
  # Mid-run held-out evaluation every 6 steps, but not at the end (the final report is).
  assert [x["step"] for x in lines if x["split"] == "heldout"] == [6]
  assert lines[-1]["split"] == "final" and lines[-1]["step"] == 12
  jax.tree.map(np.testing.assert_array_equal, _params(tmp_path / "straight"),
               _params(tmp_path / "killed"))
  # Three runs of one structure, one compiled step (the model is a static argument;
  # another test of this worker may have compiled it already).
  after = training.train_step._cache_size()  # pylint: disable=protected-access
  assert after <= before + 1
  # Another SCC setting is an argument, not a new program.
  training.train_and_evaluate(cfg.replace(scc_t_max=0), tmp_path / "t0", progress=False,
                              stop_after=4)
  assert training.train_step._cache_size() == after  # pylint: disable=protected-access


def test_batch_order_is_a_function_of_seed_and_step():
  a = training.batch_indices(0, 5, 1000, 100)
  np.testing.assert_array_equal(a, training.batch_indices(0, 5, 1000, 100))
  assert not np.array_equal(a, training.batch_indices(1, 5, 1000, 100))
  epoch = np.concatenate([training.batch_indices(0, s, 1000, 100) for s in range(10)])
  np.testing.assert_array_equal(np.sort(epoch), np.arange(1000))


def test_resume_refuses_another_space_other_settings_and_corrupt_checkpoints(tmp_path):
  cfg = stage1.make_config("quick", overrides=TINY)
  training.train_and_evaluate(cfg, tmp_path, progress=False, stop_after=4)
  other = stage1.make_config("quick", space="autoformer",
                             overrides=TINY + ["train_size=600", "heldout_size=100"])
  with pytest.raises(PnagError, match="trained for space 'nb201', not 'autoformer'"):
    training.train_and_evaluate(other, tmp_path, progress=False)
  with pytest.raises(ckpt_lib.CheckpointError,
                     match="was trained with codebook_size=16, not 32; resume with the same"):
    training.train_and_evaluate(cfg.replace(codebook_size=32), tmp_path, progress=False)
  # A step limit below the checkpoint's would report the limit and keep the later step.
  with pytest.raises(ckpt_lib.CheckpointError, match="is at step 4, past this run's 2 steps"):
    training.train_and_evaluate(cfg.replace(max_steps=2), tmp_path, progress=False)
  assert json.loads((tmp_path / "stage1" / "config.json").read_text())["max_steps"] == 12
  # Wreck every data file of the saved params: resuming must fail with one clear line.
  params_dir = next((tmp_path / "stage1" / "checkpoints").glob("*/params"))
  for f in params_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  with pytest.raises(ckpt_lib.CheckpointError) as err:
    training.train_and_evaluate(cfg, tmp_path, progress=False)
  assert "\n" not in str(err.value)
  shutil.rmtree(params_dir)
  with pytest.raises(ckpt_lib.CheckpointError):
    training.train_and_evaluate(cfg, tmp_path, progress=False)


def test_the_cli_config_of_a_new_and_a_resumed_run(untrained_run, stage1_saver, tmp_path):
  new = training.config_for(tmp_path / "new", preset=None, space=None, seed=None)
  assert new == stage1.make_config("quick")
  assert training.config_for(tmp_path / "new", preset="paper", space="mbv3", seed=2,
                             overrides=["dim=8"]) == stage1.make_config(
                                 "paper", "mbv3", 2, ["dim=8"])
  run = untrained_run("mbv3", dim=8, decoder_hidden=32, num_scales=3, max_steps=77, seed=4)
  stage1_saver(run, tmp_path / "w")
  # The workdir's run: its space, seed and saved config, with --set on top.
  resumed = training.config_for(tmp_path / "w", preset=None, space=None, seed=None,
                                overrides=["max_steps=99"])
  assert resumed == run.cfg.replace(max_steps=99)
  assert training.config_for(tmp_path / "w", preset=None, space="mbv3", seed=4) == run.cfg
  with pytest.raises(PnagError, match="holds a stage-1 run with space 'mbv3'; --space nb201 "
                                      "disagrees"):
    training.config_for(tmp_path / "w", preset=None, space="nb201", seed=None)
  with pytest.raises(PnagError, match="with seed 4; --seed 0 disagrees"):
    training.config_for(tmp_path / "w", preset=None, space=None, seed=0)
  with pytest.raises(PnagError, match="unknown search space 'nb202'"):
    training.config_for(tmp_path / "x", preset=None, space="nb202", seed=None)
  # Its flags' settings are no --set keys on resume either, even when they agree.
  for bad in ("space=mbv3", "seed=4"):
    with pytest.raises(PnagError, match=rf"^--set {bad[:4]}\w*=\.\.\. is refused"):
      training.config_for(tmp_path / "w", preset=None, space=None, seed=None,
                          overrides=[bad])


def _bytes(workdir, *names):
  return {n: (workdir / "stage1" / n).read_bytes() for n in names}


def _killed(*args, **kwargs):
  raise KeyboardInterrupt  # as a kill at that point


def test_train_seconds_total_every_invocation_and_a_finished_run_keeps_its_report(
    tmp_path, step_clock):
  step_clock(training)  # 1 s per step: train_seconds counts the steps trained
  cfg = stage1.make_config("quick", overrides=TINY)
  training.train_and_evaluate(cfg, tmp_path, progress=False, stop_after=6)
  # The total so far rides in the checkpoint, so a kill loses none of it.
  assert stage1.load(tmp_path).meta["train_seconds"] == 6.0
  report = training.train_and_evaluate(cfg, tmp_path, progress=False)
  assert report["train_seconds"] == 12.0 and report["resumed_from"] == 6
  # Nothing left to train (`pnag demo` on a finished run): the report stays as it was.
  kept = _bytes(tmp_path, "report.json", "metrics.jsonl", "config.json")
  assert training.train_and_evaluate(cfg, tmp_path, progress=False) == report
  assert _bytes(tmp_path, "report.json", "metrics.jsonl", "config.json") == kept
  # Another final evaluation asked for, and the run killed during it: config.json is
  # already the new config's, the report still the old one's. The rerun evaluates again:
  # a new report, still of the whole run's time.
  new = cfg.replace(eval_size=128)
  with pytest.MonkeyPatch.context() as m:
    m.setattr(training, "evaluate", _killed)
    with pytest.raises(KeyboardInterrupt):
      training.train_and_evaluate(new, tmp_path, progress=False)
  other = training.train_and_evaluate(new, tmp_path, progress=False)
  assert other["num_evaluated"] == 128 and other["resumed_from"] == 12
  assert other["train_seconds"] == 12.0
  finals = [r for r in reports.read_metrics(tmp_path / "stage1") if r["split"] == "final"]
  assert [r["num_evaluated"] for r in finals] == [128]  # the old final row moved aside
  # A training setting on a finished run trains nothing: refused, and nothing rewritten.
  kept = _bytes(tmp_path, "report.json", "metrics.jsonl", "config.json")
  with pytest.raises(ckpt_lib.CheckpointError, match="learning_rate=0.003, not 0.05.*trains no more"):
    training.train_and_evaluate(new.replace(learning_rate=0.05), tmp_path, progress=False)
  assert _bytes(tmp_path, "report.json", "metrics.jsonl", "config.json") == kept


def test_a_report_measured_anew_keeps_the_runs_training_time(tmp_path, step_clock,
                                                             monkeypatch):
  clock = step_clock(training)
  save = ckpt_lib.StageCheckpointer.save

  def slow_save(self, *args, **kwargs):
    clock.now += 0.5  # a save takes time, which is no training
    return save(self, *args, **kwargs)

  monkeypatch.setattr(ckpt_lib.StageCheckpointer, "save", slow_save)
  cfg = stage1.make_config("quick", overrides=TINY)
  report = training.train_and_evaluate(cfg, tmp_path, progress=False)
  assert report["train_seconds"] == stage1.load(tmp_path).meta["train_seconds"]
  # Measured anew from the last checkpoint: the same time (it lost the final save's).
  other = training.train_and_evaluate(cfg.replace(eval_size=128), tmp_path, progress=False)
  assert other["num_evaluated"] == 128 and other["train_seconds"] == report["train_seconds"]


def test_a_second_trainer_is_refused_until_the_report_is_written(tmp_path, monkeypatch):
  evaluate = training.evaluate
  refused = []

  def second_trainer_meanwhile(*args, **kwargs):
    # The first run is in its final evaluation: the stage is still its own.
    with pytest.raises(ckpt_lib.CheckpointError, match="stage1 is in use: another process"):
      ckpt_lib.StageCheckpointer(tmp_path, stage1.NAME)
    refused.append(True)
    return evaluate(*args, **kwargs)

  monkeypatch.setattr(training, "evaluate", second_trainer_meanwhile)
  training.train_and_evaluate(stage1.make_config("quick", overrides=TINY), tmp_path,
                              progress=False)
  assert refused
  with ckpt_lib.StageCheckpointer(tmp_path, stage1.NAME):  # released with the report
    pass


def test_max_steps_zero_is_documented_as_no_cap(pnag_main):
  cfg = stage1.make_config("quick", overrides=["max_steps=0", "epochs=3", "batch_size=100"])
  assert training.num_steps(cfg, 1000) == 30  # every epoch
  for stage in ("stage1", "stage2"):
    code, out, _ = pnag_main("train", stage, "--help")
    assert code == 0 and "0 (the default, and the paper preset's) is no cap" in " ".join(
        out.split()), stage
