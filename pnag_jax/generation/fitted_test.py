import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation import fitted as fitted_lib


def test_fit_counts_every_valid_training_arch(nb201_untrained, nb201_untrained_priors):
  run, fitted = nb201_untrained, nb201_untrained_priors
  genes = run.space.enumerate()[::7]
  ops, adj = run.space.encode(genes)
  n_valid = int(np.asarray(run.space.strict_valid(ops, adj)).sum())
  assert fitted.num_archs == n_valid < genes.shape[0]  # disconnected cells left out
  probs = np.exp(fitted.code_logprobs.astype(np.float64))
  assert probs.shape == (run.model.layout.num_tokens, run.model.codebook_size)
  np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
  # Counts are multiples of 1/num_archs: the frequencies are exact, not smoothed.
  counts = probs * n_valid
  np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
  assert fitted.latent_mean.shape == (8, 8, run.model.dim)
  assert np.all(fitted.latent_std >= 0)


def test_priors_file_round_trip_and_cache(untrained_run, tmp_path, monkeypatch):
  fits, fit = [], fitted_lib.fit_priors
  monkeypatch.setattr(fitted_lib, "fit_priors",
                      lambda r: fits.append(r) or fit(r, r.space.enumerate()[::7]))
  run = untrained_run("nb201", tmp_path, dim=8, decoder_hidden=32)
  first = fitted_lib.fitted_priors(run)
  path = fitted_lib.priors_path(run)
  assert path.exists() and path.parent.name == "priors" and path.name == "step_0.npz"
  again = fitted_lib.fitted_priors(run)  # read back, not refitted
  assert fits == [run] and len(first.params_sha256) == 64
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not list(path.parent.glob("*.tmp*"))
  # Another run at the same step of the same workdir (trained anew, here another
  # seed): the file is of other params, so it is refitted, not read.
  other = untrained_run("nb201", tmp_path, seed=1, dim=8, decoder_hidden=32)
  refitted = fitted_lib.fitted_priors(other)
  assert fits == [run, other] and refitted.params_sha256 != first.params_sha256
  assert fitted_lib.load_priors(path).params_sha256 == refitted.params_sha256
  # A file from before the hash was recorded (it has no such key) is refitted too.
  with np.load(path) as z:
    old = {k: z[k] for k in z.files if k != "params_sha256"}
  np.savez(path, **old)
  assert fitted_lib.load_priors(path).params_sha256 == ""
  fitted_lib.fitted_priors(other)
  assert fits == [run, other, other]


def test_corrupt_or_mismatched_priors_fail_in_one_line(nb201_untrained, untrained_run,
                                                       tmp_path):
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(PnagError, match="corrupt priors file"):
    fitted_lib.load_priors(bad)
  small = untrained_run("nb201", tmp_path / "small", dim=8)
  fitted = fitted_lib.fit_priors(small, small.space.enumerate()[:500])
  path = tmp_path / "small.npz"
  fitted_lib.save_priors(fitted, path)
  with pytest.raises(PnagError, match="do not match the model"):
    fitted_lib.load_priors(path, nb201_untrained)


def test_priors_cache_that_cannot_be_written_is_a_note(untrained_run, tmp_path, monkeypatch,
                                                       capsys):
  # "stage1" as a plain file: the priors directory cannot be made, even by root.
  (tmp_path / "stage1").write_text("")
  run = untrained_run("nb201", tmp_path, dim=8, decoder_hidden=32)
  quick = fitted_lib.fit_priors(run, run.space.enumerate()[::7])
  monkeypatch.setattr(fitted_lib, "fit_priors", lambda r: quick)
  priors = fitted_lib.fitted_priors(run)
  np.testing.assert_array_equal(priors.code_logprobs, quick.code_logprobs)
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "cannot write" in err and "without being cached" in err
  with pytest.raises(PnagError, match="cannot write"):
    fitted_lib.save_priors(quick, tmp_path / "stage1" / "priors" / "step_0.npz")
