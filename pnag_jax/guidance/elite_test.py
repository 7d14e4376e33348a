"""The objective-guided search: finds a known optimum fast, respects constraints, one
compile, deterministic; and `pnag generate --objective` end to end with its errors."""

import json
import types

import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.guidance import elite, files
from pnag_jax.spaces import get_space
from pnag_jax.tasks import costs

NB201 = get_space("nb201")
# A cell with no `none` edge: the optimum of the synthetic objective below.
TARGET = NB201.from_string("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+"
                           "|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|")
CFG = elite.EliteConfig(batch=25, pool=1024, elite=10, chunk_size=1024)


def _matches(genes):
  """How many of the 6 edges agree with TARGET: one optimum among 15,625 cells."""
  return (np.asarray(genes) == TARGET).sum(-1).astype(np.float64)


def test_finds_a_known_optimum_with_few_calls(nb201_untrained):
  # 200 calls: random search finds the one optimum with probability 200 / 15,625.
  r = elite.search(nb201_untrained, jax.random.key(0), _matches, lambda g: np.ones(len(g), bool),
                   200, CFG)
  assert r.calls <= 200 and r.scores[0] == 6 and r.genes[0].tolist() == TARGET.tolist()
  calls, best, seconds = zip(*r.trace)
  assert list(calls) == sorted(calls) and list(best) == sorted(best) and calls[-1] == r.calls
  # Best first, each arch scored once (one per isomorphism class), all strictly valid.
  assert list(r.scores) == sorted(r.scores, reverse=True)
  keys = np.asarray(NB201.iso_key(r.genes))
  assert len(np.unique(keys, axis=0)) == len(keys)
  assert np.asarray(NB201.strict_valid(*NB201.encode(r.genes))).all()


def test_constraints_hold_and_the_search_is_deterministic(nb201_untrained):
  params = costs.params_of("nb201", NB201.enumerate())
  bound = float(np.median(params))

  def feasible(g):
    return costs.params_of("nb201", g) <= bound

  a = elite.search(nb201_untrained, jax.random.key(3), _matches, feasible, 120, CFG)
  b = elite.search(nb201_untrained, jax.random.key(3), _matches, feasible, 120, CFG)
  assert feasible(a.genes).all()
  np.testing.assert_array_equal(a.genes, b.genes)
  # Deterministic in its key, not blind to it: another key, another search.
  c = elite.search(nb201_untrained, jax.random.key(4), _matches, feasible, 120, CFG)
  assert not np.array_equal(a.genes, c.genes)
  with pytest.raises(PnagError, match="--budget must be >= 1"):
    elite.search(nb201_untrained, jax.random.key(0), _matches, feasible, 0, CFG)
  with pytest.raises(PnagError, match="no feasible arch"):
    elite.search(nb201_untrained, jax.random.key(0), _matches,
                 lambda g: np.zeros(len(g), bool), 10, CFG)


def test_round_one_keeps_a_class_by_its_first_member_that_meets_the_constraint():
  # Node 1 feeds nothing, so its op is dead: two cells, one class, different params.
  dead_conv3, dead_conv1 = NB201.from_strings([
      "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
      "|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"])
  pool = np.stack([dead_conv3, TARGET, dead_conv1])
  bound = costs.params_of("nb201", dead_conv1[None])[0]
  assert (costs.params_of("nb201", pool[:2]) > bound).all()  # the premise

  class Drawn:  # round one's sampler, drawing the same three cells
    def generate(self, key, n):
      del key, n
      return types.SimpleNamespace(genes=pool, valid=np.ones(3, bool))

  r = elite.search(types.SimpleNamespace(space=NB201), jax.random.key(0), _matches,
                   lambda g: costs.params_of("nb201", g) <= bound, 1, CFG, sampler=Drawn())
  assert r.genes.tolist() == [dead_conv1.tolist()]


def test_the_proxy_fits_an_additive_score():
  genes = NB201.enumerate()[::5]
  proxy = elite.RidgeProxy(NB201, 1e-3)
  proxy.fit(genes, _matches(genes))
  np.testing.assert_allclose(proxy(NB201.enumerate()[1::5]), _matches(NB201.enumerate()[1::5]),
                             atol=1e-2)


