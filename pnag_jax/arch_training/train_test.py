import dataclasses
import itertools
import json
import types

import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax.arch_training import train as train_lib
from pnag_jax.arch_training.train import ArchTrainConfig, train_arch
from pnag_jax.data import NB201Data
from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space

# A narrow, one-cell-per-stage NB201 net: the cell still decides what is computed.
SMALL = (("channels", 8), ("cells_per_stage", 1))
NONE_CELL = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
_BEST_KNOWN = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
               "nor_conv_3x3~1|nor_conv_1x1~2|")


def _best_cell(data_dir) -> str:
  data = NB201Data.from_dir(data_dir)
  code, acc = data.best("cifar10_test_acc")
  assert acc == pytest.approx(94.37, abs=0.01)
  space = get_space("nb201")
  return space.to_string(space.enumerate()[code])


@pytest.fixture(scope="module")
def best_run(tmp_path_factory, data_dir):
  """(config, report, workdir, compiles) of the best cell trained straight for 2 epochs.

  Both tests below need this run (one for its accuracy, one as the reference of a
  resumed run), so it is trained once. `compiles`: the cache sizes of its (train, eval)
  steps after the run.
  """
  steps, original = [], train_lib.make_steps

  def recording_make_steps(*args):
    steps.append(original(*args))
    return steps[-1]

  cfg = ArchTrainConfig(space="nb201", arch=_best_cell(data_dir), epochs=2, network=SMALL)
  with pytest.MonkeyPatch.context() as m:
    m.setattr(train_lib, "make_steps", recording_make_steps)
    workdir = tmp_path_factory.mktemp("train_arch") / "best"
    report = train_arch(cfg, workdir, progress=False)
  compiles = [f._cache_size() for f in steps[0]]  # pylint: disable=protected-access
  return cfg, report, workdir, compiles


def test_best_cell_learns_digits_and_the_none_cell_does_not(best_run, tmp_path):
  cfg, r, workdir, _ = best_run
  assert r["test_accuracy"] >= 0.85, r["history"]
  assert r["params"] > 0 and r["flops_per_example"] > 0
  saved = json.loads((workdir / "report.json").read_text())
  assert saved["test_accuracy"] == r["test_accuracy"]
  # One epoch is enough to show it: a cell of `none` edges has nothing to learn with.
  none = train_arch(ArchTrainConfig(space="nb201", arch=NONE_CELL, epochs=1, network=SMALL),
                    tmp_path / "none", progress=False)
  assert none["test_accuracy"] <= 0.2  # 10 classes: chance


def _clock():
  """A `time` module whose clock reads 1,000 s more at each call, from 0."""
  return types.SimpleNamespace(perf_counter=itertools.count(0, 1000).__next__)


def test_killed_run_resumes_to_the_same_result(best_run, tmp_path, monkeypatch):
  cfg, straight, _, compiles = best_run
  # Fixed batch shapes (the ragged tail dropped, eval batches padded): one compile each.
  assert compiles == [1, 1]
  monkeypatch.setattr(train_lib, "time", _clock())
  assert train_arch(cfg, tmp_path / "b", progress=False, stop_after_epochs=1)["stopped_early"]
  monkeypatch.setattr(train_lib, "time", _clock())
  assert (tmp_path / "b" / "config.json").read_text() == cfg.to_json()
  # As a kill between the first save and the config: the resumed run writes it.
  (tmp_path / "b" / "config.json").unlink()
  resumed = train_arch(cfg, tmp_path / "b", progress=False)
  assert (tmp_path / "b" / "config.json").read_text() == cfg.to_json()
  assert resumed["resumed_from_epoch"] == 1
  assert resumed["test_accuracy"] == straight["test_accuracy"]
  # Every epoch's row, the killed invocation's too, and the time of both invocations up
  # to their last saves: each saved its epoch 1,000 s after it started.
  assert resumed["history"] == straight["history"]
  assert resumed["train_seconds"] == 2000
  # A rerun of the finished run trains nothing, and returns its report as it is.
  assert train_arch(cfg, tmp_path / "b", progress=False) == resumed
  # Killed between its last checkpoint and its report, by a version that logged no
  # metrics: the rerun evaluates the last checkpoint, with no history to report.
  for name in ("report.json", "metrics.jsonl"):
    (tmp_path / "b" / name).unlink()
  again = train_arch(cfg, tmp_path / "b", progress=False)
  assert again["test_accuracy"] == straight["test_accuracy"] and again["history"] == []
  other = ArchTrainConfig(space="nb201", arch=NONE_CELL, epochs=2, network=SMALL)
  with pytest.raises(PnagError, match="workdir .* was trained with arch="):
    train_arch(other, tmp_path / "b", progress=False)
  # A changed setting is named, in one line (not two whole configs).
  with pytest.raises(PnagError) as e:
    train_arch(dataclasses.replace(cfg, epochs=3, batch_size=32), tmp_path / "b",
               progress=False)
  assert str(e.value).endswith(" was trained with epochs=2, not 3; batch_size=64, not 32; "
                               "resume with the same settings or use a new --workdir")
  assert "\n" not in str(e.value) and "learning_rate" not in str(e.value)


