"""The transfer protocol's stage-2 guides: pools, draw order, which stage 2, bad input."""

import re
import shutil

import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import transfer
from pnag_jax.generation import Sampler, SamplerConfig
from pnag_jax.guidance import rank
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2
from pnag_jax.stages import surrogate as surrogate_stage
from pnag_jax.training import stage2 as stage2_training
from pnag_jax.training import surrogate as surrogate_training

# With the other stage-2 tests: one worker, and the sampler compile of
# task_conditions_test (chunk 8, CFG 2) is shared.
pytestmark = pytest.mark.xdist_group("nb201_stage2")


def test_draw_order_keeps_first_of_each_class_and_drops_the_references():
  space = get_space("nb201")
  genes = space.enumerate()
  # Rows 10..19 drawn twice, then 30..39, two of which are the references.
  pool = np.concatenate([genes[10:20], genes[10:20], genes[30:40]])
  order, _ = rank.candidates(space, pool, ref_genes=genes[30:32])
  got = [tuple(k) for k in rank.iso_keys(space, order).tolist()]
  assert len(got) == len(set(got)) and len(got) >= 8  # each class once
  ref_keys = {tuple(k) for k in rank.iso_keys(space, genes[30:32]).tolist()}
  assert not ref_keys & set(got)
  # Draw order: the first arch of each class, where it was first drawn.
  expect = [tuple(k) for k in rank.iso_keys(
      space, pool[rank.first_of_each_class(space, pool)]).tolist() if tuple(k) not in ref_keys]
  assert got == expect


def test_walk_counts_trained_archs_to_the_optimum():
  walk = transfer._walk  # pylint: disable=protected-access
  acc = np.array([1.0, 3.0, 2.0, 3.0])
  assert walk(np.array([2, 3, 1]), acc, 5, False) == (2.0, 7)  # K + the pick that ties it
  assert walk(np.array([2]), acc, 5, True) == (2.0, 5)          # a reference was the best
  assert walk(np.array([0, 2]), acc, 5, False) == (1.0, transfer.CAP)
  top1, count = walk(np.zeros(0, np.int64), acc, 5, False)      # nothing to pick
  assert np.isnan(top1) and count == transfer.CAP
  assert walk(np.zeros(0, np.int64), acc, 5, True)[1] == 5


def test_a_table_order_is_trained_as_picks_are():
  space = get_space("nb201")
  genes = space.enumerate()
  valid = np.asarray(space.strict_valid(*space.encode(genes)))
  rows = np.arange(space.size())[::-1]  # a table's order: every cell, here last first
  refs = genes[np.flatnonzero(valid)[[100, 5000]]]
  got = transfer._as_picks(space, genes, rows, valid, refs)  # pylint: disable=protected-access
  keys = [tuple(k) for k in rank.iso_keys(space, genes[got]).tolist()]
  ref_keys = {tuple(k) for k in rank.iso_keys(space, refs).tolist()}
  classes = {tuple(k) for k in rank.iso_keys(space, genes[valid]).tolist()}
  # Every strictly valid class but the references' once, in the table's order.
  assert valid[got].all() and np.all(np.diff(got) < 0)
  assert len(keys) == len(set(keys)) == len(classes) - len(ref_keys)
  assert not ref_keys & set(keys)


