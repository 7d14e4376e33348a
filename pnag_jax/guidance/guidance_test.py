"""`pnag predict` and guided `pnag generate` on a meta-trained NB201 surrogate."""

import csv
import shutil

import jax
import numpy as np
import pytest

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.data import NB201Data
from pnag_jax.spaces import get_space
from pnag_jax.stages import lineage
from pnag_jax.stages import surrogate as stage

SPACE = get_space("nb201")


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def refs_csv(tmp_path_factory, data_dir):
  """Five uniformly drawn cells with their CIFAR-10 accuracy (a task never trained on)."""
  data = NB201Data.from_dir(data_dir)
  genes = SPACE.enumerate()[np.random.default_rng(3).choice(SPACE.size(), 5, replace=False)]
  path = tmp_path_factory.mktemp("refs") / "refs.csv"
  with path.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["arch", "score"])
    w.writerows(zip(SPACE.to_strings(genes), np.asarray(data.lookup("cifar10_test_acc", genes))))
  return path


def test_predict_writes_one_row_per_arch_in_input_order(nb201_surrogate, refs_csv, tmp_path,
                                                       pnag_main, data_dir):
  workdir, _ = nb201_surrogate
  genes = SPACE.enumerate()[np.random.default_rng(0).choice(SPACE.size(), 300, replace=False)]
  archs = tmp_path / "archs.csv"
  archs.write_text("arch,extra\n" + "".join(f'"{s}",x\n' for s in SPACE.to_strings(genes)))
  code, out, err = pnag_main("predict", "--workdir", workdir, "--refs", refs_csv, "--archs",
                             archs, "--out", tmp_path / "preds.csv")
  assert code == 0, err
  rows = _rows(tmp_path / "preds.csv")
  assert [r["arch"] for r in rows] == SPACE.to_strings(genes)
  pred = np.array([float(r["predicted_score"]) for r in rows])
  assert sorted(int(r["rank"]) for r in rows) == list(range(1, 301))
  assert int(rows[int(np.argmax(pred))]["rank"]) == 1
  truth = np.asarray(NB201Data.from_dir(data_dir).lookup("cifar10_test_acc", genes))
  # In the task's units: un-standardised with the references' mean and std.
  assert 40 < np.median(pred) < 100
  import scipy.stats  # pylint: disable=g-import-not-at-top
  assert scipy.stats.spearmanr(pred, truth).statistic > 0.5
  assert "predicted 300 archs" in out
  # --minimize changes only the rank column: rank 1 is now the lowest prediction.
  code, _, err = pnag_main("predict", "--workdir", workdir, "--refs", refs_csv, "--archs",
                           archs, "--out", tmp_path / "lowest.csv", "--minimize")
  assert code == 0, err
  rows = _rows(tmp_path / "lowest.csv")
  assert [r["arch"] for r in rows] == SPACE.to_strings(genes)
  np.testing.assert_array_equal([float(r["predicted_score"]) for r in rows], pred)
  ranks = np.array([int(r["rank"]) for r in rows])
  assert sorted(ranks) == list(range(1, 301))
  by_rank = pred[np.argsort(ranks)]
  assert np.all(np.diff(by_rank) >= 0) and by_rank[0] < by_rank[-1]
  # The run's linear prior instead of the network: same rows, its own ranking.
  code, _, err = pnag_main("predict", "--workdir", workdir, "--refs", refs_csv, "--archs",
                           archs, "--out", tmp_path / "linear.csv", "--predictor", "linear")
  assert code == 0, err
  rows = _rows(tmp_path / "linear.csv")
  assert [r["arch"] for r in rows] == SPACE.to_strings(genes)
  linear = np.array([float(r["predicted_score"]) for r in rows])
  assert scipy.stats.spearmanr(linear, truth).statistic > 0.4
  assert not np.allclose(linear, pred)


