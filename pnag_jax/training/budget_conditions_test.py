"""Stage 2's budget condition: training pairs, a trained run, `--params` and its errors."""

import shutil
import types

import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.spaces import get_space
from pnag_jax.stages import stage2
from pnag_jax.tasks import costs
from pnag_jax.training import budget_conditions
from pnag_jax.training import stage2 as training

# With the other stage-2 tests: one worker, one encoding of stage 1's token maps.
pytestmark = pytest.mark.xdist_group("nb201_stage2")


def test_draws_give_every_non_empty_subset_of_the_counts():
  values = np.array([[0.2, 0.7], [0.9, 0.4]], np.float32)
  idx = np.zeros(3000, np.int32)
  cond = np.asarray(budget_conditions.draw(values, idx, jax.random.key(0)))
  assert cond.shape == (3000, 4)
  given = cond[:, :2]
  assert set(np.unique(given)) == {0.0, 1.0} and given.sum(1).min() == 1
  np.testing.assert_array_equal(cond[:, 2:], values[0] * given)  # a count only if given
  subsets, counts = np.unique(given, axis=0, return_counts=True)
  assert subsets.tolist() == [[0, 1], [1, 0], [1, 1]]
  assert counts.min() > 900  # uniform over the three: 1,000 each


@pytest.fixture(scope="module")
def budget_workdir(nb201_stage2, tmp_path_factory):
  """A 2-step budget-conditioned stage 2 on `nb201_stage2`'s stage 1."""
  workdir = shutil.copytree(nb201_stage2[0], tmp_path_factory.mktemp("budget") / "w",
                            ignore=shutil.ignore_patterns("stage2", "surrogate"))
  cfg = stage2.make_config("test", overrides=["condition=budget", "max_steps=2",
                                              "checkpoint_every=2", "log_every=2"])
  return workdir, training.train_and_evaluate(cfg, workdir, progress=False)


def test_a_budget_run_records_its_range_and_reads_its_condition(budget_workdir):
  workdir, report = budget_workdir
  assert report["budgets"] == ["params", "flops"]
  run2 = stage2.load(workdir)
  assert run2.model.cond_dim == 4 and run2.budget_range == report["budget_range"]
  # The range is the training half's exact counts.
  train = run2.stage1.train_genes()
  valid = np.asarray(run2.stage1.space.strict_valid(*run2.stage1.space.encode(train)))
  params = costs.params_of("nb201", train[valid])
  assert report["budget_range"]["params"] == [params.min(), params.max()]
  assert np.isfinite(report["heldout_nll_per_token_conditional"])


def test_generate_with_params_and_its_errors(budget_workdir, nb201_stage2_unconditional,
                                              tmp_path, pnag_main):
  workdir, report = budget_workdir
  lo, hi = report["budget_range"]["params"]
  out = tmp_path / "b.csv"
  base = ("generate", "--workdir", workdir, "--num", "8", "--chunk-size", "8", "--out", out)
  code, stdout, err = pnag_main(*base, "--prior", "ar", "--params", f"{(lo * hi) ** 0.5:.6g}")
  assert code == 0, err
  assert len(out.read_text().splitlines()) == 9 and "params" in stdout
  out.unlink()
  for args, fragment in [
      (("--prior", "ar", "--params", f"{2 * hi:g}"), "outside the range stage 2 was trained on"),
      (("--params", "5e5"), "--params and --flops condition the stage-2 prior"),
      (("--prior", "ar", "--params", "5e5", "--target", "0.9"), "does not go with a budget"),
  ]:
    code, _, err = pnag_main(*base, *args)
    assert code != 0 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
  code, _, err = pnag_main("generate", "--workdir", nb201_stage2_unconditional, "--num", "4",
                           "--prior", "ar", "--params", "5e5", "--out", out)
  assert code != 0 and "need one trained with --set condition=budget" in err
  assert not out.exists()


def test_a_space_without_quick_counts_says_which_budgets_it_can_take():
  run1 = types.SimpleNamespace(space=get_space("darts"))  # only its space is read first
  genes = np.zeros((2, run1.space.num_genes), np.int32)
  with pytest.raises(PnagError, match="darts's params and flops take an abstract network "
                                      "build per arch; no count of darts is a formula yet"):
    budget_conditions.build(stage2.make_config("test", overrides=["condition=budget"]), run1,
                            genes, genes)
  run1 = types.SimpleNamespace(space=get_space("mbv3"))
  with pytest.raises(PnagError, match="mbv3's flops take .* use --set budgets=params"):
    budget_conditions.build(stage2.make_config("test", overrides=["condition=budget"]), run1,
                            genes, genes)