def test_ar_pool_is_conditioned_and_its_stage2_must_match_the_exclusions(nb201_stage2,
                                                                       stage2_recipe):
  workdir, _ = nb201_stage2
  cfg = stage2_recipe.stage2_config()
  run2 = transfer.conditional_stage2(workdir, workdir, ("lat_z",), cfg)
  space = run2.stage1.space
  sampler = Sampler.from_run(run2.stage1, SamplerConfig(prior="ar", chunk_size=8,
                                                        cfg_scale=2.0))
  refs, scores = space.enumerate()[:5], np.arange(5.0)
  raw = {q: sampler.generate(jax.random.key(0), 16, stage2.task_condition(
      run2.surrogate, refs, scores, minimize=False, target=q)) for q in (0.1, 0.99)}
  assert not np.array_equal(raw[0.1].genes, raw[0.99].genes)  # the draws read q
  pool, drawn = transfer._ar_pool(sampler, run2, refs, scores, q=0.99,  # pylint: disable=protected-access
                                  key=jax.random.key(0), num=16)
  # The strictly valid draws, in draw order (few or none, of an untrained stage 1).
  assert drawn == 16
  np.testing.assert_array_equal(pool, raw[0.99].genes[raw[0.99].valid])
  with pytest.raises(PnagError, match=r"sits on a surrogate trained without \('lat_z',\)"):
    transfer.conditional_stage2(workdir, workdir, ("cifar10(?!0)",), cfg)
  assert stage2.read_config(workdir).condition == "task"
  # A report names the --stage2-preset and --stage2-set it asked for.
  with pytest.raises(PnagError, match=r"holds a stage 2 trained with width=32 \(asked: 64\)"):
    transfer.conditional_stage2(workdir, workdir, ("lat_z",), cfg.replace(width=64))


def test_a_stage2_beside_another_stage1_than_the_workdirs_is_refused(
    nb201_stage2, stage2_recipe, untrained_run, stage1_saver, tmp_path):
  # Its stage 2 was trained on its own stage-1 copy: the ar guides would draw from
  # that run while the report names --workdir.
  other = tmp_path / "other"
  stage1_saver(untrained_run("nb201", other, seed=1, dim=8, decoder_hidden=32), other)
  with pytest.raises(PnagError, match="is a copy of another stage-1 run than"):
    transfer.conditional_stage2(nb201_stage2[0], other, ("lat_z",),
                                stage2_recipe.stage2_config())


def test_a_killed_stage2_is_resumed_to_its_end(nb201_stage2, stage2_recipe, tmp_path,
                                               monkeypatch):
  workdir = shutil.copytree(nb201_stage2[0], tmp_path / "w",
                            ignore=shutil.ignore_patterns("stage2"))
  stage2_recipe.train_stage2(workdir, stop_after=6)  # as a kill after step 6 of 12
  cfg = stage2_recipe.stage2_config()
  real = stage2_training.train_and_evaluate
  # Resumed at another rate (which the trainer lets change), it would be half one model
  # and half another.
  monkeypatch.setattr(stage2_training, "train_and_evaluate",
                      lambda *a, **k: pytest.fail("resumed with other settings"))
  with pytest.raises(PnagError, match=r"holds a stage 2 trained with learning_rate=0.005 "
                     r"\(asked: 0.5\)"):
    transfer.conditional_stage2(workdir, workdir, ("lat_z",), cfg.replace(learning_rate=0.5))
  trained = []
  monkeypatch.setattr(stage2_training, "train_and_evaluate",
                      lambda cfg, w, **kw: trained.append(w) or real(
                          cfg, w, tasks=stage2_recipe.tasks(("lat_z",)), **kw))
  run2 = transfer.conditional_stage2(workdir, workdir, ("lat_z",), cfg)
  assert trained == [workdir] and run2.step == 12
  assert (workdir / "stage2" / "report.json").is_file()


