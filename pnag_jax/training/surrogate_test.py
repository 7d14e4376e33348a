"""Meta-training: transfer to a never-read dataset, bit-identical resume, frozen exclusions."""

import dataclasses
import hashlib
import json

import jax
import numpy as np
import pytest
import scipy.stats

from pnag_jax import tasks as tasks_lib
from pnag_jax.errors import PnagError
from pnag_jax.guidance.rank import first_of_each_class
from pnag_jax.spaces import get_space
from pnag_jax.stages import lineage
from pnag_jax.stages import surrogate as stage
from pnag_jax.training import reports
from pnag_jax.training import surrogate as trainer


def _spearman_from_refs(model, params, target, space, k, seeds):
  genes = space.enumerate()
  reps = first_of_each_class(space, genes)
  rho = []
  for s in seeds:
    refs = np.random.default_rng([s, k]).choice(space.size(), k, replace=False)
    pred = stage.predictor(model, params, genes[refs], target[refs]).scores(genes[reps])
    rho.append(scipy.stats.spearmanr(pred, target[reps]).statistic)
  return float(np.mean(rho))


def test_meta_training_transfers_to_a_dataset_it_never_read(nb201_surrogate, data_dir):
  workdir, report = nb201_surrogate
  run = stage.load(workdir, space="nb201")
  # Every CIFAR-10 task, and nothing else, was left out, and the checkpoint says so.
  assert run.cfg.exclude == ("cifar10(?!0)",)
  assert set(run.excluded_tasks) == set(report["excluded_tasks"])
  assert "cifar10_test_acc" in run.excluded_tasks and len(run.excluded_tasks) == 26
  assert all("cifar10" in n and "cifar100" not in n for n in run.excluded_tasks)
  assert set(report["spearman_by_k"]) == {"2", "10"}
  # The held-out tasks' first picks: far above the median arch, none past the optimum.
  assert set(report["top1_quantile_by_k"]) == set(report["top10_quantile_by_k"]) == {"2", "10"}
  for k in ("2", "10"):
    assert 0.5 < report["top1_quantile_by_k"][k] <= report["top10_quantile_by_k"][k] <= 1.0
  target = tasks_lib.builtin_tasks("nb201", data_dir)["cifar10_test_acc"].by_row()
  trained = _spearman_from_refs(run.model, run.params, target, run.space, 10, (0, 1, 2))
  _, fresh = stage.init(run.cfg)
  untrained = _spearman_from_refs(run.model, fresh, target, run.space, 10, (0, 1, 2))
  # 6,466 isomorphism classes, K = 10 references of a dataset never read in training.
  print(f"Spearman, K=10, CIFAR-10 never read: trained {trained:.3f}, untrained {untrained:.3f}; "
        f"held-out first-pick quantiles {report['top1_quantile_by_k']}")
  assert trained > 0.75, trained
  assert untrained < trained - 0.3, (untrained, trained)


def test_pick_quantiles_read_the_picks_a_user_would_train():
  scores = np.arange(100, dtype=np.float32)  # arch i scores i: 99 is the optimum
  refs = np.array([99, 3])
  # A perfect predictor cannot pick the optimum, already a reference: it picks 98.
  assert trainer.pick_quantiles(scores, scores, refs, minimize=False) == (0.99, 0.99)
  assert trainer.pick_quantiles(-scores, scores, refs, minimize=False) == (0.01, 0.11)
  # For latency the lowest is best: the same predictions rank the other way.
  assert trainer.pick_quantiles(scores, scores, refs, minimize=True) == (1.0, 1.0)
  # The best of the first 10 counts for top-10, and NaN predictions are never picked.
  pred = np.where(np.arange(100) == 50, np.nan, -scores)
  pred[60] = 1e6
  assert trainer.pick_quantiles(pred, scores, refs, minimize=False) == (0.61, 0.61)
  assert np.isnan(trainer.pick_quantiles(scores[:2], scores[:2], np.array([0, 1]),
                                         minimize=False)[0])


SYNTHETIC = ("acc_a", "acc_b", "acc_c", "lat_x", "lat_y", "lat_z")


_TINY = ["steps=6", "checkpoint_every=3", "episodes=2", "queries=8", "k_max=4",
         "num_val_tasks=2", "eval_ks=2", "eval_archs=16", "eval_repeats=1", "dim=8",
         "emb_dim=8", "hidden=8", "task_dim=8", "layers=1"]


