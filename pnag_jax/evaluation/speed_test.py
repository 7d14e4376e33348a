"""The speed protocol's report: every path, every batch size, the machine's peak."""

import json

import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import speed


@pytest.fixture(autouse=True)
def small_validity_sample(monkeypatch):
  # The sample is drawn at the largest timed batch (1 or 8 here), one call per chunk:
  # the logic is the same at 512 archs, and 4096 cost these tests half their time.
  monkeypatch.setattr(speed, "VALIDITY_SAMPLE", 512)


def test_speed_report(nb201_workdir, tmp_path):
  paths = speed.select_paths(nb201_workdir, "codes+fused,codes+unfused")
  rep = speed.run(str(nb201_workdir), tmp_path, max_log2=3, paths=paths, min_seconds=0.02,
                  progress=False)
  for name in ("speed.json", "speed.md", "speed.png"):
    assert (tmp_path / name).stat().st_size > 100
  saved = json.loads((tmp_path / "speed.json").read_text())
  assert saved["matmul_peak_gflops"] > 0 and saved["peak_rss_mb"] > 0
  assert list(saved["paths"]) == ["codes+fused", "codes+unfused"]
  for p in rep["paths"].values():
    assert [r["batch"] for r in p["throughput"]] == [2**i for i in range(4)]
    assert p["latency_batch1_ms"] > 0 and p["throughput"][0]["flops_per_arch"] > 0
    assert p["best_archs_per_s"] == max(r["archs_per_s"] for r in p["throughput"])
    # Batches stop at 8 here; validity is still sampled, at the full size it can afford.
    v = p["validity_sample"]
    assert v["sample"] == speed.VALIDITY_SAMPLE and 0 <= v["strict_validity"] <= v["validity"] <= 1
  # The fused table replaces the first layer's matmul: far fewer FLOPs per arch.
  fused, unfused = (rep["paths"][k]["throughput"][-1]["flops_per_arch"]
                    for k in ("codes+fused", "codes+unfused"))
  assert fused < unfused / 5
  assert "codes+fused" in speed.format_table(rep)


def test_ar_path_is_measured_where_stage2_exists(nb201_stage2, nb201_stage2_unconditional,
                                                 nb201_workdir, tmp_path):
  workdir, _ = nb201_stage2
  assert "ar" in speed.default_paths(workdir) and "ar" not in speed.default_paths(nb201_workdir)
  # An unconditional stage 2 has nothing for classifier-free guidance to contrast.
  assert "ar+cfg" in speed.default_paths(workdir)
  assert "ar+cfg" not in speed.default_paths(nb201_stage2_unconditional)
  rep = speed.run(str(workdir), tmp_path, max_log2=0,
                  paths=speed.select_paths(workdir, "codes+fused,ar"), min_seconds=0.02,
                  progress=False)
  ar, codes = rep["paths"]["ar"], rep["paths"]["codes+fused"]
  assert ar["settings"]["prior"] == "ar"
  # A transformer pass per scale against a table lookup per token.
  assert ar["throughput"][-1]["flops_per_arch"] > 100 * codes["throughput"][-1]["flops_per_arch"]
  assert ar["throughput_ratio_to_codes_fused"] == pytest.approx(
      ar["best_archs_per_s"] / codes["best_archs_per_s"])
  with pytest.raises(PnagError, match="unknown path 'ar2'"):
    speed.select_paths(workdir, "ar2")
