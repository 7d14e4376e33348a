"""V/U/N (paper Table 6): the scoring, checked by hand, and the protocol on a trained run."""

import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import vun
from pnag_jax.spaces import get_space

_A = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
_B = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
      "nor_conv_3x3~2|")
_C = "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"


def test_score_by_hand():
  space = get_space("nb201")
  ref = vun.reference_of(space, space.from_strings([_A]))
  genes = space.from_strings([_A, _A, _B, _C, _B])
  fmt = np.array([True, True, True, True, False])
  strict = np.array([True, True, True, False, False])
  s = vun.score(space, jnp.asarray(genes), fmt, strict, ref)
  # 4 of 5 format-valid, 3 strictly; distinct valid {A, B, C} of 4 valid; novel {B, C}
  # of 3 distinct.
  assert s["validity"] == pytest.approx(80.0)
  assert s["strict_validity"] == pytest.approx(60.0)
  assert s["uniqueness"] == pytest.approx(75.0)
  assert s["novelty"] == pytest.approx(100 * 2 / 3)
  assert set(s) == set(vun.COLUMNS)


def test_table6_on_the_trained_run(trained_run, tmp_path):
  workdir, _ = trained_run
  rep = vun.run({"nb201": str(workdir)}, tmp_path, num=500, seeds=(0, 1),
                priors=("codes",), constrained=True, progress=False)
  for name in ("vun.json", "vun.md", "vun.png"):
    assert (tmp_path / name).stat().st_size > 100
  rows = rep["spaces"]["nb201"]["rows"]
  assert set(rows) == {"random (uniform)", "PNAG-jax, codes prior",
                       "PNAG-jax, codes prior, constrained"}
  assert rows["PNAG-jax, codes prior"]["validity"]["mean"] >= 99.0
  assert rows["PNAG-jax, codes prior, constrained"]["validity"]["mean"] == 100.0
  assert len(rows["PNAG-jax, codes prior"]["per_seed"]) == 2
  assert rep["spaces"]["nb201"]["num_train"] == 7812
  assert rep["spaces"]["nb201"]["paper"]["PNAG (paper)"]["novelty"] == 59.34
  assert "PNAG-jax, codes prior" in (tmp_path / "vun.md").read_text()


def test_a_run_of_another_space_is_refused(nb201_workdir, tmp_path):
  with pytest.raises(PnagError, match="holds a nb201 run, not mbv3"):
    vun.run({"mbv3": str(nb201_workdir)}, tmp_path, num=10, seeds=(0,), progress=False)


def test_a_space_given_twice_is_refused(tmp_path, pnag_main):
  code, _, err = pnag_main("eval", "vun", "--run", "nb201=nope", "--run", "nb201=other",
                           "--out", tmp_path / "out")
  assert code == 2 and err == ("pnag: error: --run gives nb201 twice (nope and other); one "
                               "run per space\n")
  assert not (tmp_path / "out").exists()


def test_nothing_to_evaluate_is_one_line_and_leaves_nothing(tmp_path, pnag_main):
  out = tmp_path / "v"
  code, _, err = pnag_main("eval", "vun", "--out", out)
  assert code == 2 and "give --run SPACE=WORKDIR or --space SPACE" in err
  assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_ar_row_where_the_workdir_holds_a_stage2(nb201_stage2, tmp_path):
  workdir, _ = nb201_stage2
  rep = vun.run({"nb201": str(workdir)}, tmp_path, num=16, seeds=(0,), priors=(),
                constrained=False, progress=False)
  rows = rep["spaces"]["nb201"]["rows"]
  assert set(rows) == {"random (uniform)", "PNAG-jax, ar prior"}
  assert set(vun.COLUMNS) <= set(rows["PNAG-jax, ar prior"])