def test_excluded_tasks_are_never_read_and_are_frozen(tmp_path, synthetic_tasks):
  tasks = synthetic_tasks(SYNTHETIC, raising=("lat_y", "lat_z"))
  cfg = stage.make_config("test", "nb201", 0, ("lat_[yz]",), _TINY)
  report = trainer.train_and_evaluate(cfg, tmp_path, tasks=tasks, progress=False)
  assert report["excluded_tasks"] == ["lat_y", "lat_z"]
  assert len(report["train_tasks"]) == 2 and len(report["val_tasks"]) == 2
  run = stage.load(tmp_path)
  assert run.excluded_tasks == ("lat_y", "lat_z") and run.cfg.exclude == ("lat_[yz]",)
  # The linear prior is fitted on the training tasks alone, and says which they were.
  assert report["linear_prior"]["tasks"] == 2 and set(report["linear_prior"]["spearman_by_k"]) == {"2"}
  with np.load(stage.linear_prior_path(tmp_path)) as z:
    about = json.loads(str(z["about"]))
  assert about == {"excluded_tasks": ["lat_y", "lat_z"], "train_tasks": report["train_tasks"]}
  assert run.linear_prior["mean"].shape == (31,)
  # NB201's edges are alike, so the prior holds the tied hypothesis too (6 weights).
  assert run.linear_prior["tied_cov"].shape == (31, 31)
  assert np.linalg.matrix_rank(run.linear_prior["tied_cov"] - 1e-4 * np.eye(31), tol=1e-3) <= 6


def _killed(*args, **kwargs):
  raise KeyboardInterrupt  # as a kill at that point


def test_a_run_without_its_linear_prior_gets_it_by_rerunning(tmp_path, synthetic_tasks,
                                                             pnag_main):
  tasks = synthetic_tasks(SYNTHETIC, raising=("lat_z",))
  cfg = stage.make_config("test", "nb201", 0, ("lat_z",), _TINY)
  trainer.train_and_evaluate(cfg, tmp_path, tasks=tasks, progress=False)
  # A finished run trains no more: a loss setting would label an untrained report.
  with pytest.raises(stage.ckpt_lib.CheckpointError, match="rank_weight=1.0, not 0.0"):
    trainer.train_and_evaluate(dataclasses.replace(cfg, rank_weight=0.0), tmp_path,
                               tasks=tasks, progress=False)
  path = stage.linear_prior_path(tmp_path)
  kept = path.read_bytes()
  before = stage.load(tmp_path)
  refs = before.space.enumerate()[:6]
  path.unlink()  # as a run trained before the prior existed
  report_path = tmp_path / stage.NAME / "report.json"
  report = json.loads(report_path.read_text())
  report_path.write_text(json.dumps({**report, "linear_prior": None}))  # as its report was
  del report[reports.CONFIG_HASH]  # the file's bookkeeping; not returned
  old = stage.load(tmp_path)
  assert old.linear_prior is None
  with pytest.raises(stage.PnagError, match="pnag train surrogate --workdir"):
    old.linear_predictor(refs, np.arange(6.0))
  code, _, err = pnag_main("predict", "--workdir", tmp_path, "--refs", tmp_path / "r.csv",
                           "--archs", tmp_path / "a.csv", "--predictor", "nope")
  assert code == 2 and "--predictor" in err
  with pytest.MonkeyPatch.context() as m:
    # The network is unchanged: a finished run's rerun does not validate it again.
    m.setattr(stage, "predictor", lambda *a: pytest.fail("the network was validated again"))
    # A kill while the new prior's figures are measured (the prior is saved first)
    # loses nothing: the next rerun measures them.
    m.setattr(trainer, "_linear_report", _killed)
    with pytest.raises(KeyboardInterrupt):
      trainer.train_and_evaluate(cfg, tmp_path, tasks=tasks, progress=False)
    m.undo()
    m.setattr(stage, "predictor", lambda *a: pytest.fail("the network was validated again"))
    assert path.is_file()
    assert trainer.train_and_evaluate(cfg, tmp_path, tasks=tasks, progress=False) == report
  saved = json.loads(report_path.read_text())
  assert saved.pop(reports.CONFIG_HASH) and saved == report  # the prior's figures back too
  again = stage.load(tmp_path)
  assert path.read_bytes() == kept  # a pure function of the training tasks
  assert lineage.params_sha256(again.params) == lineage.params_sha256(before.params)
  # A prior saved before the tied hypothesis existed is the untied one alone.
  untied = {k: again.linear_prior[k] for k in ("mean", "cov", "tasks")}
  stage.save_linear_prior(tmp_path, untied, ["lat_z"], ["acc_a"])
  old_prior = stage.load(tmp_path)
  assert "tied_mean" not in old_prior.linear_prior
  assert old_prior.linear_predictor(refs, np.arange(6.0)).tied == 0.0
  # A corrupt file, or one fitted under other exclusions, is refused in one line.
  path.write_bytes(kept[:100])
  with pytest.raises(stage.ckpt_lib.CheckpointError, match="corrupt") as e:
    stage.load(tmp_path)
  assert "\n" not in str(e.value)
  stage.save_linear_prior(tmp_path, again.linear_prior, ["lat_y"], ["acc_a"])
  with pytest.raises(stage.ckpt_lib.CheckpointError, match="fitted without"):
    stage.load(tmp_path)
  # A file the file system refuses is a one-line error, and leaves no temporary.
  path.unlink()
  path.mkdir()
  with pytest.raises(PnagError, match="cannot write"):
    stage.save_linear_prior(tmp_path, again.linear_prior, ["lat_z"], ["acc_a"])
  assert sorted(p.name for p in path.parent.glob("*.tmp*")) == []


