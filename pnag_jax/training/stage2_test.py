"""Stage-2 training: it learns, resumes bit-identically, and refuses a changed stage 1."""

import functools
import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.errors import PnagError
from pnag_jax.stages import stage2
from pnag_jax.training import stage2 as training


def test_test_preset_learns_and_reports(nb201_stage2):
  workdir, report = nb201_stage2  # task-conditioned (see `Stage2Recipe`)
  # Uniform over the 16 codes is 2.77 nats per token; the stage-1 codes of NB201 are
  # far from uniform, and 12 steps of a working model learn a good part of that.
  assert report["heldout_nll_per_token"] < math.log(16) - 0.3
  assert len(report["token_accuracy_per_scale"]) == len(report["scales"]) == 6
  assert report["scales"] == [3, 4, 5, 6, 7, 8]
  # Strictly valid training archs only: NB201's training half less its disconnected
  # cells (2.2%).
  assert 7500 < report["num_train"] < 7812 and report["num_evaluated"] == 256
  assert report["stage1"]["stage"] == "stage1" and report["steps"] == 12
  # Held-out evaluations every eval_every=6 steps and at the last.
  assert [r["step"] for r in report["heldout_curve"]] == [6, 12]
  assert 0.0 < report["heldout_curve"][0]["nll_per_token"] < math.log(16) + 0.5
  assert report["best_heldout_step"] == report["best_checkpoint"]["step"] == 12
  saved = json.loads((workdir / "stage2" / "report.json").read_text())
  assert saved["heldout_nll_per_token"] == report["heldout_nll_per_token"]
  run2 = stage2.load(workdir)
  assert run2.step == 12 and run2.stage1.step == 0


def test_killed_run_resumes_bit_identically(nb201_stage2, stage2_recipe, tmp_path,
                                            step_clock):
  straight, _ = nb201_stage2
  step_clock(training)  # 1 s per step: train_seconds counts the steps trained
  workdir = shutil.copytree(straight, tmp_path / "w", ignore=shutil.ignore_patterns("stage2"))
  assert stage2_recipe.train_stage2(workdir, stop_after=6) == {"steps": 6,
                                                               "stopped_early": True}
  assert not (workdir / "stage2" / "report.json").exists()
  report = stage2_recipe.train_stage2(workdir)
  assert report["resumed_from"] == 6 and report["steps"] == 12
  # Both invocations' time: the first's rides in the checkpoint it saved at step 6.
  assert report["train_seconds"] == 12.0
  # A rerun with nothing left to train returns that report and writes nothing.
  files = ("report.json", "metrics.jsonl", "config.json")
  kept = {f: (workdir / "stage2" / f).read_bytes() for f in files}
  assert stage2_recipe.train_stage2(workdir) == report
  assert {f: (workdir / "stage2" / f).read_bytes() for f in files} == kept
  # The killed run's evaluation at step 6 is in the resumed run's curve, once.
  assert [r["step"] for r in report["heldout_curve"]] == [6, 12]
  jax.tree.map(np.testing.assert_array_equal, stage2.load(straight).params,
               stage2.load(workdir).params)


