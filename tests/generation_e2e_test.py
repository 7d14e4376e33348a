"""The main job and `pnag generate` / `pnag eval` as users run them (subprocesses).

Every test here shares the suite's one trained run (`trained_run`: `pnag demo`).
"""

import csv
import json
import subprocess

import numpy as np
import pytest



def test_demo_trains_generates_and_reports(trained_run):
  workdir, out = trained_run
  assert f"workdir {workdir}" in out
  assert "[1/3] stage 1 (quick preset): 120 steps, trained in " in out
  assert "generated 5,000 archs" in out
  assert "batch-1 latency" in out
  assert "cifar10_test_acc" in out
  assert f"pnag generate --workdir {workdir}" in out  # how to continue from the run
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
  assert (workdir / "stage1" / "priors" / "step_120.npz").exists()


def test_generate_writes_every_arch_with_benchmark_columns(trained_run, data_dir, tmp_path,
                                                           pnag, pnag_main):
  workdir, _ = trained_run
  out = tmp_path / "g.csv"
  r = pnag("generate", "--workdir", workdir, "--num", "5000", "--seed", "3", "--out", out,
           env={"PNAG_DATA_DIR": str(data_dir)})
  assert r.returncode == 0, r.stderr
  assert "generated 5,000 nb201 archs" in r.stdout
  assert "validity 100.00% (strict " in r.stdout  # the paper's validity, strict beside it
  with out.open(newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 5000
  assert list(rows[0]) == ["arch", "nb201_index", "cifar10_test_acc", "cifar100_test_acc",
                           "imagenet16_120_test_acc", "valid", "format_valid"]
  assert np.mean([row["format_valid"] == "True" for row in rows]) >= 0.99
  assert len({row["arch"] for row in rows}) > 1000
  # Same seed, other chunk size, other format, fewer archs: the first 1,000 archs in the
  # same order (arch i is fold_in(key, i); the CLI in this process: one console run
  # above is enough).
  out2 = tmp_path / "g.jsonl"
  code, _, err = pnag_main("generate", "--workdir", workdir, "--num", "1000", "--seed", "3",
                           "--out", out2, "--chunk-size", "300")
  assert code == 0, err
  archs2 = [json.loads(line)["arch"] for line in out2.read_text().splitlines()]
  assert archs2 == [row["arch"] for row in rows[:1000]]


@pytest.mark.parametrize("args, fragment", [
    (("--workdir", "/no/such/run", "--num", "10", "--out", "x.csv"), "no stage-1 checkpoints"),
    (("--num", "10", "--out", "x.txt"), "must end in .jsonl or .csv"),
    (("--num", "0", "--out", "x.csv"), "--num must be positive"),
    (("--num", "10", "--out", "x.csv", "--prior", "gauss"), "invalid choice"),
    (("--num", "10", "--out", "x.csv", "--temperature", "-1"), "temperature must be"),
    (("--num", "10", "--out", "/no/such/dir/x.csv"), "does not exist"),
])
def test_generate_bad_input_is_one_line(trained_run, pnag_main, args, fragment):
  workdir, _ = trained_run
  if "--workdir" not in args:
    args = ("--workdir", workdir) + args
  code, out, err = pnag_main("generate", *args)
  assert code == 2, out
  assert fragment in err
  assert len(err.strip().splitlines()) == 1, err


def test_generate_from_a_corrupt_checkpoint_is_one_line(trained_run, tmp_path, pnag):
  workdir, _ = trained_run
  broken = tmp_path / "broken"
  subprocess.run(["cp", "-r", str(workdir), str(broken)], check=True)
  for f in (broken / "stage1" / "checkpoints").rglob("*"):
    if f.is_file() and f.stat().st_size > 1000 and f.name != "pnag_manifest.json":
      f.write_bytes(b"\0" * 64)
  r = pnag("generate", "--workdir", broken, "--num", "10", "--out", tmp_path / "x.csv")
  assert r.returncode == 2
  assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
  assert "corrupt" in r.stderr
  assert not (tmp_path / "x.csv").exists()


def test_eval_executable_checks_generated_archs_and_every_step(trained_run, tmp_path,
                                                               pnag_main):
  # In this process: the op-by-op check's compiled ops are shared with executable_test,
  # which is in this worker's group for that reason.
  workdir, _ = trained_run
  code, out, err = pnag_main("eval", "executable", "--workdir", workdir, "--num", "1",
                             "--out", tmp_path)
  assert code == 0, err[-3000:]
  rep = json.loads((tmp_path / "executable.json").read_text())
  assert rep["space"] == "nb201" and not rep["jit"]
  summary = rep["summary"]
  # The quick preset has 6 scales: the final archs plus g_1 .. g_6.
  assert list(summary) == ["generated", *(f"step_{t}" for t in range(1, 7))]
  assert all(len(rows) == 1 for rows in rep["groups"].values())
  assert summary["generated"]["executable"] == 1.0
  for s in summary.values():
    assert s["executable_given_valid"] == 1.0, s
  # g_T decodes the full code map: the generated archs themselves.
  assert rep["groups"]["step_6"] == rep["groups"]["generated"]
  assert "executable validity, nb201" in out


def test_eval_bad_input_is_one_line(tmp_path, pnag_main):
  for args, fragment in [
      (("vun", "--run", "nb201", "--out", tmp_path), "expects SPACE=WORKDIR"),
      (("vun", "--run", "nb202=/x", "--out", tmp_path), "unknown search space"),
      (("quality", "--workdir", "/no/run", "--out", tmp_path), "no stage-1 checkpoints"),
      (("scc-ablation", "--space", "darts", "--out", tmp_path), "invalid choice"),
      (("executable", "--random", "--out", tmp_path), "--space is required"),
  ]:
    code, out, err = pnag_main("eval", *args)
    assert code == 2, (args, out)
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1, err
