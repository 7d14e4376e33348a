"""Lineage: a child stage refuses a parent that changed, a resume refuses new settings."""

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.stages import lineage, stage1


def test_params_sha256_is_a_content_hash():
  a = {"w": jnp.arange(6.0).reshape(2, 3), "b": {"c": jnp.zeros(2, jnp.int32)}}
  same = jax.tree.map(lambda x: x.copy(), a)
  assert lineage.params_sha256(a) == lineage.params_sha256(same)
  changed = {**a, "w": a["w"].at[1, 2].add(1e-6)}
  reshaped = {**a, "w": a["w"].reshape(3, 2)}
  renamed = {"v": a["w"], "b": a["b"]}
  cast = {**a, "b": {"c": jnp.zeros(2, jnp.float32)}}
  hashes = {lineage.params_sha256(t) for t in (a, changed, reshaped, renamed, cast)}
  assert len(hashes) == 5


def test_check_frozen_names_the_setting():
  meta = {"frozen": {"space": "nb201", "dim": 32, "excluded": ["cifar10"]}}
  lineage.check_frozen(meta, {"space": "nb201", "dim": 32, "excluded": ("cifar10",)},
                       stage1.Stage1Config, where="workdir W")
  with pytest.raises(ckpt_lib.CheckpointError,
                     match="workdir W was trained with dim=32, not 16; resume with the same"):
    lineage.check_frozen(meta, {"dim": 16}, stage1.Stage1Config, where="workdir W")
  with pytest.raises(ckpt_lib.CheckpointError, match=r"excluded=\('cifar10',\), not \(\)"):
    lineage.check_frozen(meta, {"excluded": ()}, stage1.Stage1Config, where="workdir W")
  # Every setting that differs, in one line.
  with pytest.raises(ckpt_lib.CheckpointError,
                     match="^workdir W was trained with dim=32, not 16; space='nb201', not "
                           "'mbv3'; resume with the same settings or use a new --workdir$"):
    lineage.check_frozen(meta, {"dim": 16, "space": "mbv3", "excluded": ("cifar10",)},
                         stage1.Stage1Config, where="workdir W")
  # JSON gives back a tuple of pairs as lists of lists: the same setting.
  lineage.check_frozen({"config": {"network": [["channels", 8]]}},
                       {"network": (("channels", 8),)}, stage1.Stage1Config, where="W")
  # Checkpoints from before lineage: the config holds the same keys.
  lineage.check_frozen({"config": {"dim": 32}}, {"dim": 32}, stage1.Stage1Config, where="W")


def _load_parent(name, workdir, step):
  assert name == "stage1"
  return stage1.load(workdir, step)


def test_a_finished_run_may_change_only_what_trains_nothing():
  cfg = stage1.make_config("quick", overrides=["max_steps=12"])
  meta = {"config": dataclasses.asdict(cfg)}

  def check(new, step=12, total=12):
    lineage.check_finished(meta, new, step, total, where="stage 1 in w",
                           steps_of=lambda c: min(c.max_steps, c.epochs))

  check(cfg.replace(eval_size=64, log_every=3))  # measured anew
  check(cfg.replace(epochs=20_000))  # spelt otherwise, as many steps
  check(cfg.replace(learning_rate=1.0), step=8)  # not finished: trains on under it
  with pytest.raises(ckpt_lib.CheckpointError, match="learning_rate=0.003, not 1.0"):
    check(cfg.replace(learning_rate=1.0))
  # Killed at step 8 of 12 and cut to 8: its schedule was 12 steps long.
  with pytest.raises(ckpt_lib.CheckpointError, match="max_steps=12, not 8"):
    check(cfg.replace(max_steps=8), step=8, total=8)


def test_a_child_refuses_a_parent_that_changed_underneath(untrained_run, stage1_saver,
                                                          tmp_path):
  parent = untrained_run("nb201", dim=8, decoder_hidden=32)
  stage1_saver(parent, tmp_path, step=5)
  child_meta = lineage.stage_meta(
      stage="stage2", space="nb201", config={}, params={"x": jnp.ones(2)},
      frozen={}, parents=(lineage.parent_entry("stage1", 5, parent.params),))
  runs = lineage.check_parents(child_meta, tmp_path, where="stage2", load_parent=_load_parent)
  assert runs["stage1"].step == 5

  # Stage 1 retrained from another seed into the same workdir, same step number.
  shutil.rmtree(tmp_path / "stage1")
  stage1_saver(untrained_run("nb201", dim=8, decoder_hidden=32, seed=1), tmp_path, step=5)
  with pytest.raises(ckpt_lib.CheckpointError,
                     match="stage2 was built on stage1 step 5 with params sha256 .*parent "
                           "changed underneath it; retrain it after removing .*stage2, or in "
                           "a new --workdir holding its parents"):
    lineage.check_parents(child_meta, tmp_path, where="stage2", load_parent=_load_parent)

  # Stage 1 resumed past the recorded step, which retention then deleted.
  shutil.rmtree(tmp_path / "stage1")
  stage1_saver(parent, tmp_path, step=9)
  with pytest.raises(ckpt_lib.CheckpointError, match="stage2 was built on stage1 step 5, "
                                                     "which cannot be loaded any more") as e:
    lineage.check_parents(child_meta, tmp_path, where="stage2", load_parent=_load_parent)
  assert "\n" not in str(e.value)


