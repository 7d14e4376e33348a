"""The `pnag` console command, run as users run it (a subprocess)."""

import os
import subprocess
import sys

import numpy as np
import pytest


def _pnag(*args, env=None):
  env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-m", "pnag_jax.cli", *args], capture_output=True,
                        text=True, env=env, timeout=300, check=False)


def test_spaces_lists_every_space_with_size():
  r = _pnag("spaces")
  assert r.returncode == 0, r.stderr
  assert "nb201: N=8, 7 node ops, fixed adjacency, size 15,625" in r.stdout
  assert f"({7371**5})" in r.stdout  # MBV3
  for name in ("darts", "autoformer", "autoformer_base"):
    assert f"{name}: N=" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (("spaces", "nb202"), "unknown search space 'nb202'; known spaces: nb201, mbv3, darts"),
    (("demo", "--num", "0"), "--num must be positive"),
    (("demo", "--num", "abc"), "invalid int value"),
    (("frobnicate",), "invalid choice"),
    (("demo", "--num", "10", "--data-dir", "/definitely/not/here"), "does not exist"),
    (("train", "stage1", "--workdir", "/tmp/x", "--data-dir", "/not/here"), "does not exist"),
    (("train", "stage1", "--space", "nb202", "--workdir", "/tmp/x"), "unknown search space"),
    (("train", "stage1", "--workdir", "/tmp/x", "--set", "dim=abc"), "expected int"),
])
def test_bad_input_is_one_line_without_traceback(args, fragment):
  r = _pnag(*args)
  assert r.returncode == 2
  assert fragment in r.stderr
  assert "Traceback" not in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_train_arch_bad_input_is_one_line(tmp_path):
  cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
  mismatched = tmp_path / "mismatched.npz"  # 8x8 train images, 9x9 test images
  np.savez(mismatched, x_train=np.zeros((4, 8, 8)), y_train=np.zeros(4, int),
           x_test=np.zeros((2, 9, 9)), y_test=np.zeros(2, int))
  for args, fragment in [
      (("--arch", "|conv~0|"), "NB201 arch string"),
      (("--arch", cell, "--dataset", "mnist"), "unknown dataset 'mnist'"),
      (("--arch", cell, "--dataset", f"npz:{tmp_path / 'none.npz'}"), "does not exist"),
      (("--arch", cell, "--dataset", f"npz:{mismatched}"), "equal H, W, C"),
      (("--arch", cell, "--space", "nb202"), "unknown search space"),
  ]:
    r = _pnag("train-arch", "--space", "nb201", *args, "--workdir", str(tmp_path / "w"))
    assert r.returncode == 2, (args, r.stdout)
    assert fragment in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
