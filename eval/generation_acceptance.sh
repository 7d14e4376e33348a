#!/usr/bin/env bash
# Issue 4's measurements, one after another on a quiet machine (they share 2 CPU cores).
#   bash eval/generation_acceptance.sh RUNS_DIR [REPORTS_DIR]
# RUNS_DIR holds the stage-1 runs of eval/stage1_acceptance.sh (nb201_paper, mbv3, darts,
# autoformer). Every step writes JSON (+ PNG) under REPORTS_DIR.
set -euo pipefail
runs=${1:?usage: generation_acceptance.sh RUNS_DIR [REPORTS_DIR]}
out=${2:-eval/reports}
pnag=${PNAG:-pnag}
py=${PYTHON:-python}

# Speed: every path, batch 1 .. 2^20, NB201 paper-preset model.
$pnag eval speed --workdir "$runs/nb201_paper" --out "$out/speed_nb201_cpu"
# V/U/N (paper Table 6): 1000 archs x 3 seeds, every space, random baseline rows.
$pnag eval vun --run nb201="$runs/nb201_paper" --run mbv3="$runs/mbv3" \
  --run darts="$runs/darts" --run autoformer="$runs/autoformer" --out "$out/vun"
# Memory: 10,000,000 NB201 archs to a CSV file, peak RSS of the generating process.
$py eval/bench_generate_file.py --workdir "$runs/nb201_paper" --num 10000000 \
  --out "$out/generate_10m.json"
# Bulk metrics on 10^5 .. 10^7 archs.
$py eval/bench_metrics.py --out "$out/bench_metrics.json"
# Quality (Fig. 4b/c): 100 generated vs 100 random, 3 seeds.
$pnag eval quality --workdir "$runs/nb201_paper" --seeds 3 --out "$out/quality"
# SCC ablation (Fig. 3) on the reduced budgets, t_max = 0..T.
$pnag eval scc-ablation --space nb201 --seeds 2 --out "$out/scc_ablation_nb201"
$pnag eval scc-ablation --space mbv3 --seeds 1 --t-max 0 3 6 --out "$out/scc_ablation_mbv3"
