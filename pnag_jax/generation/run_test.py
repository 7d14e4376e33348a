"""`pnag generate` as a library call: a workdir to a file, with its summary."""

import csv

import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation import run as run_lib
from pnag_jax.generation import sampler as sampler_lib
from pnag_jax.generation.sampler import SamplerConfig


def _rows(path):
  with path.open(newline="") as f:
    return list(csv.DictReader(f))


def test_generate_to_file_without_tables_says_so_once(nb201_workdir, tmp_path, capsys,
                                                      monkeypatch):
  monkeypatch.delenv("PNAG_DATA_DIR", raising=False)
  out = tmp_path / "a.csv"
  # Constrained: the untrained decoder's raw output is hardly ever valid.
  r = run_lib.generate_to_file(nb201_workdir, 300, 0, out,
                               SamplerConfig(chunk_size=128, constrained=True), progress=False)
  err = capsys.readouterr().err
  assert err.count("no nb201 data directory") == 1 and "nb201_index" in err
  # Set but holding no tables: a default, so no error, but the note names it (it said
  # the variable was not set).
  monkeypatch.setenv("PNAG_DATA_DIR", str(tmp_path / "typo"))
  run_lib.generate_to_file(nb201_workdir, 10, 0, tmp_path / "b.csv",
                           SamplerConfig(chunk_size=128, constrained=True), progress=False)
  assert f"$PNAG_DATA_DIR='{tmp_path / 'typo'}' holds no nb201 tables" in capsys.readouterr().err
  rows = _rows(out)
  assert len(rows) == 300 and list(rows[0]) == ["arch", "valid", "format_valid"]
  assert not r["with_benchmark_columns"]
  # The summary is the file's: validity is format validity (the paper's), strict is ours.
  assert r["validity"] == np.mean([row["format_valid"] == "True" for row in rows])
  assert r["strict_validity"] == np.mean([row["valid"] == "True" for row in rows])
  strict = [row["arch"] for row in rows if row["valid"] == "True"]
  assert 1 < len(set(strict)) < len(strict)
  assert r["uniqueness"] == pytest.approx(len(set(strict)) / len(strict))
  assert r["temperature"] == 1.0 and r["prior"] == "codes" and r["fused"]
  assert r["constrained"]


def test_generate_to_file_with_tables(nb201_workdir, tmp_path, data_dir, capsys):
  out = tmp_path / "a.csv"
  r = run_lib.generate_to_file(nb201_workdir, 50, 1, out, SamplerConfig(chunk_size=64),
                               data_dir=str(data_dir), progress=False)
  assert r["with_benchmark_columns"] and "note" not in capsys.readouterr().err
  assert list(_rows(out)[0]) == ["arch", "nb201_index", "cifar10_test_acc",
                                 "cifar100_test_acc", "imagenet16_120_test_acc", "valid",
                                 "format_valid"]


def test_a_chunk_larger_than_num_is_cut_to_it(nb201_workdir, tmp_path, monkeypatch):
  # A chunk of 1,000,000 for 5 archs compiled a 5 GB call (and ran out of memory above).
  asked, load = [], run_lib.load_sampler
  monkeypatch.setattr(run_lib, "load_sampler",
                      lambda w, cfg, devices=None: asked.append(cfg) or load(w, cfg, devices))
  devices = jax.devices()[:2]
  run_lib.generate_to_file(nb201_workdir, 5, 0, tmp_path / "a.csv",
                           SamplerConfig(chunk_size=10**6, constrained=True), progress=False,
                           devices=devices)
  # Rounded up to a multiple of the devices, so the chunk still spreads over both.
  assert [c.chunk_size for c in asked] == [6] and len(_rows(tmp_path / "a.csv")) == 5
  assert SamplerConfig(chunk_size=64).for_num(10**6).chunk_size == 64
  assert SamplerConfig().for_num(1001).chunk_size == 1008  # the suite's 8 CPU devices
  # Any chunk is a multiple of the devices: 8,192 on 3 gcd'd to one device.
  three = jax.devices()[:3]
  assert SamplerConfig().for_num(10**6, three).chunk_size == 8193
  assert SamplerConfig(chunk_size=1).for_num(10**6, three).chunk_size == 3
  mesh = sampler_lib.batch_mesh(SamplerConfig().for_num(10**6, three).chunk_size, tuple(three))
  assert mesh.devices.size == 3


def test_bad_requests_fail_before_loading(tmp_path):
  with pytest.raises(PnagError, match="--num must be positive"):
    run_lib.generate_to_file(tmp_path, 0, 0, tmp_path / "a.csv", SamplerConfig())
  with pytest.raises(PnagError, match="must end in .jsonl or .csv"):
    run_lib.generate_to_file(tmp_path, 5, 0, tmp_path / "a.txt", SamplerConfig())
  with pytest.raises(PnagError, match="no stage-1 checkpoints"):
    run_lib.load_sampler(tmp_path / "nothing")
  # JAX keys keep a seed's low 32 bits: 2**32 + 5 would silently draw seed 5's archs.
  for seed in (2**32 + 5, -1):
    with pytest.raises(PnagError, match=r"--seed must be in \[0, 2\*\*32 - 1\]"):
      run_lib.generate_to_file(tmp_path, 5, seed, tmp_path / "a.csv", SamplerConfig())
  with pytest.raises(PnagError, match=r"at most 2\*\*32 - 1 architectures per seed"):
    run_lib.generate_to_file(tmp_path, 2**32, 0, tmp_path / "a.csv", SamplerConfig())
  assert not list(tmp_path.iterdir())
