#!/usr/bin/env bash
# The CountDown experiment (JYS Figure 5): for the trained model and the exact oracle, optimize JYS
# schedules, sample with uniform, cosine and JYS grids, evaluate the error; then one table,
# runs/count/results.json and runs/count/figures/countdown_error_vs_nfe.png.
#   bash scripts/count.sh [preset=default|full|paper]
# default: Euler, NFE 4 8 16 32, 256 samples, 32 KLUB samples.  full: the same sizes, + Tweedie, k-Gillespie, NFE 64
# (extends a default run).  paper: 16384 samples, 1024 KLUB samples (a GPU job).
# Every stage reuses what an earlier run made for the same model and config.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source scripts/common.sh
parse_preset "$@"
case $PRESET in
  default) SAMPLERS="euler"; NFES="4 8 16 32"; NUM=256; KLUB=32 ;;
  full) SAMPLERS="euler tweedie kgillespie"; NFES="4 8 16 32 64"; NUM=256; KLUB=32 ;;
  paper) SAMPLERS="euler tweedie kgillespie"; NFES="4 8 16 32 64"; NUM=16384; KLUB=1024 ;;
  *) echo "unknown preset $PRESET; expected default, full or paper" >&2; exit 2 ;;
esac
MODELS=${MODELS:-"count-sedd oracle"}
mkdir -p runs/count
TIMES=runs/count/stage_seconds.txt
: > "$TIMES"
# One Python process per stage and (model, sampler): each stage is a Hydra multirun over its cells.
for model in $MODELS; do
  for sampler in $SAMPLERS; do
    common="experiment=count model=$model sampler=$sampler seed=0"
    grid_steps $sampler $NFES
    sweep_cells "$model / $sampler" "$common" "num_samples=$NUM batch_size=256"
  done
done
$PY -m results table count --models $MODELS --samplers $SAMPLERS --nfes $NFES
$PY -m results figure count
