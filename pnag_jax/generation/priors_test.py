import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation import priors as priors_lib
from pnag_jax.generation.conftest import untrained


def test_fit_counts_every_valid_training_arch(nb201_model, nb201_priors):
  genes = nb201_model.space.enumerate()[::7]
  ops, adj = nb201_model.space.encode(genes)
  n_valid = int(np.asarray(nb201_model.space.strict_valid(ops, adj)).sum())
  assert nb201_priors.num_archs == n_valid < genes.shape[0]  # disconnected cells left out
  probs = np.exp(nb201_priors.code_logprobs.astype(np.float64))
  np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
  # Counts are multiples of 1/num_archs: the frequencies are exact, not smoothed.
  counts = probs * n_valid
  np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
  assert nb201_priors.latent_mean.shape == (8, 8, nb201_model.cfg.dim)
  assert np.all(nb201_priors.latent_std >= 0)


def test_priors_file_round_trip_and_cache(nb201_model, tmp_path):
  model = untrained("nb201", tmp_path)
  first = priors_lib.fitted_priors(model)
  path = priors_lib.priors_path(model)
  assert path.exists() and path.parent.name == "priors"
  again = priors_lib.fitted_priors(model)  # read back, not refitted
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not list(path.parent.glob("*.tmp*"))


def test_corrupt_or_mismatched_priors_fail_in_one_line(nb201_model, tmp_path):
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(PnagError, match="corrupt priors file"):
    priors_lib.load_priors(bad)
  small = untrained("nb201", tmp_path / "small", dim=8)
  fitted = priors_lib.fit_priors(small, small.space.enumerate()[:500])
  path = tmp_path / "small.npz"
  priors_lib.save_priors(fitted, path)
  with pytest.raises(PnagError, match="do not match the model"):
    priors_lib.load_priors(path, nb201_model)
