"""NB201 tables: alignment with the space's encoding, known figures, clear errors."""

import csv
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.data import NB201Data, resolve_data_dir
from pnag_jax.data.splits import nb201_split
from pnag_jax.errors import DataError
from pnag_jax.spaces import get_space, nb201

BEST_C10 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")  # idx 6111, SOURCE.md


@pytest.fixture(scope="module")
def data(data_dir):
  return NB201Data.from_dir(data_dir)


def test_arch_to_row_map_agrees_with_nb201_index(data, nb201_rows):
  space = get_space("nb201")
  for r in nb201_rows:
    code = int(nb201.code_of_genes(space.from_string(r["arch_str"])))
    assert data.nb201_index[code] == int(r["nb201_index"])
    assert data.code_of_index[int(r["nb201_index"])] == code
    assert data.metric("cifar100_test_acc")[code] == np.float32(float(r["cifar100_test_acc"]))


def test_best_cifar10_accuracy_is_94_37_at_source_arch(data):
  code, acc = data.best("cifar10_test_acc")
  assert round(acc, 2) == 94.37
  assert data.nb201_index[code] == 6111
  assert get_space("nb201").to_string(nb201.genes_of_code(code)) == BEST_C10
  # Disconnected cells score exactly chance on CIFAR-10 (SOURCE.md).
  space = get_space("nb201")
  all_genes = jnp.asarray(space.enumerate())
  strict = np.asarray(space.strict_valid(*space.encode(all_genes)))
  np.testing.assert_allclose(data.metric("cifar10_test_acc")[~strict], 10.0)


def test_lookup_is_one_jitted_gather(data):
  space = get_space("nb201")
  genes = space.sample(jax.random.key(0), 100_000)
  acc = jax.jit(lambda g: data.lookup("cifar10_test_acc", g))(genes)
  assert acc.shape == (100_000,) and acc.dtype == jnp.float32
  np.testing.assert_array_equal(acc, data.metric("cifar10_test_acc")[np.asarray(space.code(genes))])
  assert 85.0 < float(acc.mean()) < 92.0  # connected cells' mean; chance cells excluded


def test_optional_tables(data):
  lat = data.metric("lat_titanx_1")
  assert lat.shape == (15625,) and np.isfinite(lat).all()
  params = data.metric("cifar10/params")
  assert 500 < np.isfinite(params).sum() < 1000  # the ~724-arch NASLib subset
  with pytest.raises(DataError, match="unknown NB201 metric"):
    data.metric("nope")


def test_split_is_seeded_disjoint_and_covering():
  tr, ho = nb201_split(seed=0)
  assert tr.size + 1 == ho.size == 7813
  assert np.intersect1d(tr, ho).size == 0
  assert np.union1d(tr, ho).size == 15625
  np.testing.assert_array_equal(nb201_split(seed=0)[0], tr)
  assert not np.array_equal(nb201_split(seed=1)[0], tr)


def test_missing_directory_file_and_column(tmp_path, data_dir, monkeypatch):
  monkeypatch.delenv("PNAG_DATA_DIR", raising=False)
  with pytest.raises(DataError, match="pass --data-dir or set PNAG_DATA_DIR"):
    resolve_data_dir(None)
  with pytest.raises(DataError, match="does not exist"):
    resolve_data_dir(tmp_path / "nope")
  (tmp_path / "afile").write_text("")
  with pytest.raises(DataError, match="'.*afile' is a file, not a directory"):
    resolve_data_dir(tmp_path / "afile")
  with pytest.raises(DataError, match="no nb201_accuracy.csv"):
    resolve_data_dir(tmp_path)
  # Environment variable, and pointing at nb201/ itself, both work.
  monkeypatch.setenv("PNAG_DATA_DIR", str(data_dir))
  assert resolve_data_dir(None) == data_dir / "nb201"
  assert resolve_data_dir(data_dir / "nb201") == data_dir / "nb201"

  src = data_dir / "nb201" / "nb201_accuracy.csv"
  bad = tmp_path / "nb201"
  bad.mkdir()
  header, *rows = src.read_text().splitlines()
  cols = header.split(",")
  drop = cols.index("cifar100_test_acc")
  (bad / "nb201_accuracy.csv").write_text("\n".join(
      ",".join(c for i, c in enumerate(line.split(",")) if i != drop)
      for line in [header] + rows[:5]))
  with pytest.raises(DataError, match="lacks column"):
    NB201Data.from_dir(tmp_path).metric("cifar10_test_acc")
  # Truncated file: all columns present but not one row per cell.
  (bad / "nb201_accuracy.csv").write_text("\n".join([header] + rows[:100]))
  with pytest.raises(DataError, match="one row per NB201 cell"):
    NB201Data.from_dir(tmp_path).metric("cifar10_test_acc")
  # Corrupt value.
  broken = rows[:]
  broken[7] = broken[7].replace(broken[7].split(",")[8], "abc", 1)
  (bad / "nb201_accuracy.csv").write_text("\n".join([header] + broken))
  with pytest.raises(DataError, match=r"data row 8: column \w+ is 'abc', not a number"):
    NB201Data.from_dir(tmp_path).metric("cifar10_test_acc")
  # A field too many shifted the row's later values into the next columns, silently.
  broken = rows[:]
  fields = broken[4].split(",")
  broken[4] = ",".join(fields[:9] + ["99.9"] + fields[9:])
  (bad / "nb201_accuracy.csv").write_text("\n".join([header] + broken))
  with pytest.raises(DataError, match=r"data row 5: 13 field\(s\), the header has 12"):
    NB201Data.from_dir(tmp_path).metric("cifar10_test_acc")
  # A column twice was read as its first; a byte-order mark hid the first column.
  (bad / "nb201_accuracy.csv").write_text("\n".join(
      [header + ",cifar10_test_acc"] + [r + ",50.0" for r in rows]))
  with pytest.raises(DataError, match="has column 'cifar10_test_acc' twice"):
    NB201Data.from_dir(tmp_path).metric("cifar10_test_acc")
  (bad / "nb201_accuracy.csv").write_text("\ufeff" + src.read_text())
  assert NB201Data.from_dir(tmp_path).checked().nb201_index.shape == (15625,)
  # An infinite accuracy would be every task's optimum.
  broken = rows[:]
  broken[7] = broken[7].replace(broken[7].split(",")[8], "inf", 1)
  (bad / "nb201_accuracy.csv").write_text("\n".join([header] + broken))
  with pytest.raises(DataError, match="data row 8: column cifar10_test_acc is 'inf', not a"):
    NB201Data.from_dir(tmp_path).metric("cifar10_test_acc")
  # A trailing blank line is no row.
  (bad / "nb201_accuracy.csv").write_text(src.read_text() + "\n\n")
  assert NB201Data.from_dir(tmp_path).metric("cifar10_test_acc").shape == (15625,)
  # Optional file absent: its metrics error clearly, the accuracies still load.
  shutil.copy(src, bad / "nb201_accuracy.csv")
  d = NB201Data.from_dir(tmp_path)
  assert d.metric("cifar10_test_acc").shape == (15625,)
  with pytest.raises(DataError, match="missing NB201 data file"):
    d.metric("lat_titanx_1")


