"""OFA's predictor and Note10 tables against the data directory's reference values."""

import json
import re

import numpy as np
import pytest

from pnag_jax.errors import DataError, PnagError
from pnag_jax.tasks import ofa


@pytest.fixture(scope="module")
def reference(data_dir):
  return json.loads((data_dir / "mbv3" / "reference_values.json").read_text())["subnets"]


@pytest.fixture(scope="module")
def models(data_dir):
  return ofa.OFAModels.from_dir(data_dir / "mbv3")


def _batch(reference):
  return tuple(np.array([s["arch"][k] for s in reference]) for k in ("ks", "e", "d")) + (
      np.array([s["resolution"] for s in reference]),)


def test_reference_values_are_reproduced(reference, models):
  # Six subnets: the largest, the smallest, three seeded random ones, and the OFA
  # tutorial's 25 ms search result (0.8171285 at 24.730 ms, r = 192).
  ks, e, d, r = _batch(reference)
  x = ofa.encode(ks, e, d, r)
  for row, s in zip(x, reference):
    assert np.flatnonzero(row).tolist() == s["active_feature_indices"], s["name"]
  np.testing.assert_allclose(models.accuracy(ks, e, d, r),
                             [s["pred_acc_float32"] for s in reference], atol=1e-5)
  np.testing.assert_allclose(models.note10_latency(ks, e, d, r),
                             [s["note10_latency_ms"] for s in reference], atol=1e-3)
  tutorial = [s["name"] for s in reference].index("ofa_tutorial_note10_25ms")
  assert models.accuracy(ks, e, d, r)[tutorial] == pytest.approx(0.8171285, abs=1e-5)
  # Inactive slots are ignored: changing them changes nothing.
  ks2, e2 = ks.copy(), e.copy()
  inactive = ~ofa._active(ofa._check(ks, e, d, r)[2])  # pylint: disable=protected-access
  ks2[inactive], e2[inactive] = 7, 6
  np.testing.assert_array_equal(models.accuracy(ks2, e2, d, r), models.accuracy(ks, e, d, r))
  np.testing.assert_array_equal(models.note10_latency(ks2, e2, d, r),
                                models.note10_latency(ks, e, d, r))


@pytest.mark.parametrize("name, value, fragment", [
    ("ks", 4, "OFA ks must be one of (3, 5, 7), got 4"),
    ("r", 200, "OFA resolution must be one of (160, 176, 192, 208, 224), got 200"),
    ("d", 5, "OFA d must be one of (2, 3, 4), got 5"),
])
def test_bad_subnets_are_one_line_errors(reference, models, name, value, fragment):
  arrays = dict(zip(("ks", "e", "d", "r"), (x[:1].copy() for x in _batch(reference))))
  arrays[name][...] = value
  with pytest.raises(PnagError, match=re.escape(fragment)):
    models.note10_latency(arrays["ks"], arrays["e"], arrays["d"], arrays["r"])


def test_a_missing_table_is_a_one_line_error(tmp_path):
  with pytest.raises(PnagError, match="cannot read OFA's accuracy predictor"):
    ofa.OFAModels.from_dir(tmp_path)


def test_corrupt_predictor_and_latency_tables_are_one_line_errors(tmp_path, data_dir):
  import shutil  # pylint: disable=g-import-not-at-top
  good = data_dir / "mbv3"
  truncated = tmp_path / "truncated"
  shutil.copytree(good, truncated)
  npz = truncated / "ofa_acc_predictor.npz"
  npz.write_bytes(npz.read_bytes()[:200])
  with pytest.raises(PnagError, match="cannot read OFA's accuracy predictor") as e:
    ofa.OFAModels.from_dir(truncated)
  assert "\n" not in str(e.value)
  no_mean = tmp_path / "no_mean"
  shutil.copytree(good, no_mean)
  table = sorted((no_mean / "note10").glob("*_lookup_table.yaml"))[0]
  table.write_text(table.read_text().replace("mean:", "median:", 1))
  with pytest.raises(PnagError, match="has no mean latency for") as e:
    ofa.OFAModels.from_dir(no_mean)
  assert "\n" not in str(e.value)


def test_gene_functions_match_on_mbv3_r_genes(reference, models):
  # The jit-able functions on mbv3_r genes (what searches run on device) agree with
  # the reference values too, through the space's own parser.
  import jax  # pylint: disable=g-import-not-at-top
  from pnag_jax.spaces import get_space  # pylint: disable=g-import-not-at-top
  space = get_space("mbv3_r")
  genes = np.stack([space.from_native({**s["arch"], "r": s["resolution"]}) for s in reference])
  acc = np.asarray(jax.jit(ofa.accuracy_of_genes)(models.arrays, genes))
  lat = np.asarray(jax.jit(ofa.latency_of_genes)(models.arrays, genes))
  np.testing.assert_allclose(acc, [s["pred_acc_float32"] for s in reference], atol=1e-5)
  np.testing.assert_allclose(lat, [s["note10_latency_ms"] for s in reference], atol=1e-3)
  np.testing.assert_array_equal(np.asarray(ofa.genes_to_values(genes)[3]),
                                [s["resolution"] for s in reference])


