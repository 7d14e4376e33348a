"""Speed of the surrogate: bulk prediction (network and linear prior), guided generation.

  python eval/bench_guidance.py --surrogate runs/transfer/surrogates/excl_cifar10_0 \
      --stage1 runs/demo --out eval/reports/guidance_speed

Prediction is timed end to end from parsed archs (genes on the host) to scores on the
host, warm (compiled), best of `--repeats`. Guided generation is timed as
`pnag generate --refs ... --pool 100000 --num 10` runs it after loading: draw the pool
through the sampler, keep the valid, new and unique, score, sort.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from pnag_jax.evaluation import reports
from pnag_jax.generation.run import load_sampler
from pnag_jax.guidance import rank
from pnag_jax.stages import surrogate as stage


def best_time(fn, repeats: int) -> float:
  fn()  # compile and warm
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--surrogate", required=True, help="workdir holding surrogate/")
  p.add_argument("--stage1", required=True, help="workdir holding stage1/ (same space)")
  p.add_argument("--out", required=True)
  p.add_argument("--num", type=int, default=1_000_000, help="archs to predict")
  p.add_argument("--pool", type=int, default=100_000)
  p.add_argument("--k", type=int, default=5, help="references")
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args()

  srun = stage.load(args.surrogate)
  space = srun.space
  rng = np.random.default_rng(0)
  every = np.asarray(space.sample(jax.random.key(1), args.num))
  refs = every[:args.k]
  pred = srun.predictor(refs, rng.normal(size=args.k))
  predict_s = best_time(lambda: pred.scores(every), args.repeats)
  linear = None
  if srun.linear_prior is not None:
    lin = srun.linear_predictor(refs, rng.normal(size=args.k))
    linear_s = best_time(lambda: lin.scores(every), args.repeats)
    linear = {"num": args.num, "seconds": linear_s, "archs_per_s": args.num / linear_s}

  _, sampler = load_sampler(args.stage1)
  if sampler.space.name != space.name:
    raise SystemExit(f"stage 1 is {sampler.space.name}, the surrogate {space.name}")

  def guided():
    pool, drawn = rank.draw_pool(sampler, jax.random.key(0), args.pool)
    return rank.guided(space, pred, pool, drawn, k=10, minimize=False, ref_genes=refs)

  picks = guided()
  guided_s = best_time(guided, args.repeats)
  report = {
      "space": space.name, "surrogate": args.surrogate, "stage1": args.stage1,
      "predict": {"num": args.num, "seconds": predict_s, "archs_per_s": args.num / predict_s},
      # The run's linear prior (`--predictor linear`), on the same archs; null without one.
      "predict_linear": linear,
      "guided": {"pool": args.pool, "top": 10, "seconds_warm": guided_s,
                 "valid": picks.valid, "unique": picks.unique,
                 "candidates": picks.candidates},
      "surrogate_config": {k: getattr(srun.cfg, k) for k in ("dim", "layers", "emb_dim",
                                                             "hidden", "task_dim")},
      "machine": reports.machine(),
  }
  out = reports.out_dir(args.out)
  reports.write_json(out / "bench.json", report)
  print(json.dumps({k: report[k] for k in ("predict", "predict_linear", "guided")}, indent=2))


if __name__ == "__main__":
  main()