def test_a_checkpoint_from_before_the_rng_counts_resumes(best_run, tmp_path, monkeypatch):
  cfg, straight, _, _ = best_run
  save = ckpt_lib.StageCheckpointer.save

  def save_as_before(self, step, params, *args, **kw):
    params = {k: v for k, v in params.items() if k != "rng_counts"}
    return save(self, step, params, *args, **kw)

  with monkeypatch.context() as m:
    m.setattr(ckpt_lib.StageCheckpointer, "save", save_as_before)
    assert train_arch(cfg, tmp_path / "b", progress=False, stop_after_epochs=1)["stopped_early"]
  resumed = train_arch(cfg, tmp_path / "b", progress=False)
  # NB201 cells have no dropout: the restarted streams change nothing.
  assert resumed["resumed_from_epoch"] == 1
  assert resumed["test_accuracy"] == straight["test_accuracy"]


def test_bad_input(tmp_path):
  with pytest.raises(PnagError, match="NB201 arch string"):
    train_arch(ArchTrainConfig(space="nb201", arch="|conv~0|"), tmp_path, progress=False)
  with pytest.raises(PnagError, match="unknown dataset"):
    train_arch(ArchTrainConfig(space="nb201", arch=NONE_CELL, dataset="mnist"), tmp_path,
               progress=False)
  with pytest.raises(PnagError, match="epochs"):
    train_arch(ArchTrainConfig(space="nb201", arch=NONE_CELL, epochs=0), tmp_path,
               progress=False)
  # Checked before anything is written: a NaN rate only failed as "diverged" after it.
  for kw, match in (({"learning_rate": float("nan")}, "--lr must be finite and > 0"),
                    ({"seed": -1}, r"--seed must be in \[0, 2\*\*32 - 1\]"),
                    ({"seed": 2**64}, r"--seed must be in \[0, 2\*\*32 - 1\]")):
    with pytest.raises(PnagError, match=match):
      train_arch(ArchTrainConfig(space="nb201", arch=NONE_CELL, **kw), tmp_path / "w",
                 progress=False)
  assert not (tmp_path / "w").exists()


def _tiny_dataset():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pnag_jax.arch_training.datasets import Dataset  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).normal(size=(64, 16, 16, 3)).astype(np.float32)
  y = (np.arange(64) % 10).astype(np.int32)
  return Dataset("tiny", x, y, x[:4], y[:4], 10)


def test_a_fresh_run_that_diverges_leaves_nothing_it_created(tmp_path):
  cfg = ArchTrainConfig(space="nb201", arch=_BEST_KNOWN, epochs=1, batch_size=8,
                        learning_rate=1e30, network=SMALL)
  with pytest.raises(PnagError, match="training diverged at epoch 1"):
    train_arch(cfg, tmp_path / "new", progress=False, dataset=_tiny_dataset())
  assert not (tmp_path / "new").exists()
  # A workdir that was there keeps what it held, and gets nothing added.
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "notes.txt").write_text("mine")
  with pytest.raises(PnagError, match="training diverged at epoch 1"):
    train_arch(cfg, tmp_path / "old", progress=False, dataset=_tiny_dataset())
  assert [p.name for p in (tmp_path / "old").iterdir()] == ["notes.txt"]