def test_a_run_killed_before_its_first_checkpoint_leaves_the_next_run_nothing(
    tmp_path, synthetic_tasks):
  logged = [*_TINY, "log_every=1"]
  cfg = stage.make_config("test", "nb201", 0, ("lat_z",), logged)
  with pytest.MonkeyPatch.context() as m:
    m.setattr(stage.ckpt_lib.StageCheckpointer, "save", _killed)
    with pytest.raises(KeyboardInterrupt):
      trainer.train_and_evaluate(cfg, tmp_path, tasks=synthetic_tasks(SYNTHETIC),
                                 progress=False)
  assert stage.linear_prior_path(tmp_path).is_file()
  assert len(reports.read_metrics(tmp_path / stage.NAME)) == 3
  # A new run, under other exclusions: the killed run's prior was fitted on lat_y,
  # this run's held-out or excluded task, and its rows are not this run's.
  other = stage.make_config("test", "nb201", 0, ("lat_[yz]",), logged)
  tasks = synthetic_tasks(SYNTHETIC, raising=("lat_y", "lat_z"))
  report = trainer.train_and_evaluate(other, tmp_path, tasks=tasks, progress=False)
  with np.load(stage.linear_prior_path(tmp_path)) as z:
    about = json.loads(str(z["about"]))
  assert about == {"excluded_tasks": ["lat_y", "lat_z"], "train_tasks": report["train_tasks"]}
  assert stage.load(tmp_path).linear_prior["tasks"] == 2
  assert [r["step"] for r in reports.read_metrics(tmp_path / stage.NAME)] == list(range(1, 7))


def test_killed_run_resumes_bit_identically(tmp_path, synthetic_tasks, step_clock):
  step_clock(trainer)  # 1 s per step: train_seconds counts the steps trained
  tasks = synthetic_tasks(SYNTHETIC)
  cfg = stage.make_config("test", "nb201", 0, ("lat_z",), _TINY)
  trainer.train_and_evaluate(cfg, tmp_path / "a", tasks=tasks, progress=False)
  stopped = trainer.train_and_evaluate(cfg, tmp_path / "b", tasks=tasks, progress=False,
                                       stop_after=3)
  assert stopped == {"steps": 3, "stopped_early": True}
  report = trainer.train_and_evaluate(cfg, tmp_path / "b", tasks=tasks, progress=False)
  # Both invocations' time: the first's rides in the checkpoint it saved at step 3.
  assert report["train_seconds"] == 6.0 and report["resumed_from"] == 3
  # A rerun with nothing left to train returns that report and writes nothing.
  kept = _files(tmp_path / "b")
  assert trainer.train_and_evaluate(cfg, tmp_path / "b", tasks=tasks, progress=False) == report
  assert _files(tmp_path / "b") == kept
  a, b = stage.load(tmp_path / "a"), stage.load(tmp_path / "b")
  assert a.step == b.step == 6
  assert lineage.params_sha256(a.params) == lineage.params_sha256(b.params)
  other = stage.make_config("test", "nb201", 1, ("lat_z",), _TINY)
  trainer.train_and_evaluate(other, tmp_path / "c", tasks=tasks, progress=False)
  assert lineage.params_sha256(stage.load(tmp_path / "c").params) != lineage.params_sha256(
      a.params)


