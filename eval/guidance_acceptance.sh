#!/usr/bin/env bash
# Issue 11's measurements, end to end: a stage-1 run for the generator pool, the
# leave-dataset-out transfer (Table 1), objective-specific generation (Table 5), the
# family study, and the speed benchmark. Surrogates are trained once under RUNS and
# reused (same exclusions) by every protocol.
#   bash eval/guidance_acceptance.sh RUNS [OUT]
set -euo pipefail
RUNS=${1:?usage: guidance_acceptance.sh RUNS [OUT]}
OUT=${2:-eval/reports}
FAMILY_SET=${FAMILY_SET:-}   # e.g. "--set steps=600" to shorten the 14 family surrogates
mkdir -p "$RUNS"
pnag train stage1 --space nb201 --workdir "$RUNS/nb201_quick" --preset quick
pnag eval transfer --workdir "$RUNS/nb201_quick" --out "$OUT/transfer" --seeds 5 \
  --pool 100000 --surrogates "$RUNS/surrogates"
pnag eval objectives --out "$OUT/objectives" --surrogates "$RUNS/surrogates"
python eval/bench_guidance.py --surrogate "$RUNS/surrogates/excl_cifar10_0" \
  --stage1 "$RUNS/nb201_quick" --out "$OUT/guidance_speed"
pnag eval families --out "$OUT/families" --surrogates "$RUNS/surrogates_families" $FAMILY_SET
# What the shortfalls are made of: the allowed tables' own ceiling on Table 1, the
# feedback walk traced, and leave-one-device-out over 10 reference draws.
python eval/transfer_ceiling.py --out "$OUT/transfer_ceiling"
python eval/feedback_trace.py --surrogates "$RUNS/surrogates" --out "$OUT/feedback_trace"
python eval/lodo_linear_variants.py --out "$OUT/lodo_linear_variants" --draws 10
