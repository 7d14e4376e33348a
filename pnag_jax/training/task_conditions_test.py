"""Stage 2's task condition: quantiles, orientation, exclusions, lineage, sampling."""

import shutil

import jax
import numpy as np
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.generation import Sampler, SamplerConfig
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2
from pnag_jax.training import task_conditions

# With the other stage-2 tests: one worker, one encoding of stage 1's token maps.
pytestmark = pytest.mark.xdist_group("nb201_stage2")


def test_oriented_quantiles_rank_the_valid_archs_with_mid_ranks():
  scores = np.array([3.0, 1.0, 2.0, 2.0, 9.0, 5.0])
  valid = np.array([True, True, True, True, False, True])
  q = task_conditions.oriented_quantiles(scores, valid)
  # Valid scores sorted: 1, 2, 2, 3, 5 -> ranks 0, 1.5, 1.5, 3, 4 of 4.
  np.testing.assert_allclose(q, [0.75, 0.0, 0.375, 0.375, 1.0, 1.0])


def test_a_minimized_tasks_lowest_score_is_its_best_quantile(nb201_stage2, stage2_recipe):
  run2 = stage2.load(nb201_stage2[0])
  space = run2.stage1.space
  genes, valid = space.enumerate(), task_conditions.valid_rows(space)
  tasks = stage2_recipe.tasks(raising=stage2_recipe.EXCLUDE)
  # Per task, the valid cells of its lowest and its highest raw score.
  extremes = {}
  for name in ("acc_a", "lat_x"):
    raw = np.where(valid, tasks[name].by_row(), np.nan)
    extremes[name] = [int(np.nanargmin(raw)), int(np.nanargmax(raw))]
  rows = np.array(extremes["acc_a"] + extremes["lat_x"])
  built = task_conditions.build(stage2_recipe.stage2_config(), run2.stage1, run2.surrogate,
                                genes[rows], genes[rows[:1]], tasks=tasks)
  q = dict(zip(built.names, built.train_quantile.tolist()))
  assert tasks["lat_x"].minimize and not tasks["acc_a"].minimize
  # q = 1 is the best: the highest accuracy, but the lowest latency.
  np.testing.assert_allclose(q["acc_a"][:2], [0, 1])  # its lowest, its highest
  np.testing.assert_allclose(q["lat_x"][2:], [1, 0])


def test_stage2_inherits_the_surrogates_exclusions_and_lineage(nb201_stage2):
  # `nb201_stage2`'s training would have failed had it read the excluded `lat_z`.
  workdir, report = nb201_stage2
  assert report["excluded_tasks"] == ["lat_z"] and report["exclude"] == ["lat_z"]
  assert report["condition_tasks"] == ["acc_a", "acc_b", "lat_x"]
  assert np.isfinite(report["heldout_nll_per_token_conditional"])
  run2 = stage2.load(workdir)
  assert run2.surrogate is not None and run2.model.cond_dim == 8 + 1
  assert {p["stage"] for p in run2.meta["parents"]} == {"stage1", "surrogate"}
  assert tuple(run2.meta["frozen"]["excluded_tasks"]) == ("lat_z",)


def test_a_retrained_surrogate_makes_stage2_stale(nb201_stage2, stage2_recipe, tmp_path):
  workdir = shutil.copytree(nb201_stage2[0], tmp_path / "w")
  shutil.rmtree(workdir / "surrogate")
  stage2_recipe.train_surrogate(workdir, seed=1)
  with pytest.raises(ckpt_lib.CheckpointError, match="another surrogate"):
    stage2_recipe.train_stage2(workdir)
  with pytest.raises(ckpt_lib.CheckpointError, match="surrogate step"):
    stage2.load(workdir)


def test_conditional_sampling_is_deterministic_and_checks_the_vector(nb201_stage2):
  workdir, _ = nb201_stage2
  run2 = stage2.load(workdir)
  genes = get_space("nb201").enumerate()[:5]
  cond = stage2.task_condition(run2.surrogate, genes, np.arange(5.0), minimize=False,
                               target=0.99)
  sampler = Sampler.from_run(run2.stage1, SamplerConfig(prior="ar", chunk_size=8,
                                                        cfg_scale=2.0))
  a = sampler.generate(jax.random.key(0), 8, cond).genes
  np.testing.assert_array_equal(a, sampler.with_chunk_size(3).generate(
      jax.random.key(0), 8, cond).genes)
  with pytest.raises(AssertionError):
    sampler.generate(jax.random.key(0), 8, cond[:-1])


def test_bad_reference_counts_and_an_unconditioned_cfg_are_refused_in_one_line(
    nb201_stage2, tmp_path, pnag_main):
  workdir, _ = nb201_stage2
  cfg = stage2.make_config("test", overrides=["condition=task", "k_max=100000"])
  with pytest.raises(stage2.PnagError, match=r"k_max \(100000\) exceeds the [\d,]+ strictly"):
    task_conditions.check_space(cfg, get_space("nb201"))
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", "conditional", "--workdir", workdir, "--out", out,
                           "--k", "100000")
  assert code == 2 and "--k must be in [1, " in err and len(err.strip().splitlines()) == 1
  assert not out.exists()
  for seed in ("-1", str(2**32 + 5)):
    code, _, err = pnag_main("eval", "conditional", "--workdir", workdir, "--out", out,
                             "--seed", seed)
    assert code == 2 and "--seed must be in [0, 2**32 - 1]" in err, err
    assert not out.exists()
  # No condition: both halves of the guided batch would be the null one.
  code, _, err = pnag_main("generate", "--workdir", workdir, "--num", "4", "--prior", "ar",
                           "--cfg-scale", "2", "--out", tmp_path / "a.csv")
  assert code == 2 and "--cfg-scale guides the ar prior toward a condition" in err
  assert not list(tmp_path.iterdir())


def test_the_task_condition_needs_the_tables(nb201_stage2, monkeypatch):
  # Without them it was conditioned on params and flops alone, with exit 0 (or told
  # of an --exclude that "matches no task", which stage 2 does not take).
  from pnag_jax.stages import stage1, surrogate  # pylint: disable=g-import-not-at-top
  workdir, _ = nb201_stage2
  monkeypatch.delenv("PNAG_DATA_DIR", raising=False)
  run1, srun = stage1.load(workdir), surrogate.load(workdir)
  cfg = stage2.make_config("test", overrides=["condition=task"])
  genes = run1.space.enumerate()[:8]
  with pytest.raises(stage2.PnagError, match="the task condition needs the NB201 tables"):
    task_conditions.build(cfg, run1, srun, genes, genes)