def test_a_count_that_builds_a_network_per_arch_is_refused_before_the_pool(
    nb201_surrogate, refs_csv, tmp_path, pnag_main, data_dir, monkeypatch):
  # As DARTS's params are (seconds per arch): checked on every candidate, they would stall.
  from pnag_jax.guidance import constraints  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(constraints.costs, "counted_quickly", lambda space, count: False)
  out = tmp_path / "top.csv"
  code, _, err = pnag_main(
      "generate", "--workdir", nb201_surrogate[0], "--refs", refs_csv, "--pool", "all",
      "--num", "10", "--constraint", "params<=1e6", "--out", out, "--data-dir", data_dir)
  assert code == 2 and "nb201's params takes a network build per arch" in err, err
  assert len(err.splitlines()) == 1 and not out.exists()


def test_guided_pool_all_meets_constraints_and_beats_random(nb201_surrogate, refs_csv,
                                                            tmp_path, pnag_main, data_dir):
  workdir, _ = nb201_surrogate
  out = tmp_path / "top.csv"
  code, stdout, err = pnag_main(
      "generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "all", "--num", "10",
      "--constraint", "lat_pixel3<=6", "--constraint", "params<=1e6", "--out", out,
      "--data-dir", data_dir)
  assert code == 0, err
  rows = _rows(out)
  assert len(rows) == 10
  assert list(rows[0])[:3] == ["arch", "predicted_score", "nb201_index"]
  scores = [float(r["predicted_score"]) for r in rows]
  assert scores == sorted(scores, reverse=True)
  genes = SPACE.from_strings([r["arch"] for r in rows])
  data = NB201Data.from_dir(data_dir)
  assert np.all(np.asarray(data.lookup("lat_pixel3", genes)) <= 6)
  from pnag_jax.tasks import params_of  # pylint: disable=g-import-not-at-top
  assert np.all(params_of("nb201", genes) <= 1e6)
  keys = np.asarray(SPACE.iso_key(genes))
  assert len(np.unique(keys, axis=0)) == 10  # one per isomorphism class
  refs = SPACE.from_strings([r["arch"] for r in _rows(refs_csv)])
  assert not set(map(tuple, keys.tolist())) & set(map(tuple, np.asarray(
      SPACE.iso_key(refs)).tolist()))
  assert "15,625 draws" in stdout and "unique" in stdout
  # The picks sit in the top third of the cells that meet the constraints (3,787 of
  # them, mean 78.6%): random picks would average the mean.
  acc = np.array([float(r["cifar10_test_acc"]) for r in rows])
  every = SPACE.enumerate()
  ok = (np.asarray(data.lookup("lat_pixel3", every)) <= 6) & (params_of("nb201", every) <= 1e6)
  allowed = np.asarray(data.lookup("cifar10_test_acc", every))[ok]
  assert acc.mean() > np.percentile(allowed, 67), (acc, np.percentile(allowed, 67))


def test_guided_pool_from_the_stage1_prior(nb201_surrogate, nb201_workdir, refs_csv, tmp_path,
                                           pnag_main):
  workdir = tmp_path / "w"
  shutil.copytree(nb201_surrogate[0], workdir)
  shutil.copytree(nb201_workdir / "stage1", workdir / "stage1")
  out = tmp_path / "top.jsonl"
  # The untrained stage 1 decodes valid cells only under the grammar mask.
  code, stdout, err = pnag_main("generate", "--workdir", workdir, "--refs", refs_csv,
                                "--pool", "4096", "--num", "5", "--constrained", "--out", out)
  assert code == 0, err
  assert "4,096 draws" in stdout
  lines = out.read_text().splitlines()
  assert 1 <= len(lines) <= 5
  # The same seed, the same pool and the same file.
  code, _, _ = pnag_main("generate", "--workdir", workdir, "--refs", refs_csv, "--pool",
                         "4096", "--num", "5", "--constrained", "--out",
                         tmp_path / "again.jsonl")
  assert code == 0 and (tmp_path / "again.jsonl").read_text() == out.read_text()


def _darts_surrogate(workdir):
  cfg = stage.make_config("test", "darts", 0)
  _, params = stage.init(cfg)
  meta = lineage.stage_meta(stage=stage.NAME, space="darts", config=config_lib.to_dict(cfg),
                            params=params, frozen=cfg.frozen())
  with ckpt_lib.StageCheckpointer(workdir, stage.NAME) as ckpt:
    ckpt.save(1, params, {"count": jax.numpy.zeros((), jax.numpy.int32)}, jax.random.key(0),
              meta, force=True)
  return workdir