def test_tasks_of_the_mbv3_spaces(data_dir, reference):
  from pnag_jax.spaces import get_space  # pylint: disable=g-import-not-at-top
  from pnag_jax.tasks.builtin import builtin_tasks  # pylint: disable=g-import-not-at-top
  tasks = builtin_tasks("mbv3_r", data_dir)
  assert list(tasks) == ["ofa_acc", "note10_latency", "params", "flops"]
  acc, lat = tasks["ofa_acc"], tasks["note10_latency"]
  assert (acc.minimize, lat.minimize, lat.column, acc.column) == (
      False, True, "note10_latency_ms", "ofa_acc")
  tutorial = next(s for s in reference if s["name"] == "ofa_tutorial_note10_25ms")
  genes = get_space("mbv3_r").from_native({**tutorial["arch"], "r": tutorial["resolution"]})
  assert acc.score_fn(genes[None])[0] == pytest.approx(0.8171285, abs=1e-5)
  assert lat.score_fn(genes[None])[0] == pytest.approx(24.730, abs=1e-3)
  # Batches are padded to a power of two; each row keeps its own score.
  at_low = genes.copy()
  at_low[-1] = 0
  batch = np.stack([genes, at_low, genes])
  np.testing.assert_allclose(acc.score_fn(batch),
                             [acc.score_fn(g[None])[0] for g in batch], atol=1e-6)
  assert acc.score_fn(batch)[0] != acc.score_fn(batch)[1]
  # mbv3 has no resolution gene: its subnets are scored at 224 px.
  plain = builtin_tasks("mbv3", data_dir)
  at_224 = genes.copy()
  at_224[-1] = 4
  assert plain["ofa_acc"].score_fn(genes[None, :45])[0] == pytest.approx(
      acc.score_fn(at_224[None])[0], abs=1e-6)
  # Without OFA's files the tasks are simply absent.
  assert list(builtin_tasks("mbv3_r", data_dir / "nb201")) == ["params", "flops"]