def test_a_killed_run_is_resumed_only_with_its_own_settings(stage2_recipe, tmp_path,
                                                            monkeypatch):
  exclude = stage2_recipe.EXCLUDE
  root = tmp_path / "surrogates"
  overrides = (*stage2_recipe.SURROGATE, "checkpoint_every=2")
  cfg = surrogate_stage.make_config("test", "nb201", 0, exclude, overrides)
  surrogate_training.train_and_evaluate(cfg, root / f"excl_{transfer.slug(exclude)}",
                                        tasks=stage2_recipe.tasks(), progress=False,
                                        stop_after=2)
  # The trainer checks only what a resume must share: it would go on at another rate.
  monkeypatch.setattr(surrogate_training, "train_and_evaluate",
                      lambda *a, **k: pytest.fail("resumed with other settings"))
  with pytest.raises(PnagError, match=r"holds a surrogate trained with learning_rate=0.003 "
                     r"\(asked: 0.5\); remove .* or use another --surrogates$"):
    transfer.meta_trained(root, exclude, preset="test", seed=0,
                          overrides=(*overrides, "learning_rate=0.5"),
                          tasks=stage2_recipe.tasks())
  monkeypatch.undo()
  kept = dict(preset="test", seed=0, overrides=overrides, tasks=stage2_recipe.tasks())
  assert transfer.meta_trained(root, exclude, **kept).step == 4
  # Its last checkpoint removed (a corrupt one's error advises it): trained on to its
  # end, not used at step 2.
  workdir = root / f"excl_{transfer.slug(exclude)}"
  shutil.rmtree(surrogate_stage.checkpoint_dir(workdir) / "4")
  assert transfer.meta_trained(root, exclude, **kept).step == 4
  # Another data dir's tasks: refused, not reused.
  tasks = stage2_recipe.tasks()
  more = {**tasks, "acc_added": next(iter(tasks.values()))}  # as a table added to it
  with pytest.raises(PnagError, match="was trained with other train_tasks"):
    transfer.meta_trained(root, exclude, **{**kept, "tasks": more})


def test_stage2_settings_are_checked_before_any_work(tmp_path):
  # Its seed is a --stage2-set key: this stage 2 has no --seed flag of its own.
  assert transfer.stage2_config("test", ("seed=3",)).seed == 3
  assert transfer.stage2_config("test").seed == 0
  out = tmp_path / "out"
  with pytest.raises(PnagError, match="--stage2-set cannot set condition"):
    transfer.run(tmp_path / "no_run", out, guides=("ar",), stage2_overrides=("condition=none",))
  with pytest.raises(PnagError, match="unknown"):
    transfer.run(tmp_path / "no_run", out, guides=("ar",), stage2_overrides=("widht=3",))
  with pytest.raises(PnagError, match=re.escape("--cfg-scale, --stage2-set only apply to the "
                                                "ar guides")):
    transfer.run(tmp_path / "no_run", out, cfg_scale=3.0, stage2_overrides=("width=3",))
  assert not out.exists()