def test_bad_input_is_one_line_and_leaves_no_file(nb201_surrogate, refs_csv, tmp_path,
                                                  pnag_main):
  workdir, _ = nb201_surrogate
  darts_refs = tmp_path / "darts_refs.csv"
  g = get_space("darts")
  darts_refs.write_text("arch,score\n" + "".join(
      f'"{s}",{i}\n' for i, s in enumerate(g.to_strings(np.asarray(g.sample(
          jax.random.key(0), 3))))))
  darts_dir = _darts_surrogate(tmp_path / "darts")
  # An accuracy table offset by 1e8: float32 holds 1e8 to 8, so the order is gone.
  offset_refs = tmp_path / "offset_refs.csv"
  rows = _rows(refs_csv)
  offset_refs.write_text("arch,score\n" + "".join(
      f'"{r["arch"]}",{float(r["score"]) + 1e8!r}\n' for r in rows))
  out = tmp_path / "out.csv"
  cases = [
      (("generate", "--workdir", workdir, "--refs", darts_refs, "--pool", "all"), "row 1"),
      (("generate", "--workdir", darts_dir, "--refs", refs_csv, "--pool", "all"), "darts"),
      (("generate", "--workdir", tmp_path / "none", "--refs", refs_csv, "--pool", "all"),
       "no surrogate"),
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "lots"), "--pool"),
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "1e400"), "--pool"),
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "1.5e0"), "--pool"),
      (("generate", "--workdir", workdir, "--refs", offset_refs, "--pool", "all"),
       "float32"),
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "all",
        "--constraint", "lat_nowhere<=3"), "unknown task"),
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "all",
        "--constraint", "params<3x"), "expected TASK"),
      (("generate", "--workdir", workdir, "--minimize"), "--refs"),
      # Settings that changed nothing: the pool is every cell, or drawn unconditioned.
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "all", "--prior",
        "ar"), "--prior does not go with --pool all"),
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "all",
        "--temperature", "0.3"), "--temperature does not go with --pool all"),
      (("generate", "--workdir", workdir, "--refs", refs_csv, "--pool", "100", "--prior",
        "ar", "--cfg-scale", "3"), "--cfg-scale guides the ar prior toward a condition"),
      (("predict", "--workdir", workdir, "--refs", darts_refs, "--archs", refs_csv), "row 1"),
      (("predict", "--workdir", workdir, "--refs", refs_csv, "--archs", darts_refs), "row 1"),
      (("predict", "--workdir", workdir, "--refs", refs_csv, "--archs", refs_csv,
        "--predictor", "linear", "--adapt-steps", "3"), "--predictor linear"),
      (("predict", "--workdir", workdir, "--refs", offset_refs, "--archs", refs_csv),
       "float32"),
  ]
  for args, needle in cases:
    code, _, err = pnag_main(*args, "--num", "3", "--out", out) if args[0] == "generate" \
        else pnag_main(*args, "--out", out)
    assert code == 2, (args, err)
    assert err.count("\n") == 1 and needle in err, (args, err)
    assert not out.exists() and not list(tmp_path.glob("out.csv*")), args


def test_an_out_naming_an_input_file_is_refused_and_the_input_kept(nb201_surrogate, refs_csv,
                                                                   tmp_path, pnag_main):
  workdir, _ = nb201_surrogate
  refs = tmp_path / "refs.csv"
  shutil.copy(refs_csv, refs)
  archs = tmp_path / "archs.csv"
  shutil.copy(refs_csv, archs)
  before = refs.read_bytes()
  for args, flag in [
      (("generate", "--workdir", workdir, "--refs", refs, "--pool", "all", "--num", "3",
        "--out", refs), "--refs"),
      (("predict", "--workdir", workdir, "--refs", refs, "--archs", archs,
        "--out", tmp_path / "." / "archs.csv"), "--archs"),
  ]:
    code, _, err = pnag_main(*args)
    assert code == 2 and err.count("\n") == 1 and f"the {flag} file" in err, (args, err)
  assert refs.read_bytes() == before and archs.read_bytes() == before
