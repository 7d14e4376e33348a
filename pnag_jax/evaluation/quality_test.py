"""Fig. 4b/c: generated vs random NB201 cells, scored in the benchmark tables."""

import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import quality


def test_quality_of_the_trained_run(trained_run, data_dir, tmp_path):
  workdir, _ = trained_run
  q = quality.run(str(workdir), tmp_path, data_dir=str(data_dir), num=100, seeds=(0, 1))
  for name in ("quality.json", "quality.md", "quality.png"):
    assert (tmp_path / name).stat().st_size > 100
  c10 = q["datasets"]["cifar10_test_acc"]
  assert len(c10["generated"]["values"]) == len(c10["random"]["values"]) == 200
  assert 60.0 < c10["generated"]["mean"] <= c10["generated"]["max"] <= 94.37
  assert c10["best_in_space"] == pytest.approx(94.37, abs=0.01)
  assert len(q["generated_archs"]) == 200 and q["generated_validity"] >= 0.99


def test_quality_needs_an_nb201_run(untrained_run, stage1_saver, data_dir, tmp_path):
  stage1_saver(untrained_run("mbv3", dim=8, decoder_hidden=32, num_scales=3), tmp_path / "w")
  with pytest.raises(PnagError, match="quality needs an NB201 run; .* holds mbv3"):
    quality.run(str(tmp_path / "w"), tmp_path / "out", data_dir=str(data_dir))
