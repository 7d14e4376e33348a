"""V/U/N on the device against a plain-Python reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax import metrics
from pnag_jax.spaces import get_space


@pytest.mark.parametrize("words", [1, 3])
def test_against_python_sets(words):
  rng = np.random.default_rng(words)
  keys = rng.integers(0, 4, (3000, words)).astype(np.uint32)
  valid = rng.random(3000) < 0.7
  ref = rng.integers(0, 4, (500, words)).astype(np.uint32)
  out = jax.jit(metrics.vun)(jnp.asarray(valid), jnp.asarray(keys), jnp.asarray(ref))
  rows = [tuple(k) for k, v in zip(keys.tolist(), valid) if v]
  uniq = set(rows)
  novel = uniq - {tuple(r) for r in ref.tolist()}
  assert float(out["validity"]) == pytest.approx(len(rows) / 3000)
  assert float(out["uniqueness"]) == pytest.approx(len(uniq) / len(rows))
  assert float(out["novelty"]) == pytest.approx(len(novel) / len(uniq))


def test_random_nb201_baseline_matches_design():
  # DESIGN §6: uniform sampling gives NB201 uniqueness ~96.8%, novelty ~50%.
  space = get_space("nb201")
  all_genes = jnp.asarray(space.enumerate())
  ref = space.exact_key(all_genes[::2])
  vals = []
  for seed in range(3):
    g = space.sample(jax.random.key(seed), 1000)
    out = metrics.vun(jnp.ones(1000, bool), space.exact_key(g), ref)
    vals.append((float(out["uniqueness"]), float(out["novelty"])))
  u, n = np.mean(vals, 0)
  assert 0.955 < u < 0.98 and 0.45 < n < 0.55