def _files(workdir):
  """{path: bytes} of everything under the run's surrogate directory."""
  root = workdir / stage.NAME
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


def test_resuming_with_other_exclusions_is_refused(tmp_path, pnag_main, synthetic_tasks):
  tasks = synthetic_tasks(SYNTHETIC)
  cfg = stage.make_config("test", "nb201", 0, ("lat_z",), _TINY)
  trainer.train_and_evaluate(cfg, tmp_path, tasks=tasks, progress=False, stop_after=3)
  before = _files(tmp_path)
  assert "config.json" in before and "metrics.jsonl" in before
  code, out, err = pnag_main("train", "surrogate", "--workdir", tmp_path, "--exclude",
                             "lat_y")
  assert code == 2 and out == ""
  assert err.count("\n") == 1 and "exclude" in err and "lat_z" in err, err
  # The same through the checkpoint itself (e.g. a script calling the trainer).
  with pytest.raises(stage.ckpt_lib.CheckpointError, match="exclude"):
    trainer.train_and_evaluate(cfg.__class__(**{**cfg.__dict__, "exclude": ("lat_y",)}),
                               tmp_path, tasks=tasks, progress=False)
  # A refused resume writes nothing: not its config, not a line of metrics.
  assert _files(tmp_path) == before


def test_resuming_on_other_tasks_or_past_its_steps_is_refused(tmp_path, synthetic_tasks):
  cfg = stage.make_config("test", "nb201", 0, ("lat_z",), _TINY)
  trainer.train_and_evaluate(cfg, tmp_path, tasks=synthetic_tasks(SYNTHETIC), progress=False,
                             stop_after=3)
  before = _files(tmp_path)
  # Another data dir with one table more: the held-out tasks would be drawn anew, and
  # tasks trained on would be reported as held out.
  more = synthetic_tasks((*SYNTHETIC, "acc_d"))
  with pytest.raises(stage.ckpt_lib.CheckpointError, match=r"other (train|val)_tasks") as e:
    trainer.train_and_evaluate(cfg, tmp_path, tasks=more, progress=False)
  assert "\n" not in str(e.value) and "acc_d" in str(e.value)
  assert _files(tmp_path) == before
  with pytest.raises(stage.ckpt_lib.CheckpointError, match="at step 3, past steps=2"):
    trainer.train_and_evaluate(cfg.__class__(**{**cfg.__dict__, "steps": 2}), tmp_path,
                               tasks=synthetic_tasks(SYNTHETIC), progress=False)
  assert _files(tmp_path) == before
  # Nothing was written by the refused resumes: the same tasks still finish the run.
  trainer.train_and_evaluate(cfg, tmp_path, tasks=synthetic_tasks(SYNTHETIC), progress=False)
  assert stage.load(tmp_path).step == 6


def test_an_exclusion_that_matches_nothing_is_an_error(tmp_path, data_dir, pnag_main):
  code, _, err = pnag_main("train", "surrogate", "--workdir", tmp_path / "w", "--space",
                           "nb201", "--exclude", "cifar1O", "--data-dir", data_dir)
  assert code == 2 and err.count("\n") == 1 and "cifar1O" in err and "matches no" in err
  assert not (tmp_path / "w").exists()


def test_a_space_whose_tasks_list_no_scores_is_one_line(tmp_path, data_dir, pnag_main):
  # MBV3's tasks are formulas over 10^19 subnets: nothing listed to meta-train on.
  code, _, err = pnag_main("train", "surrogate", "--workdir", tmp_path / "w", "--space",
                           "mbv3", "--data-dir", data_dir)
  assert code == 2 and err.count("\n") == 1, err
  assert "space 'mbv3' has 0 allowed task(s) that list scores" in err
  assert not (tmp_path / "w").exists()


