"""Stage 2's task condition: quantiles, orientation, exclusions, lineage, sampling."""

import shutil

import jax
import numpy as np
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.errors import PnagError
from pnag_jax.generation import Sampler, SamplerConfig
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2
from pnag_jax.stages import surrogate as surrogate_stage
from pnag_jax.training import stage2 as training
from pnag_jax.training import surrogate as surrogate_training
from pnag_jax.training import task_conditions

SURROGATE = ["steps=4", "checkpoint_every=4", "episodes=2", "queries=8", "k_max=4",
             "num_val_tasks=1", "eval_ks=2", "eval_archs=16", "eval_repeats=1", "dim=8",
             "emb_dim=8", "hidden=8", "task_dim=8", "layers=1"]
# With the other stage-2 tests: one worker, one encoding of stage 1's token maps.
pytestmark = pytest.mark.xdist_group("nb201_stage2")

STAGE2 = ["condition=task", "task_bank=2", "k_max=6", "max_steps=4", "checkpoint_every=2",
          "log_every=2"]


TASKS = ("acc_a", "acc_b", "lat_x", "lat_z")


def test_oriented_quantiles_rank_the_valid_archs_with_mid_ranks():
  scores = np.array([3.0, 1.0, 2.0, 2.0, 9.0, 5.0])
  valid = np.array([True, True, True, True, False, True])
  q = task_conditions.oriented_quantiles(scores, valid)
  # Valid scores sorted: 1, 2, 2, 3, 5 -> ranks 0, 1.5, 1.5, 3, 4 of 4.
  np.testing.assert_allclose(q, [0.75, 0.0, 0.375, 0.375, 1.0, 1.0])


@pytest.fixture(scope="module")
def task_workdir(nb201_workdir, tmp_path_factory, synthetic_tasks):
  """Stage 1 (untrained), a tiny surrogate on synthetic tasks without `lat_z`, and a
  task-conditioned stage 2 on top, whose training would fail if it read `lat_z`."""
  workdir = shutil.copytree(nb201_workdir, tmp_path_factory.mktemp("task") / "w")
  cfg = surrogate_stage.make_config("test", "nb201", 0, ("lat_z",), SURROGATE)
  surrogate_training.train_and_evaluate(cfg, workdir, tasks=synthetic_tasks(TASKS),
                                        progress=False)
  report = training.train_and_evaluate(stage2.make_config("test", overrides=STAGE2), workdir,
                                       tasks=synthetic_tasks(TASKS, raising=("lat_z",)),
                                       progress=False)
  return workdir, report


def test_stage2_inherits_the_surrogates_exclusions_and_lineage(task_workdir):
  workdir, report = task_workdir
  assert report["excluded_tasks"] == ["lat_z"] and report["exclude"] == ["lat_z"]
  assert report["condition_tasks"] == ["acc_a", "acc_b", "lat_x"]
  assert np.isfinite(report["heldout_nll_per_token_conditional"])
  run2 = stage2.load(workdir)
  assert run2.surrogate is not None and run2.model.cond_dim == 8 + 1
  assert {p["stage"] for p in run2.meta["parents"]} == {"stage1", "surrogate"}
  assert tuple(run2.meta["frozen"]["excluded_tasks"]) == ("lat_z",)


def test_a_retrained_surrogate_makes_stage2_stale(task_workdir, tmp_path, synthetic_tasks):
  workdir = shutil.copytree(task_workdir[0], tmp_path / "w")
  shutil.rmtree(workdir / "surrogate")
  cfg = surrogate_stage.make_config("test", "nb201", 1, ("lat_z",), SURROGATE)
  surrogate_training.train_and_evaluate(cfg, workdir, tasks=synthetic_tasks(TASKS),
                                        progress=False)
  with pytest.raises(ckpt_lib.CheckpointError, match="another surrogate"):
    training.train_and_evaluate(stage2.make_config("test", overrides=STAGE2), workdir,
                                tasks=synthetic_tasks(TASKS), progress=False)
  with pytest.raises(ckpt_lib.CheckpointError, match="surrogate step"):
    stage2.load(workdir)


def test_conditional_sampling_is_deterministic_and_checks_the_vector(task_workdir):
  workdir, _ = task_workdir
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