def test_the_best_held_out_step_is_kept_served_and_survives_a_kill(nb201_stage2, stage2_recipe,
                                                                    tmp_path, monkeypatch):
  workdir = shutil.copytree(nb201_stage2[0], tmp_path / "w",
                            ignore=shutil.ignore_patterns("stage2"))
  # Held-out NLL as a memorising model's: best at step 9, worse after. Scripted on top
  # of the real evaluation (the periodic one, on the first 1,024 held-out archs), so
  # only what the trainer does with it is under test.
  script = {3: 2.0, 6: 1.5, 9: 1.4, 12: 1.9}
  periodic = training.CHUNK * 2

  def evaluate(model, params, codebook, tokens, *args):
    out = real(model, params, codebook, tokens, *args)
    if tokens.shape[0] == periodic and not args and step[0] in script:
      out = {**out, "nll_per_token": script[step[0]]}
    return out

  real, step = training.evaluate, [0]
  real_step = training.train_step

  def counting_step(*a, **kw):
    step[0] += 1
    return real_step(*a, **kw)

  monkeypatch.setattr(training, "evaluate", evaluate)
  monkeypatch.setattr(training, "train_step", counting_step)
  cfg = stage2_recipe.stage2_config().replace(eval_every=3)
  assert stage2_recipe.train_stage2(workdir, cfg, stop_after=9)["stopped_early"]
  best = ckpt_lib.StageCheckpointer(workdir, stage2.BEST, read_only=True)
  assert best.all_steps() == [6, 9]
  # A kill after the best step's save and before the run's own: step 9 is gone from the
  # run; the resumed run drops best step 9, recomputes it, and keeps it again.
  with ckpt_lib.StageCheckpointer(workdir, stage2.NAME) as run:
    run.delete(9)
  step[0] = 6
  report = stage2_recipe.train_stage2(workdir, cfg)
  assert report["resumed_from"] == 6
  assert report["best_checkpoint"] == {"step": 9, "nll_per_token": 1.4}
  assert [r["step"] for r in report["heldout_curve"]] == [3, 6, 9, 12]
  assert report["best_heldout_step"] == 9
  served = stage2.load(workdir)
  assert served.step == 9 and served.cfg.keep_best
  last = stage2.load(workdir, step=12)
  assert last.step == 12 and stage2.served_step(workdir) == (stage2.BEST, 9)
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, served.params, last.params)))
  # Finished, it keeps serving what it kept: a rerun with keep_best=false wrote a report
  # of the last step while `load` went on serving step 9.
  with pytest.raises(PnagError, match="finished with keep_best=True; which step it serves"):
    stage2_recipe.train_stage2(workdir, cfg.replace(keep_best=False))
  assert stage2.served_step(workdir) == (stage2.BEST, 9)
  # Where no best step is kept (runs from before keep_best), the latest is served.
  no_best = shutil.copytree(workdir, tmp_path / "no_best")
  shutil.rmtree(no_best / "stage2" / "best")
  assert stage2.load(no_best).step == 12


def test_resume_refuses_other_settings_and_a_changed_stage1(nb201_stage2, stage2_recipe,
                                                            nb201_untrained, stage1_saver,
                                                            tmp_path):
  workdir = shutil.copytree(nb201_stage2[0], tmp_path / "w")
  cfg = stage2_recipe.stage2_config()
  with pytest.raises(ckpt_lib.CheckpointError, match="width=32, not 48"):
    stage2_recipe.train_stage2(workdir, cfg.replace(width=48))
  # A step limit below the checkpoint's would report the limit and serve the later step.
  with pytest.raises(ckpt_lib.CheckpointError, match="is at step 12, past this run's 6 steps"):
    stage2_recipe.train_stage2(workdir, cfg.replace(max_steps=6))
  # Another data dir (here: one task fewer) would draw the conditions from another bank.
  fewer = stage2_recipe._synthetic_tasks(("acc_a", "lat_x", "lat_z"))  # pylint: disable=protected-access
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=r"other condition_tasks \(3, now 2; new: none; gone: acc_b\)"):
    training.train_and_evaluate(cfg, workdir, tasks=fewer, progress=False)
  # Stage 1 trained on underneath (a new step with other params): stage 2 is stale.
  moved = jax.tree.map(lambda x: x + 1.0, nb201_untrained.params)
  stage1_saver(nb201_untrained.__class__(**{**nb201_untrained.__dict__, "params": moved}),
               workdir, step=1)
  with pytest.raises(ckpt_lib.CheckpointError, match="another stage 1"):
    stage2_recipe.train_stage2(workdir, cfg)