def test_without_the_nb201_tables_it_says_how_to_give_them(tmp_path, pnag_main, monkeypatch):
  monkeypatch.delenv("PNAG_DATA_DIR", raising=False)
  code, out, err = pnag_main("train", "surrogate", "--workdir", tmp_path / "w")
  assert code == 2 and out == "" and err.count("\n") == 1, err
  assert "needs the NB201 tables" in err and "--data-dir" in err and "$PNAG_DATA_DIR" in err
  assert not (tmp_path / "w").exists()


def test_encoder_can_start_from_stage1_and_says_so(tmp_path, untrained_run, stage1_saver,
                                                   synthetic_tasks):
  tasks = synthetic_tasks(SYNTHETIC)
  s1 = untrained_run("nb201", dim=8, encoder_layers=1, seed=3)
  stage1_saver(s1, tmp_path / "s1")
  tiny = [*_TINY, "steps=1", "checkpoint_every=1", f"encoder_init={tmp_path / 's1'}"]
  cfg = stage.make_config("test", "nb201", 0, ("lat_z",), tiny)
  model, params = stage.init(cfg)
  started, source = stage.encoder_from_stage1(cfg, params)
  for part in stage.SHARED_ENCODER_PARTS:
    jax.tree.map(np.testing.assert_array_equal, started["arch"][part],
                 s1.params["encoder"][part])
  assert started["arch"]["readout"] is params["arch"]["readout"]
  assert source == lineage.parent_entry("stage1", 0, s1.params)
  trainer.train_and_evaluate(cfg, tmp_path / "w", tasks=tasks, progress=False)
  with stage.ckpt_lib.StageCheckpointer(tmp_path / "w", stage.NAME, read_only=True) as ckpt:
    assert ckpt.read_meta()["encoder_init"] == source
  # One step of AdamW moves each weight by about the learning rate, not from scratch.
  run = stage.load(tmp_path / "w")
  kernel = run.params["arch"]["layers"][0]["edge_mlp"]["kernel"]
  np.testing.assert_allclose(kernel, s1.params["encoder"]["layers"][0]["edge_mlp"]["kernel"],
                             atol=2 * run.cfg.learning_rate)
  del model
  for bad, match in ((["dim=16"], "dim=8, layers=1; set the surrogate's"),
                     ([f"encoder_init={tmp_path / 'none'}"],
                      "^--set encoder_init=.*/none: no stage-1 checkpoints")):
    cfg = stage.make_config("test", "nb201", 0, ("lat_z",), [*tiny, *bad])
    with pytest.raises(stage.PnagError, match=match):
      stage.encoder_from_stage1(cfg, stage.init(cfg)[1])
    # The trainer checks it before creating anything: no empty checkpoints left behind.
    with pytest.raises(stage.PnagError, match=match):
      trainer.train_and_evaluate(cfg, tmp_path / "bad", tasks=tasks, progress=False)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name", ["acc_a", "lat_x"])  # maximized, minimized
def test_fed_back_episodes_end_their_references_at_the_tasks_best(synthetic_tasks, name):
  task = trainer.task_arrays(synthetic_tasks((name,))[name])
  sign = -1 if task.minimize else 1
  cut = np.quantile(sign * task.scores, 1 - trainer.FED_BACK_TOP)
  share = {}
  for fed in (0.0, 1.0):
    cfg = stage.make_config("test", "nb201", 0, (), (f"fed_back_refs={fed}",))
    top = []
    for step in range(4):
      genes, scores, mask = trainer.episode_batch(cfg, [task], [[0]], step)
      k = mask.sum(1)
      # Every fed-back episode's last reference is one of the task's best 5%.
      last = sign * scores[np.arange(len(k)), k - 1]
      top.append(last >= cut)
      # As in a walk, no fed-back arch is a reference twice or both a reference and a
      # query (uniform references may meet a tail query by chance, rarely).
      kmax = mask.shape[1]
      for e in range(len(k) if fed else 0):
        refs = {tuple(g) for g in genes[e, :k[e]]}
        assert len(refs) == k[e]
        assert not refs & {tuple(g) for g in genes[e, kmax:]}
    share[fed] = float(np.mean(np.concatenate(top)))
  assert share[1.0] == 1.0 and share[0.0] < 0.3
  with pytest.raises(PnagError, match=r"fed_back_refs must be a share in \[0, 1\]"):
    stage.make_config("test", "nb201", 0, (), ("fed_back_refs=1.5",))


