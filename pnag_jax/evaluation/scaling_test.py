"""The scaling protocol: one process's measurement in-process, and one real sweep."""

import json

import jax
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import scaling, scaling_worker


def test_worker_measures_its_devices_at_each_chunk_size(nb201_workdir):
  rows = scaling_worker.measure(str(nb201_workdir), 2, [128, 256], 512, repeats=2)
  assert [(r["chunk"], r["devices"], r["processes"]) for r in rows] == [(128, 2, 1),
                                                                         (256, 2, 1)]
  for r in rows:
    assert len(r["repeat_seconds"]) == 2 and r["archs_per_s"] == pytest.approx(512 / r["seconds"])
    assert r["platform"] == "cpu" and r["space"] == "nb201"
  with pytest.raises(PnagError, match=f"{len(jax.local_devices()) + 1} devices asked for"):
    scaling_worker.measure(str(nb201_workdir), len(jax.local_devices()) + 1, [256], 256)


def test_efficiency_is_against_linear_scaling_from_the_smallest_count():
  rows = [{"devices": 1, "chunk": 8, "archs_per_s": 100.0},
          {"devices": 4, "chunk": 8, "archs_per_s": 200.0},
          {"devices": 2, "chunk": 16, "archs_per_s": 50.0},
          {"devices": 8, "chunk": 16, "archs_per_s": 200.0}]
  out = scaling._with_efficiency(rows, "devices")  # pylint: disable=protected-access
  assert [(r["speedup"], r["efficiency"]) for r in out] == [(1, 1), (2, 0.5), (1, 1), (4, 1)]


def test_sweep_over_two_processes_writes_the_report(nb201_workdir, tmp_path):
  # Each point is processes of its own (start-up and compile, ~4 s each): the device
  # sweep's worker is the same module, measured in-process above.
  rep = scaling.run(str(nb201_workdir), tmp_path, devices=(), processes=(2,),
                    chunk_sizes=(256,), num=1024, repeats=1, progress=False)
  for name in ("scaling.json", "scaling.md", "scaling.png"):
    assert (tmp_path / name).stat().st_size > 100
  saved = json.loads((tmp_path / "scaling.json").read_text())
  assert saved["devices"] == [] and saved["space"] == "nb201"
  # Two processes of the runtime, one fake device each, the same 1,024 archs between them.
  (two,) = saved["processes"]
  assert (two["processes"], two["devices_per_process"], two["num"]) == (2, 1, 1024)
  assert two["last_process_seconds"] > 0
  assert "processes, 1 device(s) each" in scaling.format_table(rep)


def test_bad_lists_fail_in_one_line(tmp_path):
  # A chunk of 4,096 on 3 devices ran on one of them, and was reported as 3.
  (tmp_path / "w" / "stage1").mkdir(parents=True)
  with pytest.raises(PnagError, match="--chunk-sizes 4096: not a multiple of 3 devices"):
    scaling.run(str(tmp_path / "w"), tmp_path / "out", devices=(1, 3), chunk_sizes=(4096,))
  assert not (tmp_path / "out").exists()
  with pytest.raises(PnagError, match="comma-separated integers, got '1,x'"):
    scaling._ints("1,x")  # pylint: disable=protected-access
  with pytest.raises(PnagError, match="positive integers"):
    scaling._ints("0,2")  # pylint: disable=protected-access
