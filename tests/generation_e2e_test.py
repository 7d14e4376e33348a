"""Train once (the demo's quick NB201 run), then generate and evaluate as users do.

The trained workdir is shared by every test here, and by both pytest-xdist workers: the
first to get the lock trains (through `pnag demo`), the other reuses the finished run.
"""

import csv
import fcntl
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pnag_jax.evaluation import executable, quality, scc_ablation, speed, vun


def _pnag(*args, env=None, timeout=600):
  env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-m", "pnag_jax.cli", *args], capture_output=True,
                        text=True, env=env, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, data_dir):
  """(workdir, demo stdout): `pnag demo --num 20000` on a fresh workdir, run once."""
  root = tmp_path_factory.getbasetemp().parent  # shared by the xdist workers
  workdir, log = root / "demo_nb201", root / "demo_nb201.stdout"
  with open(root / "demo_nb201.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not log.exists():
      r = _pnag("demo", "--num", "20000", "--workdir", str(workdir),
                env={"PNAG_DATA_DIR": str(data_dir)})
      assert r.returncode == 0, r.stderr[-3000:]
      log.write_text(r.stdout)
  return workdir, log.read_text()


def test_demo_trains_generates_and_reports(demo_run):
  workdir, out = demo_run
  assert "[1/3] stage 1 (quick preset): 400 steps" in out
  assert "generated 20,000 archs" in out
  assert "batch-1 latency" in out
  assert "cifar10_test_acc" in out
  report = json.loads((workdir / "demo" / "report.json").read_text())
  assert report["stage1"]["heldout_exact_match"] >= 0.95
  table6 = report["vun"]["PNAG-jax, 1000 x 3 (Table 6)"]
  rand = report["vun"]["random (uniform), 1000 x 3"]
  # A trained quick model; an untrained decoder scores well under 50% format validity.
  assert table6["validity"]["mean"] >= 99.0
  assert table6["strict_validity"]["mean"] >= 95.0
  assert table6["uniqueness"]["mean"] >= 85.0
  assert 40.0 <= table6["novelty"]["mean"] <= 60.0  # the held-out half is ~50% of the space
  assert rand["uniqueness"]["mean"] == pytest.approx(96.8, abs=1.5)  # DESIGN §6
  assert rand["novelty"]["mean"] == pytest.approx(50.0, abs=3.0)
  assert (workdir / "stage1" / "priors" / "step_400.npz").exists()


def test_generate_writes_every_arch_with_benchmark_columns(demo_run, data_dir, tmp_path):
  workdir, _ = demo_run
  out = tmp_path / "g.csv"
  r = _pnag("generate", "--workdir", str(workdir), "--num", "5000", "--seed", "3",
            "--out", str(out), env={"PNAG_DATA_DIR": str(data_dir)})
  assert r.returncode == 0, r.stderr
  assert "generated 5,000 nb201 archs" in r.stdout
  with out.open(newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 5000
  assert list(rows[0]) == ["arch", "nb201_index", "cifar10_test_acc", "cifar100_test_acc",
                           "imagenet16_120_test_acc", "valid", "format_valid"]
  assert np.mean([row["format_valid"] == "True" for row in rows]) >= 0.99
  assert len({row["arch"] for row in rows}) > 1000
  # Same seed, other chunk size, other format: the same archs in the same order.
  out2 = tmp_path / "g.jsonl"
  r = _pnag("generate", "--workdir", str(workdir), "--num", "5000", "--seed", "3",
            "--out", str(out2), "--chunk-size", "1000", env={"PNAG_DATA_DIR": str(data_dir)})
  assert r.returncode == 0, r.stderr
  archs2 = [json.loads(line)["arch"] for line in out2.read_text().splitlines()]
  assert archs2 == [row["arch"] for row in rows]


@pytest.mark.parametrize("args, fragment", [
    (("--workdir", "/no/such/run", "--num", "10", "--out", "x.csv"), "no stage-1 checkpoints"),
    (("--num", "10", "--out", "x.txt"), "must end in .jsonl or .csv"),
    (("--num", "0", "--out", "x.csv"), "--num must be positive"),
    (("--num", "10", "--out", "x.csv", "--prior", "gauss"), "invalid choice"),
    (("--num", "10", "--out", "x.csv", "--temperature", "-1"), "temperature must be"),
    (("--num", "10", "--out", "/no/such/dir/x.csv"), "does not exist"),
])
def test_generate_bad_input_is_one_line(demo_run, args, fragment):
  workdir, _ = demo_run
  if "--workdir" not in args:
    args = ("--workdir", str(workdir)) + args
  r = _pnag("generate", *args)
  assert r.returncode == 2, r.stdout
  assert fragment in r.stderr
  assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_generate_from_a_corrupt_checkpoint_is_one_line(demo_run, tmp_path):
  workdir, _ = demo_run
  broken = tmp_path / "broken"
  subprocess.run(["cp", "-r", str(workdir), str(broken)], check=True)
  for f in (broken / "stage1" / "checkpoints").rglob("*"):
    if f.is_file() and f.stat().st_size > 1000:
      f.write_bytes(b"\0" * 64)
  r = _pnag("generate", "--workdir", str(broken), "--num", "10", "--out",
            str(tmp_path / "x.csv"))
  assert r.returncode == 2
  assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
  assert not (tmp_path / "x.csv").exists()


def test_eval_vun_and_quality_write_json_and_png(demo_run, data_dir, tmp_path):
  workdir, _ = demo_run
  rep = vun.run({"nb201": str(workdir)}, tmp_path / "vun", num=500, seeds=(0, 1),
                priors=("codes",), constrained=False, progress=False)
  for name in ("vun.json", "vun.md", "vun.png"):
    assert (tmp_path / "vun" / name).stat().st_size > 100
  rows = rep["spaces"]["nb201"]["rows"]
  assert set(rows) == {"random (uniform)", "PNAG-jax, codes prior"}
  assert rows["PNAG-jax, codes prior"]["validity"]["mean"] >= 99.0
  assert rep["spaces"]["nb201"]["paper"]["PNAG (paper)"]["novelty"] == 59.34

  q = quality.run(str(workdir), tmp_path / "q", data_dir=str(data_dir), num=100)
  for name in ("quality.json", "quality.png"):
    assert (tmp_path / "q" / name).stat().st_size > 100
  c10 = q["datasets"]["cifar10_test_acc"]
  assert len(c10["generated"]["values"]) == len(c10["random"]["values"]) == 100
  assert 60.0 < c10["generated"]["mean"] <= c10["generated"]["max"] <= 94.37


def test_eval_speed_writes_json_and_png(demo_run, tmp_path):
  workdir, _ = demo_run
  rep = speed.run(str(workdir), tmp_path, max_log2=6, paths=speed.PATHS[:2],
                  min_seconds=0.05, progress=False)
  assert (tmp_path / "speed.png").stat().st_size > 100
  saved = json.loads((tmp_path / "speed.json").read_text())
  assert saved["matmul_peak_gflops"] > 0 and saved["peak_rss_mb"] > 0
  for p in rep["paths"].values():
    assert [r["batch"] for r in p["throughput"]] == [2**i for i in range(7)]
    assert p["latency_batch1_ms"] > 0 and p["throughput"][0]["flops_per_arch"] > 0


def test_eval_executable_checks_generated_archs_and_every_step(demo_run, tmp_path):
  workdir, _ = demo_run
  r = _pnag("eval", "executable", "--workdir", str(workdir), "--num", "3", "--out",
            str(tmp_path))
  assert r.returncode == 0, r.stderr[-3000:]
  rep = json.loads((tmp_path / "executable.json").read_text())
  assert rep["space"] == "nb201" and not rep["jit"]
  summary = rep["summary"]
  # The quick preset has 6 scales: the final archs plus g_1 .. g_6.
  assert list(summary) == ["generated", *(f"step_{t}" for t in range(1, 7))]
  assert all(len(rows) == 3 for rows in rep["groups"].values())
  assert summary["generated"]["executable"] == 1.0
  for s in summary.values():
    assert s["executable_given_valid"] == 1.0, s
  # g_T decodes the full code map: the generated archs themselves.
  assert rep["groups"]["step_6"] == rep["groups"]["generated"]
  assert "executable validity, nb201" in r.stdout
  # Under the grammar every g_t is a network of the space by construction.
  rep = executable.run(tmp_path / "c", workdir=str(workdir), num=2, constrained=True,
                       progress=False)
  assert rep["constrained"] and len(rep["summary"]) == 7
  assert all(s["valid"] == s["executable"] == 1.0 for s in rep["summary"].values())


def test_eval_scc_ablation_writes_json_and_png(tmp_path, data_dir):
  rep = scc_ablation.run("nb201", tmp_path, seeds=(0,), t_max_values=(0, 6), num=200,
                         data_dir=str(data_dir), progress=False,
                         extra_overrides=("max_steps=40", "checkpoint_every=40"))
  for name in ("scc_ablation.json", "scc_ablation.png"):
    assert (tmp_path / name).stat().st_size > 100
  assert [r["t_max"] for r in rep["summary"]] == [0, 6]
  for r in rep["summary"]:
    assert len(r["step_strict_validity"]) == 6
    assert 0.0 <= r["validity"] <= 1.0 and "cifar10_test_acc" in r["accuracy"]


def test_eval_bad_input_is_one_line(tmp_path):
  for args, fragment in [
      (("vun", "--run", "nb201", "--out", str(tmp_path)), "expects SPACE=WORKDIR"),
      (("vun", "--run", "nb202=/x", "--out", str(tmp_path)), "unknown search space"),
      (("quality", "--workdir", "/no/run", "--out", str(tmp_path)), "no stage-1 checkpoints"),
      (("scc-ablation", "--space", "darts", "--out", str(tmp_path)), "invalid choice"),
  ]:
    r = _pnag("eval", *args)
    assert r.returncode == 2, (args, r.stdout)
    assert fragment in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