def test_fed_back_references_stay_distinct_on_a_task_with_a_small_best_end(synthetic_tasks):
  # 600 archs: a best 5% of 30, fewer than the up to 50 references to replace.
  full = trainer.task_arrays(synthetic_tasks(("acc_a",))["acc_a"])
  genes, scores = full.genes[:600], full.scores[:600]
  task = full._replace(genes=genes, scores=scores, order=np.argsort(scores, kind="stable"))
  cfg = stage.make_config("test", "nb201", 0, (), ("fed_back_refs=1", "k_min=40", "k_max=50"))
  for step in range(20):
    genes, _, mask = trainer.episode_batch(cfg, [task], [[0]], step)
    for e, k in enumerate(mask.sum(1)):
      assert len({tuple(g) for g in genes[e, :k]}) == k, (step, e)


def test_log_k_sampling_spends_most_episodes_on_few_references():
  rng = np.random.default_rng(0)
  cfg = {s: stage.make_config("test", "nb201", 0, (), (f"k_sampling={s}", "k_min=1",
                                                       "k_max=50"))
         for s in ("uniform", "log")}
  ks = {s: trainer.draw_ks(c, rng, 20_000) for s, c in cfg.items()}
  for k in ks.values():
    assert k.min() == 1 and k.max() == 50  # both reach both ends
  # P(K <= 10): 10/50 uniform; ln(11) / ln(51) = 0.61 log-uniform.
  assert abs(np.mean(ks["uniform"] <= 10) - 0.20) < 0.02
  assert abs(np.mean(ks["log"] <= 10) - 0.61) < 0.02
  with pytest.raises(PnagError, match="k_sampling must be 'uniform' or 'log'"):
    stage.make_config("test", "nb201", 0, (), ("k_sampling=geometric",))


