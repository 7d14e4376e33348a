import zipfile

import numpy as np
import pytest

from pnag_jax.arch_training import datasets
from pnag_jax.errors import DataError, PnagError


def test_digits_is_the_real_sklearn_set_split_with_a_fixed_seed():
  a = datasets.load_dataset("digits")
  b = datasets.load_dataset("digits")
  assert a.num_classes == 10
  assert len(a.x_train) + len(a.x_test) == 1797
  assert len(a.x_test) == 360  # 20%, stratified
  assert a.input_shape == (8, 8, 1)
  np.testing.assert_array_equal(a.y_test, b.y_test)
  assert np.bincount(a.y_test).min() >= 35  # stratified: every class present
  np.testing.assert_allclose(a.x_train.mean(), 0.0, atol=1e-5)
  padded = datasets.load_dataset("digits", min_size=16)
  assert padded.input_shape == (16, 16, 1)
  # Zero-padding keeps the 8x8 image exact in the middle.
  np.testing.assert_array_equal(padded.x_train[:, 4:12, 4:12], a.x_train)


def test_cifar10_pickles_in_the_standard_format_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  x_tr = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
  x_te = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
  y_tr, y_te = rng.integers(0, 10, 50), rng.integers(0, 10, 10)
  y_tr[:10] = np.arange(10)
  datasets.write_cifar10_batches(tmp_path, x_tr, y_tr, x_te, y_te)
  ds = datasets.load_dataset(f"cifar10:{tmp_path}")
  assert ds.input_shape == (32, 32, 3) and ds.num_classes == 10
  np.testing.assert_array_equal(ds.y_train, y_tr)
  # Undo the standardisation: pixel (row 3, col 5) keeps its RGB through the
  # channel-major rows of the format.
  x = x_tr.astype(np.float32)
  mean, std = x.mean((0, 1, 2)), x.std((0, 1, 2)) + 1e-6
  np.testing.assert_allclose(ds.x_train[7, 3, 5] * std + mean, x_tr[7, 3, 5], atol=1e-3)
  # The directory itself works as well as its parent.
  assert datasets.load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}").num_classes == 10


def test_npz(tmp_path):
  p = tmp_path / "d.npz"
  np.savez(p, x_train=np.zeros((20, 12, 12)), y_train=np.arange(20) % 3,
           x_test=np.ones((5, 12, 12)), y_test=np.arange(5) % 3)
  ds = datasets.load_dataset(f"npz:{p}")
  assert ds.input_shape == (12, 12, 1) and ds.num_classes == 3


@pytest.mark.parametrize("spec, exc, match", [
    ("imagenet", PnagError, "unknown dataset 'imagenet'"),
    ("npz:", PnagError, "unknown dataset"),
    ("npz:/no/such.npz", DataError, "does not exist"),
    ("cifar10:/no/such/dir", DataError, "lacks data_batch_1"),
])
def test_bad_specs(spec, exc, match):
  with pytest.raises(exc, match=match):
    datasets.load_dataset(spec)


