"""`pnag demo`: the main job on NB201, end to end, in a few minutes on a laptop.

1. Stage 1 with the `quick` preset (resumes if the workdir already holds it).
2. 100,000 architectures from the code prior, timed from PRNG key to host arrays.
3. V/U/N of those (exact and isomorphism-aware) beside the uniform-random baseline,
   batch-1 latency, and, when the NB201 tables are found, the accuracy of 100
   generated cells against 100 random ones.

Everything it prints is also written to `WORKDIR/demo/report.json`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from pnag_jax.configs.stage1 import make_config
from pnag_jax.data.nb201 import ACCURACY_COLUMNS
from pnag_jax.errors import PnagError
from pnag_jax.evaluation import reports, vun
from pnag_jax.evaluation.speed import peak_rss_mb, time_call
from pnag_jax.generation import GenerationConfig, Generator, fitted_priors, load_stage1
from pnag_jax.generation.run import optional_nb201_data
from pnag_jax.training import stage1

CHUNK = 8192


def run(num: int = 100_000, seed: int = 0, data_dir: str | None = None,
        workdir: str | None = None, progress: bool = True) -> dict:
  if num <= 0:
    raise PnagError(f"--num must be positive, got {num}")
  data = optional_nb201_data("nb201", data_dir)
  workdir = Path(workdir or tempfile.mkdtemp(prefix="pnag_demo_"))
  t_start = time.perf_counter()
  print(f"pnag demo: NB201, workdir {workdir}", flush=True)

  cfg = make_config("quick", "nb201", seed)
  t0 = time.perf_counter()
  rep = stage1.train_and_evaluate(cfg, workdir, progress=progress)
  print(f"[1/3] stage 1 (quick preset): {rep['steps']} steps, {time.perf_counter() - t0:.1f} s; "
        f"held-out reconstruction exact match {rep['heldout_exact_match']:.4f}", flush=True)

  trained = load_stage1(workdir)
  priors = fitted_priors(trained)
  gen = Generator(trained, priors, GenerationConfig(prior="codes", chunk_size=CHUNK))
  key = jax.random.key(seed)
  gen.generate(key, CHUNK)  # compile
  t0 = time.perf_counter()
  out = gen.generate(key, num)
  gen_seconds = time.perf_counter() - t0
  batch1 = Generator(trained, priors, GenerationConfig(prior="codes", chunk_size=1))
  latency, _ = time_call(batch1, key, min_seconds=0.5)
  print(f"[2/3] generated {num:,} archs in {gen_seconds:.2f} s ({num / gen_seconds:,.0f} archs/s, "
        f"key to host arrays, fused decoding, {jax.devices()[0].platform}); batch-1 latency "
        f"{latency * 1e3:.3f} ms", flush=True)

  space = trained.space
  ref = vun.reference_of(space, trained.train_genes())
  bulk = vun.score(space, out.genes, out.format_valid, out.valid, ref)
  rows = {
      f"PNAG-jax, {num:,} archs": {c: {"mean": v} for c, v in bulk.items()},
      "PNAG-jax, 1000 x 3 (Table 6)": vun.generator_row(
          Generator(trained, priors, GenerationConfig(chunk_size=1000)), ref, 1000, (0, 1, 2)),
      "random (uniform), 1000 x 3": vun.random_row(space, ref, 1000, (0, 1, 2)),
  }
  print("[3/3] validity / uniqueness / novelty (%), novelty vs the seeded training half:")
  print(reports.table(
      ["", "validity", "strict", "uniq", "novelty", "iso uniq", "iso novelty"],
      [[k] + [f"{r[c]['mean']:.2f}" for c in vun.COLUMNS] for k, r in rows.items()]))
  report = {"workdir": str(workdir), "num": num, "seed": seed, "stage1": rep,
            "generation_seconds": gen_seconds, "archs_per_s": num / gen_seconds,
            "latency_batch1_ms": latency * 1e3, "vun": rows, "machine": reports.machine()}

  if data is not None:
    sample = jax.jit(space.sample, static_argnums=1)
    groups = {"generated": out.genes[:100],
              "random": np.asarray(sample(jax.random.fold_in(key, 0xBA5E), 100))}
    report["quality"] = {}
    qrows = []
    for col in ACCURACY_COLUMNS:
      accs = {k: np.asarray(data.lookup(col, g)) for k, g in groups.items()}
      report["quality"][col] = {k: {"mean": float(a.mean()), "max": float(a.max())}
                                for k, a in accs.items()}
      qrows.append([col] + [f"{accs[k].mean():.2f} / {accs[k].max():.2f}"
                            for k in ("generated", "random")])
    print("quality: NB201 test accuracy, mean / max of 100 archs")
    print(reports.table(["dataset", "generated", "random"], qrows))
  else:
    print("quality: skipped (no NB201 tables; pass --data-dir or set PNAG_DATA_DIR)")
  report["total_seconds"] = time.perf_counter() - t_start
  report["peak_rss_mb"] = peak_rss_mb()
  out_dir = reports.out_dir(workdir / "demo")
  reports.write_json(out_dir / "report.json", report)
  print(f"done in {report['total_seconds']:.0f} s; report: {out_dir / 'report.json'}")
  return report