@pytest.mark.parametrize("kw, fragment", [
    ({"guides": ("rank", "ar2")}, "unknown guide 'ar2'; guides: rank, feedback, ar, ar+rank"),
    ({"guides": ("ar",), "target_q": 1.5}, "--target-q must be a quantile in [0, 1]"),
    ({"guides": ("ar",), "ar_pool": 0}, "--ar-pool must be positive"),
    ({"ks": (5, 100)}, "K must be in [1, 99] references, got 100"),
    # Refused after the meta-training, with the surrogates it had made left behind.
    ({"ks": (5, 1), "adapt_steps": 3}, "--adapt-steps fits the surrogate to the references, "
                                       "which needs K >= 2"),
    # With every cell as the pool, the workdir was read only by the stage-2 copy (a
    # traceback where it was missing).
    ({"guides": ("ar",), "pool": "all"}, "no stage-1 checkpoints under"),
])
def test_bad_settings_fail_before_any_work(kw, fragment, tmp_path):
  out = tmp_path / "out"
  with pytest.raises(PnagError, match=re.escape(fragment)):
    transfer.run(tmp_path / "no_run", out, **kw)
  assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    (("transfer", "--workdir", "W", "--ks", "2,x"), "--ks must be comma-separated positive"),
    (("transfer", "--workdir", "W", "--ks", "0"), "--ks must be comma-separated positive"),
    (("transfer", "--workdir", "W", "--seeds", "0"), "--seeds must be >= 1, got 0"),
    (("transfer", "--workdir", "W", "--pool", "lots"), "--pool must be a positive number"),
    (("objectives", "--pool", "1000"), "give --workdir, or --pool all"),
    (("objectives", "--pool", "1e400"), "--pool must be a positive number"),
    (("objectives", "--seeds", "-1"), "--seeds must be >= 1, got -1"),
    (("families", "--seeds", "0"), "--seeds must be >= 1, got 0"),
    (("families", "--adapt-steps", "-1"), "--adapt-steps must be >= 0"),
    (("objectives", "--adapt-steps", "-1"), "--adapt-steps must be >= 0"),
    (("objectives", "--dataset", "cifar1"), "invalid choice: 'cifar1'"),
    (("transfer", "--workdir", "W", "--adapt-steps", "-1"), "--adapt-steps and --scratch-steps"),
    (("transfer", "--workdir", "W", "--scratch-steps", "-1"), "--adapt-steps and --scratch-steps"),
    (("transfer", "--workdir", "W", "--guide", "ar", "--cfg-scale", "nan"), "--cfg-scale must be"),
    (("transfer", "--workdir", "W"), "no stage-1 checkpoints"),
    (("speed", "--workdir", "W"), "no stage-1 checkpoints"),
    (("speed", "--workdir", "W", "--max-log2", "-1"), "--max-log2 must be >= 0"),
    (("scaling", "--workdir", "W"), "no stage-1 run under W"),
    (("executable", "--random", "--space", "nb201", "--num", "0"), "--num must be >= 1"),
    (("executable", "--random", "--space", "nb201", "--seed", str(2**32 + 5)),
     "--seed must be in [0, 2**32 - 1]"),
    (("executable", "--workdir", "W"), "no stage-1 checkpoints"),
    (("scc-ablation", "--seeds", "0"), "--num and --seeds must be >= 1"),
    # A --set typo used to fail only after the output directory was made.
    (("transfer", "--workdir", "W", "--pool", "all", "--set", "foo=1"), "unknown config key"),
    (("objectives", "--set", "foo=1"), "unknown config key 'foo'"),
    (("families", "--set", "steps=0"), "steps must be >= 1"),
    (("families", "--families", ","), "--families lists no exclusion regex"),
    # One folder, excl_pgd, for both: the second study failed after the first's work.
    (("families", "--families", "pgd,pgd."), "'pgd' and 'pgd.' would share the surrogate "
                                             "folder excl_pgd"),
])
def test_eval_commands_refuse_bad_settings_in_one_line_before_any_work(args, fragment,
                                                                        tmp_path, pnag_main):
  # Each would otherwise meta-train surrogates for minutes, then fail or report NaNs.
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", *args, "--out", out)
  assert code == 2 and err.count("\n") == 1 and fragment in err, err
  assert not out.exists()


@pytest.mark.parametrize("protocol", ["objectives", "transfer"])
def test_a_stage1_run_of_another_space_is_refused_before_any_work(protocol, mbv3_r_workdir,
                                                                  tmp_path, pnag_main):
  # Its draws would be looked up in NB201's tables: a broadcasting traceback, and in
  # objectives only after meta-training the surrogate.
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", protocol, "--workdir", mbv3_r_workdir, "--pool", "1000",
                           "--preset", "test", "--out", out)
  assert code == 2 and err == (f"pnag: error: {protocol} needs an NB201 stage-1 run; "
                               f"{mbv3_r_workdir} is mbv3_r\n"), err
  assert not out.exists()


@pytest.mark.parametrize("args", [("objectives",), ("transfer", "--workdir", "W"),
                                  ("families",)])
def test_the_nb201_protocols_without_the_tables_say_so(args, tmp_path, pnag_main,
                                                       monkeypatch):
  # Without them these failed on a missing column (a KeyError) or blamed the pattern
  # that matched none of them, some after creating --out.
  monkeypatch.setenv("PNAG_DATA_DIR", str(tmp_path))  # set, but holding no nb201/
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", *args, "--preset", "test", "--out", out)
  assert code == 2 and err == (f"pnag: error: pnag eval {args[0]} needs the NB201 tables: a "
                               "data directory holding nb201/ (--data-dir or "
                               f"$PNAG_DATA_DIR); $PNAG_DATA_DIR is {str(tmp_path)!r}, which "
                               "holds none\n"), err
  assert not out.exists()