def _extreme_subnet(models, pick):
  """The subnet built greedily as `note10_latency_extremes` says: each resolution, each
  stage's best depth and each layer's best (ks, e), by brute force over their few values."""
  best = None
  for r in ofa.RESOLUTIONS:
    ri = ofa.RESOLUTIONS.index(r)
    flat = models.latency_slot[ri].reshape(ofa.NUM_SLOTS, -1)
    layer = np.argmin(flat, -1) if pick is min else np.argmax(flat, -1)
    ks = np.asarray(ofa.KERNEL_SIZES)[layer // 3]
    e = np.asarray(ofa.EXPAND_RATIOS)[layer % 3]
    depths = []
    for s in range(ofa.NUM_STAGES):
      lat = {d: flat[s * 4:s * 4 + d].min(-1).sum() if pick is min else
             flat[s * 4:s * 4 + d].max(-1).sum() for d in ofa.DEPTHS}
      depths.append(pick(lat, key=lat.get))
    value = models.note10_latency(ks[None], e[None], np.asarray(depths)[None], np.asarray([r]))[0]
    best = value if best is None else pick(best, value)
  return best


def test_latency_extremes_are_attained_and_bound_random_subnets(models):
  lowest, highest = models.note10_latency_extremes()
  assert lowest == pytest.approx(_extreme_subnet(models, min), abs=1e-9)
  assert highest == pytest.approx(_extreme_subnet(models, max), abs=1e-9)
  rng = np.random.default_rng(0)
  n = 20_000
  lat = models.note10_latency(rng.choice(ofa.KERNEL_SIZES, (n, 20)),
                              rng.choice(ofa.EXPAND_RATIOS, (n, 20)),
                              rng.choice(ofa.DEPTHS, (n, 5)), rng.choice(ofa.RESOLUTIONS, n))
  assert lowest < lat.min() and lat.max() < highest
  # At 224 px only (mbv3's subnets): a narrower range inside.
  lo224, hi224 = models.note10_latency_extremes((224,))
  assert lowest < lo224 < hi224 == highest


def test_a_latency_budget_no_subnet_meets_names_the_smallest_achievable(data_dir, models):
  from pnag_jax.guidance import constraints  # pylint: disable=g-import-not-at-top
  from pnag_jax.tasks.builtin import builtin_tasks  # pylint: disable=g-import-not-at-top
  known = builtin_tasks("mbv3_r", data_dir)
  lowest, highest = models.note10_latency_extremes()
  with pytest.raises(PnagError, match=rf"no mbv3_r arch meets it; the smallest achievable "
                                      rf"note10_latency is {lowest:.6g} ms"):
    constraints.parse(f"note10_latency<={lowest - 0.01}", known)
  with pytest.raises(PnagError, match="the largest achievable note10_latency"):
    constraints.parse(f"note10_latency>={highest + 1}", known)
  assert constraints.parse(f"note10_latency<={lowest + 0.01}", known).bound == pytest.approx(
      lowest + 0.01)
  with pytest.raises(PnagError, match="'abc' is not a finite number"):
    constraints.parse("note10_latency<=abc", known)


def _copy_of(data_dir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "mbv3"
  shutil.copytree(data_dir / "mbv3", copy)
  return copy


@pytest.mark.parametrize("change, fragment", [
    # Caught as it loads, not as a TypeError deep in jax at the first call.
    (lambda z: z.update(w1=z["w1"][:300]), "w1 has shape (300, 400), expected (400, N)"),
    (lambda z: z.update(b2=z["b2"][:10]), "b2 has shape (10,), expected (400,)"),
    (lambda z: z.update(w3=np.ones((400, 2), np.float32)), "w3 has shape (400, 2), "
                                                           "expected (400, 1)"),
    (lambda z: z.update(b0=z["b0"].astype(np.complex64)), "b0 is complex64, not floats"),
    (lambda z: z.update(w0=np.full_like(z["w0"], np.nan)), "w0 holds NaN or infinite"),
])
def test_a_predictor_of_the_wrong_form_is_a_one_line_data_error(data_dir, tmp_path, change,
                                                                fragment):
  copy = _copy_of(data_dir, tmp_path)
  z = dict(np.load(copy / "ofa_acc_predictor.npz"))
  change(z)
  np.savez(copy / "ofa_acc_predictor.npz", **z)
  with pytest.raises(DataError, match=re.escape(fragment)) as e:
    ofa.OFAModels.from_dir(copy)
  assert str(copy / "ofa_acc_predictor.npz") in str(e.value) and "\n" not in str(e.value)


def test_a_latency_table_that_is_no_yaml_or_not_finite_is_a_one_line_data_error(data_dir,
                                                                               tmp_path):
  copy = _copy_of(data_dir, tmp_path)
  table = copy / "note10" / "192_lookup_table.yaml"
  text = table.read_text()
  table.write_text(text.replace("mean:", "mean: .nan #", 1))
  with pytest.raises(DataError, match=r"192_lookup_table.yaml has mean latency nan for .*, "
                                      r"not a positive number") as e:
    ofa.OFAModels.from_dir(copy)
  assert "\n" not in str(e.value)
  # A negative latency won every search (-33 ms); YAML's `true` was read as 1 ms.
  for bad, read in (("-50.0", "-50.0"), ("true", "True"), ("0", "0")):
    table.write_text(text.replace("mean:", f"mean: {bad} #", 1))
    with pytest.raises(DataError, match=rf"has mean latency {re.escape(read)} for .*, not a "
                                        "positive number"):
      ofa.OFAModels.from_dir(copy)
  table.write_text("a: [1, 2\n" + text)
  with pytest.raises(DataError, match="cannot read the Note10 latency table") as e:
    ofa.OFAModels.from_dir(copy)
  assert "\n" not in str(e.value) and "line 2" in str(e.value)


def test_a_predictor_that_is_a_lone_array_or_missing_from_mbv3_is_one_line(data_dir,
                                                                            tmp_path):
  copy = _copy_of(data_dir, tmp_path)
  with (copy / "ofa_acc_predictor.npz").open("wb") as f:
    np.save(f, np.zeros(3))  # a .npy under the .npz's name: a TypeError traceback
  with pytest.raises(DataError, match="ofa_acc_predictor.npz: not an .npz archive"):
    ofa.OFAModels.from_dir(copy)
  # An mbv3/ without it: OFA's tasks went missing without a word.
  (copy / "ofa_acc_predictor.npz").unlink()
  with pytest.raises(DataError, match=r"no ofa_acc_predictor.npz \(a file\) in "):
    ofa.find_dir(copy.parent)


def test_a_data_directory_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
  from pnag_jax.tasks.builtin import builtin_tasks  # pylint: disable=g-import-not-at-top
  with pytest.raises(DataError, match=f"data directory '{tmp_path / 'none'}' does not exist"):
    builtin_tasks("mbv3_r", tmp_path / "none")
  # From the environment it is a default, as NB201's: the formulas alone, no error.
  monkeypatch.setenv("PNAG_DATA_DIR", str(tmp_path / "none"))
  assert list(builtin_tasks("mbv3_r")) == ["params", "flops"]
