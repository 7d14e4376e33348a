#!/usr/bin/env bash
# Issue 3's stage-1 runs, one after another (they share 2 CPU cores; run nothing beside them).
#   bash eval/stage1_acceptance.sh [RUNS_DIR]
# Each run writes RUNS_DIR/<name>/stage1/report.json; a re-run resumes from checkpoints.
set -euo pipefail
runs=${1:-runs}
pnag=${PNAG:-pnag}
# Budget for the sampled spaces: 6 evenly spaced scales, C=16, 1500 steps of batch 256.
small=(--set num_scales=6 --set dim=16 --set max_steps=1500 --set eval_every=500
       --set checkpoint_every=500)

# NB201: quick (the <=120 s preset), its SCC-off twin, then the paper preset.
$pnag train stage1 --space nb201 --preset quick --workdir "$runs/nb201_quick"
$pnag train stage1 --space nb201 --preset quick --workdir "$runs/nb201_quick_scc0" --set scc_t_max=0
$pnag train stage1 --space nb201 --preset paper --workdir "$runs/nb201_paper"
# MBV3: 500,000 training archs and 10,000 held out (issue 3, item 7).
$pnag train stage1 --space mbv3 --preset quick --workdir "$runs/mbv3" "${small[@]}" \
  --set train_size=500000 --set heldout_size=10000
# DARTS and AutoFormer (Tiny): 100,000 training archs, 10,000 held out.
$pnag train stage1 --space darts --preset quick --workdir "$runs/darts" "${small[@]}" \
  --set train_size=100000 --set heldout_size=10000
$pnag train stage1 --space autoformer --preset quick --workdir "$runs/autoformer" "${small[@]}" \
  --set train_size=100000 --set heldout_size=10000
# MBV3 SCC off, same budget as the MBV3 run above.
$pnag train stage1 --space mbv3 --preset quick --workdir "$runs/mbv3_scc0" "${small[@]}" \
  --set train_size=500000 --set heldout_size=10000 --set scc_t_max=0

# SCC variants (the "which default, and why" measurements).
$pnag train stage1 --space nb201 --preset quick --workdir "$runs/nb201_quick_literal" --set scc_variant=paper_literal
$pnag train stage1 --space nb201 --preset quick --workdir "$runs/nb201_quick_arch" --set arch_scc=true
$pnag train stage1 --space darts --preset quick --workdir "$runs/darts_arch" "${small[@]}" \
  --set train_size=100000 --set heldout_size=10000 --set arch_scc=true