def test_malformed_files(tmp_path):
  p = tmp_path / "bad.npz"
  np.savez(p, x_train=np.zeros((20, 8, 8)), y_train=np.zeros(19, int),
           x_test=np.zeros((5, 8, 8)), y_test=np.zeros(5, int))
  with pytest.raises(DataError, match="labels must be"):
    datasets.load_dataset(f"npz:{p}")
  np.savez(p, x_train=np.zeros((20, 8, 8)), y_train=np.zeros(20, int))
  with pytest.raises(DataError, match="lacks x_test, y_test"):
    datasets.load_dataset(f"npz:{p}")
  # A label past int32 once wrapped into another class (2**32 + 1 trained as class 1).
  np.savez(p, x_train=np.zeros((20, 8, 8)), y_train=np.r_[np.zeros(19, int), 2**32 + 1],
           x_test=np.zeros((5, 8, 8)), y_test=np.zeros(5, int))
  with pytest.raises(DataError, match="labels must be class ids up to 1,000,000"):
    datasets.load_dataset(f"npz:{p}")
  np.savez(p, x_train=np.full((20, 8, 8), np.nan), y_train=np.zeros(20, int),
           x_test=np.zeros((5, 8, 8)), y_test=np.zeros(5, int))
  with pytest.raises(DataError, match="NaN or infinite"):
    datasets.load_dataset(f"npz:{p}")
  (tmp_path / "junk.npz").write_bytes(b"not an archive")
  with pytest.raises(DataError, match="cannot read"):
    datasets.load_dataset(f"npz:{tmp_path / 'junk.npz'}")
  # A truncated archive, and one whose member fails its CRC: zipfile's own errors.
  np.savez(p, x_train=np.zeros((20, 8, 8)), y_train=np.zeros(20, int),
           x_test=np.zeros((5, 8, 8)), y_test=np.zeros(5, int))
  whole = p.read_bytes()
  flipped = bytearray(whole)
  flipped[200] ^= 0xFF  # inside x_train's data
  for name, data in (("cut", whole[:len(whole) // 2]), ("crc", bytes(flipped))):
    (tmp_path / f"{name}.npz").write_bytes(data)
    with pytest.raises(DataError, match="cannot read npz dataset .*: BadZipFile"):
      datasets.load_dataset(f"npz:{tmp_path / f'{name}.npz'}")
  # A member whose header claims 400 TB: numpy fails to allocate it (or, where memory is
  # overcommitted, to read it).
  with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
    with z.open("x_train.npy", "w") as f:
      np.lib.format.write_array_header_1_0(
          f, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**7)})
    for name in ("y_train", "x_test", "y_test"):
      with z.open(f"{name}.npy", "w") as f:
        np.lib.format.write_array(f, np.zeros(5, int))
  with pytest.raises(DataError, match="cannot read npz dataset .*huge.npz"):
    datasets.load_dataset(f"npz:{tmp_path / 'huge.npz'}")
  np.savez(p, x_train=np.zeros((20, 0, 8)), y_train=np.zeros(20, int),
           x_test=np.zeros((5, 0, 8)), y_test=np.zeros(5, int))
  with pytest.raises(DataError, match=r"images have no pixels \(H, W, C = \(0, 8, 1\)\)"):
    datasets.load_dataset(f"npz:{p}")
  d = datasets.write_cifar10_batches(tmp_path / "c", np.zeros((5, 32, 32, 3), np.uint8),
                                     np.zeros(5, int), np.zeros((2, 32, 32, 3), np.uint8),
                                     np.zeros(2, int))
  # Garbage, a frame longer than memory, and a global that numpy does not have.
  for junk in (b"\x80\x04garbage", b"\x80\x04\x95" + b"\xff" * 8,
               b"\x80\x04cnumpy\nnot_there\n."):
    (d / "data_batch_3").write_bytes(junk)
    with pytest.raises(DataError, match="corrupt CIFAR-10 batch"):
      datasets.load_dataset(f"cifar10:{tmp_path / 'c'}")


def test_a_npy_file_is_a_one_line_data_error(tmp_path):
  p = tmp_path / "x.npy"
  np.save(p, np.zeros((4, 8, 8)))
  with pytest.raises(DataError, match=r"is a single array \(\.npy\), not an \.npz archive"):
    datasets.load_dataset(f"npz:{p}")


@pytest.mark.parametrize("x", [np.full((20, 8, 8), "a"), np.zeros((20, 8, 8), complex)],
                         ids=["str", "complex"])
def test_images_that_are_not_real_numbers_are_refused(tmp_path, x):
  p = tmp_path / "d.npz"
  np.savez(p, x_train=x, y_train=np.zeros(20, int), x_test=x[:5], y_test=np.zeros(5, int))
  with pytest.raises(DataError, match=f"images must be real numbers, got {x.dtype}"):
    datasets.load_dataset(f"npz:{p}")
