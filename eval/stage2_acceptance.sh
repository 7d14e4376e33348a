#!/usr/bin/env bash
# Issue 12's measurements so far: on NB201, stage 1 (quick), an
# unconditional stage 2 (quick) with its V/U/N and speed, the speed of a paper-size
# stage 2 (one step: speed does not depend on training), and a task-conditioned
# stage 2 on a surrogate that never read ImageNet16-120, with its target sweep
# (eval/reports/stage2/conditional_mlp/: the default MLP condition embedding; the
# reports without _mlp are of the first, linear one, `--set cond_embed=linear`), the
# transfer protocol with the stage-2 guides on that stack, and a budget-conditioned
# stage 2 on AutoFormer with its parameter sweep.
#   bash eval/stage2_acceptance.sh RUNS [OUT]
set -euo pipefail
RUNS=${1:?usage: stage2_acceptance.sh RUNS [OUT]}
OUT=${2:-eval/reports/stage2}
STAGE2_SET=${STAGE2_SET:-}   # e.g. "--set max_steps=4000" for a longer quick run
mkdir -p "$RUNS" "$OUT"
pnag train stage1 --space nb201 --workdir "$RUNS/nb201" --preset quick
pnag train stage2 --workdir "$RUNS/nb201" --preset quick $STAGE2_SET
pnag eval vun --run nb201="$RUNS/nb201" --out "$OUT/vun"
pnag eval speed --workdir "$RUNS/nb201" --paths codes+fused,ar --max-log2 14 --out "$OUT/speed_ar_quick"
mkdir -p "$RUNS/nb201_paper" && cp -r "$RUNS/nb201/stage1" "$RUNS/nb201_paper/"
pnag train stage2 --workdir "$RUNS/nb201_paper" --preset paper --set max_steps=1
pnag eval speed --workdir "$RUNS/nb201_paper" --paths codes+fused,ar --max-log2 8 --out "$OUT/speed_ar_paper"
mkdir -p "$RUNS/nb201_task" && cp -r "$RUNS/nb201/stage1" "$RUNS/nb201_task/"
pnag train surrogate --workdir "$RUNS/nb201_task" --space nb201 --exclude imagenet16_120 --preset quick
pnag train stage2 --workdir "$RUNS/nb201_task" --preset quick --set condition=task
pnag eval conditional --workdir "$RUNS/nb201_task" --task cifar10_test_acc \
  --task imagenet16_120_test_acc --out "$OUT/conditional"
# Transfer with the stage-2 guides (issue 12): the ImageNet16-120 target on the
# surrogate and stage 2 above, which never read an ImageNet16-120 task.
mkdir -p "$RUNS/transfer_ar" && ln -sfn "$(cd "$RUNS/nb201_task" && pwd)" "$RUNS/transfer_ar/excl_imagenet16_120"
pnag eval transfer --workdir "$RUNS/nb201_task" --surrogates "$RUNS/transfer_ar" \
  --targets imagenet16_120_test_acc --ks 5 --seeds 5 --guide rank,ar,ar+rank --ar-pool 1000 \
  --out "$OUT/transfer_ar"
pnag eval transfer --workdir "$RUNS/nb201_task" --surrogates "$RUNS/transfer_ar" \
  --targets imagenet16_120_test_acc --ks 5 --seeds 5 --guide rank,ar,ar+rank --ar-pool 3000 \
  --cfg-scale 2 --out "$OUT/transfer_ar_cfg2"
# The budget condition on AutoFormer (parameter counts are its closed form).
pnag train stage1 --space autoformer --workdir "$RUNS/af_budget" --preset quick --set num_scales=6
pnag train stage2 --workdir "$RUNS/af_budget" --preset quick --set condition=budget --set budgets=params
pnag eval conditional --workdir "$RUNS/af_budget" --out "$OUT/budget_autoformer"
