#!/usr/bin/env bash
# The CountDown experiment (JYS Figure 5): for the trained model and the exact oracle, optimize JYS
# schedules, sample with uniform, cosine and JYS grids, evaluate the error; then one table,
# runs/count/results.json and runs/count/figures/error_vs_nfe.png.
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
    steps=(); cosine=()
    for calls in $NFES; do
      # NFE = model calls per sequence: Euler and Tweedie take NFE − 1 grid steps and the noise-removal call,
      # k-Gillespie takes NFE steps and no such call (samplers.loop.calls_per_sequence).
      nfe=$calls; [[ $sampler == kgillespie ]] || nfe=$((calls - 1))
      steps+=("$nfe")
      # From NFE 32 on, the cosine grid's first steps unmask no token of 256 (L·(1 − cos(π/2N)) < 0.5),
      # which k-Gillespie cannot follow; the sampler would refuse the grid.
      if [[ $sampler == kgillespie && $nfe -ge 32 ]]; then
        echo "kgillespie / cosine / NFE $calls: skipped, the grid's first step unmasks no token"
      else
        cosine+=("$nfe")
      fi
    done
    echo "== $model / $sampler: JYS schedules for NFE $NFES"
    stage jys $PY -m jys -m $common nfe=$(join "${steps[@]}") jys.num_samples=$KLUB | grep -E "schedule,"
    echo "== $model / $sampler: samples"
    stage sample $PY -m samplers -m $common schedule=uniform,jys nfe=$(join "${steps[@]}") num_samples=$NUM \
      batch_size=256 | grep -E "samples, grid|already holds"
    if ((${#cosine[@]})); then
      stage sample $PY -m samplers -m $common schedule=cosine nfe=$(join "${cosine[@]}") num_samples=$NUM \
        batch_size=256 | grep -E "samples, grid|already holds"
    fi
    echo "== $model / $sampler: errors"
    stage metrics $PY -m metrics -m $common schedule=uniform,jys nfe=$(join "${steps[@]}") > /dev/null
    ((${#cosine[@]} == 0)) || stage metrics $PY -m metrics -m $common schedule=cosine nfe=$(join "${cosine[@]}") > /dev/null
  done
done
$PY scripts/count_report.py --models $MODELS --samplers $SAMPLERS --nfes $NFES