def test_micro_batches_take_the_same_step(nb201_stage2):
  run2 = stage2.load(nb201_stage2[0])
  codebook = jnp.asarray(run2.stage1.params["codebook"])
  tokens = jax.random.randint(jax.random.key(1), (8, run2.model.layout.num_tokens), 0,
                              codebook.shape[0])
  opt = training.OptimizerSettings(learning_rate=1e-2, weight_decay=1e-4, warmup_steps=0,
                                   total_steps=10, grad_clip=2.0)

  def step(micro_batches):
    state = {"params": run2.params, "opt_state": training.make_optimizer(opt).init(run2.params)}
    state = jax.tree.map(jnp.array, state)  # train_step donates it
    return training.train_step(state, tokens, jnp.arange(8, dtype=jnp.int32), codebook, {},
                               jax.random.key(0), 0, model=run2.model, opt=opt, cond_drop=0.5,
                               micro_batches=micro_batches)

  (whole, whole_metrics), (sliced, sliced_metrics) = step(1), step(4)
  # Loss and accuracy are means over all 8 archs, the gradient norm that of their mean
  # gradient: a sum, or one slice's, would differ.
  for name, value in whole_metrics.items():
    np.testing.assert_allclose(sliced_metrics[name], value, rtol=1e-5, err_msg=name)
  # Adam's first step is about lr * sign(g): 1e-2 where the gradient is clear, and
  # float-order noise only where |g| is near Adam's eps (seen: 1.3e-5).
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=5e-5),
               sliced["params"], whole["params"])
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), whole["params"], run2.params)
  assert max(jax.tree.leaves(moved)) > 1e-3


def test_config_errors_are_one_line():
  with pytest.raises(PnagError, match="condition must be one of none, task, budget"):
    stage2.make_config("test", overrides=["condition=latency"])
  with pytest.raises(PnagError, match="k_min <= k_max"):
    stage2.make_config("test", overrides=["k_min=9", "k_max=3"])
  with pytest.raises(PnagError, match="multiple of heads"):
    stage2.make_config("test", overrides=["width=30", "heads=4"])
  with pytest.raises(PnagError,
                     match=r"batch_size \(16\) must be a multiple of micro_batches \(3\)"):
    stage2.make_config("test", overrides=["micro_batches=3"])
  # Each would fail later with a traceback (a zero modulus, an empty bank) or train on
  # silently (a NaN model, a negative evaluation slice).
  for bad, fragment in (("eval_every=0", "eval_every must be >= 1"),
                        ("log_every=0", "log_every must be >= 1"),
                        ("checkpoint_every=0", "checkpoint_every must be >= 1"),
                        ("task_bank=0", "task_bank must be >= 1"),
                        ("eval_size=-5", "eval_size must be >= 0"),
                        ("learning_rate=nan", "learning_rate must be finite and > 0"),
                        ("grad_clip=nan", "grad_clip must be finite and >= 0"),
                        ("weight_decay=-1", "weight_decay must be finite and >= 0"),
                        ("cond_drop=nan", r"cond_drop must be in \[0, 1\]")):
    with pytest.raises(PnagError, match=fragment):
      stage2.make_config("test", overrides=[bad])


def test_task_condition_without_a_surrogate_says_how_to_train_one(nb201_workdir):
  with pytest.raises(ckpt_lib.CheckpointError, match="pnag train surrogate"):
    training.train_and_evaluate(stage2.make_config("test", overrides=["condition=task"]),
                                nb201_workdir, progress=False)


def test_an_unfinished_stage1_is_refused_before_anything_is_written(nb201_workdir,
                                                                   tmp_path):
  # As a stage 1 killed halfway: checkpoints, no final report. Stage 2 would be bound to
  # a step that resuming stage 1 later rotates out.
  workdir = shutil.copytree(nb201_workdir, tmp_path / "w")
  (workdir / "stage1" / "report.json").unlink()
  with pytest.raises(PnagError, match=r"stage1 in .* is not finished \(step 0, no final "
                     r"report\); finish it first: pnag train stage1 --workdir"):
    training.train_and_evaluate(stage2.make_config("test"), workdir, progress=False)
  (workdir / "stage1" / "report.json").write_text('{"steps": 40}')
  with pytest.raises(PnagError, match="its report is of step 40"):
    training.train_and_evaluate(stage2.make_config("test"), workdir, progress=False)
  assert not (workdir / "stage2").exists()


def test_load_without_stage2_says_how_to_train(nb201_workdir):
  with pytest.raises(ckpt_lib.CheckpointError, match="pnag train stage2 --workdir"):
    stage2.load(nb201_workdir)