def test_a_key_added_later_reads_as_it_was_then():
  # Surrogates saved before `ridge` existed were attention-only: they resume and load
  # as ridge=False (`SurrogateConfig.ADDED_KEYS`), not as today's default, True.
  from pnag_jax.stages import surrogate  # pylint: disable=g-import-not-at-top
  cls = surrogate.SurrogateConfig
  config = {k: v for k, v in dataclasses.asdict(cls()).items() if k != "ridge"}
  meta = {"stage": "surrogate", "config": config, "frozen": {"dim": config["dim"]}}
  assert cls().ridge and not lineage.config_of(meta, cls, stage="surrogate", workdir="W").ridge
  lineage.check_frozen(meta, {"ridge": False}, cls, where="W")
  with pytest.raises(ckpt_lib.CheckpointError, match="trained with ridge=False, not True"):
    lineage.check_frozen(meta, {"ridge": True}, cls, where="W")


@pytest.mark.parametrize("then, want", [
    # The first surrogates' config (64544b1): score targets at 0.25 stds, tasks drawn
    # uniformly, no weight average; none of those keys was saved.
    ({"rank_temperature": 0.25},
     {"rank_target": "score", "score_temperature": 0.25, "task_sampling": "task",
      "ema_decay": 0.0}),
    # Score mode set by hand while one field held both units: its stds move over.
    ({"rank_target": "score", "rank_temperature": 3.0, "task_sampling": "family",
      "ema_decay": 0.99},
     {"rank_target": "score", "score_temperature": 3.0, "rank_temperature": 3.0}),
    # Rank mode (the default since d655a89) keeps its places; score mode's default.
    ({"rank_target": "rank", "rank_temperature": 4.0, "task_sampling": "family",
      "ema_decay": 0.99},
     {"rank_target": "rank", "rank_temperature": 4.0, "score_temperature": 2.0}),
])
def test_surrogate_configs_saved_before_a_key_existed_read_as_trained(then, want):
  from pnag_jax.stages import surrogate  # pylint: disable=g-import-not-at-top
  from pnag_jax.training import surrogate as trainer  # pylint: disable=g-import-not-at-top
  cls = surrogate.SurrogateConfig
  added = set(cls.ADDED_KEYS)
  config = {k: v for k, v in dataclasses.asdict(cls()).items() if k not in added}
  config.update(then)
  meta = {"stage": "surrogate", "config": config}
  cfg = lineage.config_of(meta, cls, stage="surrogate", workdir="W")
  assert {k: getattr(cfg, k) for k in want} == want
  # The loss reads the temperature in the unit of the run's target.
  assert trainer.LossSettings.of(cfg).rank_temperature == (
      cfg.score_temperature if cfg.rank_target == "score" else cfg.rank_temperature)


def test_a_frozen_block_saved_before_a_key_existed_still_resumes():
  # d655a89's surrogates froze no `encoder_init` (then always ""); resuming one must
  # compare against what `config_of` reads, not against a missing value.
  from pnag_jax.stages import surrogate  # pylint: disable=g-import-not-at-top
  cls = surrogate.SurrogateConfig
  cfg = cls()
  frozen = {k: v for k, v in cfg.frozen().items() if k not in ("encoder_init", "ridge")}
  config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("encoder_init",
                                                                          "ridge")}
  for meta in ({"config": config, "frozen": frozen}, {"config": None, "frozen": frozen}):
    lineage.check_frozen(meta, {**cfg.frozen(), "ridge": False}, cls, where="W")
    with pytest.raises(ckpt_lib.CheckpointError, match="trained with encoder_init='', not 'x'"):
      lineage.check_frozen(meta, {**cfg.frozen(), "ridge": False, "encoder_init": "x"}, cls,
                           where="W")