def test_records_of_mbv3_r_subnets(tmp_path):
  space = get_space("mbv3_r")
  genes = np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.key(0), 3))
  out = files.write_records(tmp_path / "top.jsonl", space, genes,
                            {"ofa_acc": [0.81, 0.8, 0.79], "note10_latency_ms": [24.0, 23.0, 22.0]})
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [sorted(r) for r in rows] == [["arch", "note10_latency_ms", "ofa_acc"]] * 3
  assert rows[0]["arch"] == space.to_native(genes[0]) and "r" in rows[0]["arch"]
  # What reads arch files (the executable check, predict, task loaders) reads these back.
  from pnag_jax.tasks import read_archs  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(read_archs(out, "mbv3_r"), genes)
  out = files.write_records(tmp_path / "top.csv", space, genes, {"ofa_acc": [1, 2, 3]})
  assert out.read_text().splitlines()[0] == "arch,ofa_acc"
  assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob("*.partial"))


def test_generate_objective_end_to_end(nb201_workdir, tmp_path, pnag_main, data_dir):
  out = tmp_path / "top.jsonl"
  code, stdout, err = pnag_main(
      "generate", "--workdir", nb201_workdir, "--objective", "cifar10_test_acc",
      "--constraint", "params<=600000", "--num", "5", "--budget", "100", "--out", out,
      "--data-dir", data_dir)
  assert code == 0, err
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(rows) == 5 and sorted(rows[0]) == ["arch", "cifar10_test_acc", "params"]
  accs = [r["cifar10_test_acc"] for r in rows]
  assert accs == sorted(accs, reverse=True) and all(r["params"] <= 6e5 for r in rows)
  assert "scored 100 of a budget of 100 cifar10_test_acc calls under params<=600000" in stdout


@pytest.mark.parametrize("args, fragment", [
    (["--objective", "nope"], "--objective 'nope': unknown task of nb201; tasks that score"),
    (["--objective", "params", "--budget", "0"], "--budget must be a positive number"),
    (["--objective", "params", "--refs", "r.csv"], "--refs does not go with --objective"),
    (["--objective", "params", "--prior", "latent"], "--prior does not go with --objective"),
    (["--budget", "5"], "--budget caps the calls of an --objective search"),
    (["--objective", "params", "--constraint", "nope<=1"], "unknown task 'nope'"),
    # A subset table: most archs have no score, and a search would rank NaNs.
    (["--objective", "cifar10_val_acc"], "scores 724 of the 15,625 nb201 archs"),
    (["--objective", "params", "--constraint", "cifar100_val_acc>=60"], "scores 7"),
    # Sampler settings the search does not read are refused, not ignored.
    (["--objective", "params", "--temperature", "0"], "--temperature does not go with"),
    (["--objective", "params", "--constrained"], "--constrained does not go with"),
    (["--objective", "params", "--chunk-size", "7"], "--chunk-size does not go with"),
])
def test_generate_objective_errors(nb201_workdir, tmp_path, pnag_main, data_dir, args, fragment):
  out = tmp_path / "top.jsonl"
  code, _, err = pnag_main("generate", "--workdir", nb201_workdir, "--num", "3", "--out", out,
                           "--data-dir", data_dir, *args)
  assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
  assert not out.exists() and not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob("*.partial"))


def test_gene_marginals_draw_refit_and_neighbours():
  card = get_space("mbv3_r").gene_cardinalities
  dist = elite.GeneMarginals(card, floor=0.01)
  rng = np.random.default_rng(0)
  genes = dist.draw(rng, 4000)
  assert genes.shape == (4000, 46) and (genes >= 0).all() and (genes < np.asarray(card)).all()
  # Uniform at first: every value of the resolution gene about a fifth of the time.
  np.testing.assert_allclose(np.bincount(genes[:, 45]) / 4000, 0.2, atol=0.03)
  dist.refit(np.zeros((10, 46), np.int32), rate=1.0)
  assert dist.probs[45][0] == pytest.approx(0.99 + 0.01 / 5)
  parents = genes[:3]
  near = dist.neighbours(rng, parents, 1000, most=2)
  diffs = np.min([(near != p).sum(1) for p in parents], axis=0)
  assert set(diffs.tolist()) <= {1, 2} and (near < np.asarray(card)).all()