@pytest.mark.parametrize("share", [0.02, 0.005])
def test_hard_queries_come_from_the_tails_share(synthetic_tasks, share):
  task = trainer.task_arrays(synthetic_tasks(("acc_a",))["acc_a"])
  cfg = stage.make_config("test", "nb201", 0, (), (f"tail_share={share}",))
  q = cfg.queries
  hard = np.concatenate([trainer.episode_batch(cfg, [task], [[0]], step)[1]
                         for step in range(4)])[:, -2 * (q // 4):]
  bottom, top = hard[:, :q // 4].ravel(), hard[:, q // 4:].ravel()
  lo, hi = np.quantile(task.scores, [share, 1 - share])
  # A quarter of the queries at or below the task's bottom `share`, a quarter at or
  # above its top one (ties at the cut allowed)...
  assert np.all(bottom <= lo + 1e-6) and np.all(top >= hi - 1e-6)
  # ... drawn across the whole tail, not from its extreme: about half of each lies in
  # the tail's inner half.
  lo_mid, hi_mid = np.quantile(task.scores, [share / 2, 1 - share / 2])
  assert 0.3 < np.mean(bottom > lo_mid) < 0.7 and 0.3 < np.mean(top < hi_mid) < 0.7
  with pytest.raises(PnagError, match=r"tail_share must be in \(0, 0.5\]"):
    stage.make_config("test", "nb201", 0, (), ("tail_share=0",))


@pytest.mark.parametrize("rank_target", ["rank", "score"])
def test_padded_references_and_queries_change_neither_losses_nor_gradients(rank_target):
  # Adaptation pads K, for its context and its queries, to a power of two.
  cfg = stage.make_config("test", "nb201", 0, (), (f"rank_target={rank_target}",))
  model, params = stage.init(cfg)
  loss = trainer.LossSettings.of(cfg)
  genes_all = get_space("nb201").enumerate()
  rng = np.random.default_rng(0)
  k = 3
  genes = genes_all[rng.choice(len(genes_all), (2, 2 * k), replace=False)]
  scores = rng.normal(size=(2, 2 * k)).astype(np.float32)
  mask = np.array([[True, True, False], [True, True, True]])

  @jax.jit
  def value_and_grad(params, genes, scores, mask, qmask):
    def total(params):
      listnet, reg = trainer.episode_losses(model.merge(params), model.space, genes, scores,
                                            mask, loss, qmask)
      return listnet.sum() + reg.sum(), (listnet, reg)
    return jax.value_and_grad(total, has_aux=True)(params)

  (_, want), want_grads = value_and_grad(params, genes, scores, mask, None)
  # One padded reference and one padded query per episode, with junk behind the masks.
  junk = genes_all[rng.choice(len(genes_all), (2, 1))]
  padded_genes = np.concatenate([genes[:, :k], junk, genes[:, k:], junk], 1)
  big = np.full((2, 1), 1e6, np.float32)
  padded_scores = np.concatenate([scores[:, :k], big, scores[:, k:], -big], 1)
  padded_mask = np.concatenate([mask, np.zeros((2, 1), bool)], 1)
  qmask = np.arange(k + 1)[None].repeat(2, 0) < k
  (_, got), got_grads = value_and_grad(params, padded_genes, padded_scores, padded_mask, qmask)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               got_grads, want_grads)
  assert np.isfinite(np.asarray(want[0])).all() and float(want[0].sum()) > 0


def test_each_ranking_target_reads_its_own_temperature():
  def temperature(*overrides):
    return trainer.LossSettings.of(stage.make_config("test", "nb201", 0, (), overrides))
  # Places for the rank target, stds for the score target; neither moves the other.
  assert temperature("rank_temperature=3").rank_temperature == 3.0
  assert temperature("rank_temperature=3", "rank_target=score").rank_temperature == 2.0
  assert temperature("score_temperature=0.5", "rank_target=score").rank_temperature == 0.5
  assert temperature("score_temperature=0.5").rank_temperature == 4.0
  with pytest.raises(PnagError, match="score_temperature must be > 0, got 0.0"):
    stage.make_config("test", "nb201", 0, (), ("score_temperature=0",))


def test_mix_partners_share_family_direction_and_archs(synthetic_tasks):
  made = synthetic_tasks(("acc_a", "acc_b", "lat_x"))
  tasks = [trainer.task_arrays(made[n]) for n in ("acc_a", "acc_b", "lat_x")]
  a, b = tasks[:2]
  order = np.argsort(b.scores)
  tasks += [
      # Other archs (a subset, as the zero-cost tables are), or the same archs in
      # another order: scores cannot be mixed element by element.
      a._replace(name="acc_sub", genes=a.genes[:500], scores=a.scores[:500],
                 order=np.argsort(a.scores[:500])),
      a._replace(name="acc_rev", genes=a.genes[::-1], scores=b.scores, order=order),
      # Another family over the same archs.
      a._replace(name="acc_other", family="other", scores=b.scores, order=order)]
  # Minimized latency is no partner of a maximized accuracy either.
  assert trainer.mix_partners(tasks) == [[1], [0], [], [], [], []]


@pytest.mark.parametrize("names", [("acc_a", "acc_b"), ("lat_x", "lat_y")])
def test_mixed_episodes_interpolate_two_tasks_of_a_family(synthetic_tasks, names):
  made = synthetic_tasks(names)
  tasks = [trainer.task_arrays(made[n]) for n in names]
  minimize = tasks[0].minimize
  sign = -1 if minimize else 1
  row = {tuple(g): i for i, g in enumerate(tasks[0].genes)}
  z = np.stack([(t.scores - t.scores.mean()) / t.scores.std() for t in tasks], 1)
  tables = trainer.mix_tables(tasks)
  lams, mixed_share = [], {}
  for p in (0.0, 0.5, 1.0):
    cfg = stage.make_config("test", "nb201", 0, (), (f"task_mix={p}", "fed_back_refs=1"))
    q, mixed = cfg.queries // 4, []
    for step in range(4):
      genes, scores, mask = trainer.episode_batch(cfg, tasks, [[0, 1]], step, tables)
      for g, s, k in zip(genes, scores, mask.sum(1)):
        i = np.array([row[tuple(x)] for x in g])
        if any(np.array_equal(s, t.scores[i]) for t in tasks):  # one task, as it is
          mixed.append(False)
          continue
        mixed.append(True)
        # Every mixed score is lam * z_a + (1 - lam) * z_b with one lam in [0, 1] ...
        lam = np.linalg.lstsq(z[i, :1] - z[i, 1:], s - z[i, 1], rcond=None)[0][0]
        np.testing.assert_allclose(s, lam * z[i, 0] + (1 - lam) * z[i, 1], atol=1e-4)
        lams.append(lam)
        # ... its hard queries come from the mix's own tails, and the fed-back last
        # reference from the mix's best 5%, at the end the task's direction makes best.
        mix = sign * (lam * z[:, 0] + (1 - lam) * z[:, 1])
        lo, hi, best = np.quantile(mix, [cfg.tail_share, 1 - cfg.tail_share,
                                         1 - trainer.FED_BACK_TOP])
        hard = sign * s[-2 * q:]
        worst_end, best_end = (hard[q:], hard[:q]) if minimize else (hard[:q], hard[q:])
        assert np.all(worst_end <= lo + 1e-4) and np.all(best_end >= hi - 1e-4)
        assert sign * s[k - 1] >= best - 1e-4
    mixed_share[p] = np.mean(mixed)
  assert mixed_share[0.0] == 0.0 and mixed_share[1.0] == 1.0
  assert 0.25 < mixed_share[0.5] < 0.75
  assert 0.0 <= min(lams) < 0.3 and 0.7 < max(lams) <= 1.0
  cfg = stage.make_config("test", "nb201", 0, (), ("task_mix=1",))
  with pytest.raises(ValueError, match="needs mixing=mix_tables"):
    trainer.episode_batch(cfg, tasks, [[0, 1]], 0)
  with pytest.raises(PnagError, match=r"task_mix must be a share in \[0, 1\]"):
    stage.make_config("test", "nb201", 0, (), ("task_mix=1.5",))
  with pytest.raises(PnagError, match="task_mix and task_spread cannot be combined"):
    stage.make_config("test", "nb201", 0, (), ("task_mix=0.5", "task_spread=true"))


def test_the_episode_stream_is_the_one_the_reports_were_trained_on(synthetic_tasks):
  # Options added later (`task_mix`) must not draw from the generator when off: every
  # committed surrogate report was trained on this stream. The digest is of f833f42's
  # episodes (archs and masks: scores are a function of the archs).
  made = synthetic_tasks(("acc_a", "lat_x"))
  tasks = [trainer.task_arrays(made[n]) for n in ("acc_a", "lat_x")]
  digest = hashlib.sha256()
  for overrides in ((), ("fed_back_refs=0.5",), ("k_sampling=log",), ("task_sampling=task",)):
    cfg = stage.make_config("test", "nb201", 0, (), overrides)
    for step in range(3):
      genes, _, mask = trainer.episode_batch(cfg, tasks, [[0, 1]], step)
      digest.update(genes.tobytes())
      digest.update(mask.tobytes())
  assert digest.hexdigest()[:16] == "be0d339f50953abb"


@pytest.mark.parametrize("setting,match", [
    ("checkpoint_every=0", "checkpoint_every must be >= 1"),
    ("log_every=0", "log_every must be >= 1"),
    ("eval_repeats=0", "eval_repeats must be >= 1"),
    ("learning_rate=nan", "learning_rate must be finite and > 0"),
    ("learning_rate=-1", "learning_rate must be finite and > 0"),
    ("reg_weight=nan", "reg_weight must be finite and >= 0"),
    ("rank_temperature=inf", "rank_temperature must be finite, got inf"),
    ("ema_decay=1", r"ema_decay must be in \[0, 1\)"),
    ("warmup_steps=-1", "warmup_steps must be >= 0"),
])
def test_settings_that_cannot_train_are_refused_before_training(setting, match):
  # Each used to fail mid-run (a division by zero, a failed final evaluation) or to
  # train and report a NaN model.
  with pytest.raises(PnagError, match=match):
    stage.make_config("test", "nb201", 0, (), (setting,))


def test_resuming_takes_the_same_exclusions_in_any_order(tmp_path, synthetic_tasks):
  cfg = stage.make_config("test", "nb201", 0, ("lat_z", "acc_c"), _TINY)
  trainer.train_and_evaluate(cfg, tmp_path, tasks=synthetic_tasks(SYNTHETIC), progress=False,
                             stop_after=3)
  again = trainer.config_for(tmp_path, preset=None, space=None, seed=None,
                             exclude=("acc_c", "lat_z"))
  assert again.exclude == ("lat_z", "acc_c")  # the checkpoint's, so its frozen settings hold
  with pytest.raises(PnagError, match="exclude"):
    trainer.config_for(tmp_path, preset=None, space=None, seed=None, exclude=("acc_c",))