def test_the_zero_cost_subset_is_read_by_column_name(tmp_path, data_dir):
  src = data_dir / "nb201" / "nb201_naslib_zc_subset.csv"
  header, *rows = src.read_text().splitlines()
  cols = header.split(",")
  # The same table with its columns in another order reads the same.
  order = [cols.index(c) for c in ("params", "dataset", "arch_str", "nb201_index")]
  order += [i for i in range(len(cols)) if i not in order]
  bad = tmp_path / "nb201"
  bad.mkdir()
  for name in ("nb201_accuracy.csv",):
    shutil.copy(data_dir / "nb201" / name, bad / name)
  def write(lines):
    (bad / src.name).write_text("\n".join(lines) + "\n")
  split = [next(csv.reader([r])) for r in rows]
  write([",".join(cols[i] for i in order)] +
        [",".join(f'"{r[i]}"' if "," in r[i] or "|" in r[i] else r[i] for i in order)
         for r in split])
  ref, got = NB201Data.from_dir(data_dir), NB201Data.from_dir(tmp_path)
  for key in ("cifar10/params", "cifar100/val_accuracy", "ImageNet16-120/zc_nwot"):
    np.testing.assert_array_equal(got.metric(key), ref.metric(key))
  with pytest.raises(DataError):
    got.metric("cifar10/nb201_index")
  # Unknown datasets and a cell listed twice for one dataset are refused.
  write([header] + [rows[0].replace(split[0][0], "svhn", 1)] + rows[1:])
  with pytest.raises(DataError, match="unknown dataset 'svhn'"):
    NB201Data.from_dir(tmp_path).metric("cifar10/params")
  write([header] + rows + rows[:1])
  with pytest.raises(DataError, match="the same cell twice"):
    NB201Data.from_dir(tmp_path).metric("cifar10/params")


def test_a_tables_rows_must_pair_index_and_cell_as_the_accuracy_file(tmp_path, data_dir):
  # Two rows' arch_str swapped, their indices and values kept: each cell got the other's
  # latencies, with no error.
  bad = tmp_path / "nb201"
  bad.mkdir()
  shutil.copy(data_dir / "nb201" / "nb201_accuracy.csv", bad)
  header, first, second, *rest = (data_dir / "nb201" / "nb201_latency_help.csv"
                                  ).read_text().splitlines()
  a, b = next(csv.reader([first])), next(csv.reader([second]))
  i = header.split(",").index("arch_str")
  a[i], b[i] = b[i], a[i]
  (bad / "nb201_latency_help.csv").write_text("\n".join(
      [header, ",".join(a), ",".join(b), *rest]) + "\n")
  with pytest.raises(DataError, match=rf"nb201_latency_help.csv, data row 1: nb201_index "
                                      rf"{a[header.split(',').index('nb201_index')]}, but its "
                                      r"arch_str is index \d+ in nb201_accuracy.csv"):
    NB201Data.from_dir(tmp_path).metric("lat_titanx_1")
