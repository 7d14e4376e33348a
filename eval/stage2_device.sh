#!/usr/bin/env bash
# Issue 12 on a lent GPU (the `device` tool's H200): six stage-2 trainings at the paper
# size and a paper-preset surrogate, side by side, each stopped at DEADLINE seconds if
# not done. Run from the repo root of the device's copy, with `.whl/` (flax 0.12.12,
# optax, orbax-checkpoint, chex, jraph wheels for the device's JAX 0.11.2) and `.gpu/`
# carried:
#   .gpu/data/nb201/                     the NB201 tables (a copy of ../shared/data/nb201)
#   .gpu/w/{i16,c10,c100}/{stage1,surrogate}   NB201 quick stage 1 and the quick
#                                        surrogates excluding ImageNet16-120, CIFAR-10,
#                                        CIFAR-100 (latest step, params only)
#   .gpu/w/{darts,af}/stage1             DARTS and AutoFormer stage 1 (the recipe of
#                                        eval/stage1_acceptance.sh, trained on the CPU)
# What comes back under $OUT (the tool returns 8 files of <= 16 MiB): per run, its
# stage dir with the latest step's params, rng and meta, not the optimizer state;
# eval/rewrap_device_checkpoint.py makes each a loadable checkpoint again.
#   bash eval/stage2_device.sh [DEADLINE] [SCALE]   (SCALE divides every step count: a dry run)
set -u
T0=$(date +%s)
DEADLINE=${1:-470}
SCALE=${2:-1}
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT/logs"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PNAG_DATA_DIR=$PWD/.gpu/data PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
W=.gpu/w
L=$OUT/logs
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c 'import jax, flax, optax, orbax.checkpoint as o, jraph; print(jax.__version__, flax.__version__, optax.__version__, jax.devices())'
} > "$L/env.txt" 2>&1
cat "$L/env.txt"
PNAG=(python3 -c 'from pnag_jax.cli import console; console()')
steps() { echo $(( $1 / SCALE )); }
common=(--preset paper --set eval_every=1000 --set checkpoint_every=500 --set log_every=100)
for t in i16 c10 c100; do
  "${PNAG[@]}" train stage2 --workdir $W/$t "${common[@]}" --set condition=task \
    $( [ "$SCALE" = 1 ] || echo --set max_steps=$(( 9000 / SCALE )) ) > $L/$t.log 2>&1 &
done
"${PNAG[@]}" train stage2 --workdir $W/darts "${common[@]}" --set max_steps=$(steps 4000) \
  > $L/darts.log 2>&1 &
budget=(--set condition=budget --set budgets=params --set max_steps=$(steps 4000))
"${PNAG[@]}" train stage2 --workdir $W/af "${common[@]}" "${budget[@]}" > $L/af.log 2>&1 &
# MBV3's stage 1 trains here first (the recipe of eval/stage1_acceptance.sh).
( "${PNAG[@]}" train stage1 --space mbv3 --preset quick --workdir $W/mbv3 --set num_scales=6 \
    --set dim=16 --set max_steps=$(steps 1500) --set eval_every=500 --set checkpoint_every=500 \
    --set train_size=500000 --set heldout_size=10000 > $L/mbv3_stage1.log 2>&1 \
  && "${PNAG[@]}" train stage2 --workdir $W/mbv3 "${common[@]}" "${budget[@]}" > $L/mbv3.log 2>&1 ) &
mkdir -p $W/sp
"${PNAG[@]}" train surrogate --workdir $W/sp/excl_cifar10_0 --space nb201 --exclude 'cifar10(?!0)' \
  --preset paper $( [ "$SCALE" = 1 ] || echo --set steps=$(( 20000 / SCALE )) ) > $L/sp.log 2>&1 &
while [ -n "$(jobs -rp)" ] && [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do
  sleep 5
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> $L/gpu_util.txt 2>&1
done
pkill -INT -f pnag_jax.cli  # stopped: finalised elsewhere from the last checkpoint
sleep 5; pkill -9 -f pnag_jax.cli; wait
echo "trainings ended at $(( $(date +%s) - T0 )) s" | tee -a $L/env.txt
# Speed of the trained NB201 model on this GPU, only if time is left.
if [ -f $W/i16/stage2/report.json ] && [ $(( $(date +%s) - T0 )) -lt $(( DEADLINE + 40 )) ]; then
  timeout 50 "${PNAG[@]}" eval speed \
    --workdir $W/i16 --paths codes+fused,ar --max-log2 12 --out $OUT/speed > $L/speed.log 2>&1
fi
pack() {  # NAME WORKDIR STAGE
  local d=$2/$3; [ -d $d/checkpoints ] || return 0
  local last=$(ls $d/checkpoints | grep -E '^[0-9]+$' | sort -n | tail -1)
  [ -n "$last" ] || return 0
  local s1=; [ "$1" = mbv3 ] && s1="stage1/config.json stage1/report.json stage1/checkpoints/$(ls $2/stage1/checkpoints | grep -E '^[0-9]+$' | sort -n | tail -1)"
  # Stage 2's best held-out step (keep_best), which is what it serves, where it differs.
  local best=; [ -d $d/best/checkpoints ] && best=$(ls $d/best/checkpoints | grep -E '^[0-9]+$' | sort -n | tail -1)
  [ -n "$best" ] && [ "$best" != "$last" ] && best=$3/best/checkpoints/$best || best=
  tar -czf $OUT/$1.tgz -C $2 --exclude=opt_state --exclude=pnag_manifest.json $3/config.json \
    $3/metrics.jsonl $( [ -f $d/report.json ] && echo $3/report.json ) $3/checkpoints/$last $best $s1
}
for t in i16 c10 c100 darts af mbv3; do pack $t $W/$t stage2; done
pack sp_cifar10 $W/sp/excl_cifar10_0 surrogate
[ -f $OUT/mbv3.tgz ] || [ ! -d $W/mbv3/stage1 ] || \
  tar -czf $OUT/mbv3.tgz -C $W/mbv3 --exclude=opt_state --exclude=pnag_manifest.json stage1
tar -czf $OUT/logs.tgz -C $OUT logs $( [ -d $OUT/speed ] && echo speed ); rm -rf $OUT/logs $OUT/speed
ls -la $OUT; echo "all done at $(( $(date +%s) - T0 )) s"
