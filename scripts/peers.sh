#!/usr/bin/env bash
# Peers at equal model calls: the adaptive unmasking samplers (confidence, DUS, EB-Sampler) against and combined
# with JYS, on CountDown (the exact oracle and the trained model); then one table, runs/peers/results.json and
# runs/peers/figures/error_vs_calls.png.
#   bash scripts/peers.sh [preset=default|full]
# default: CountDown, oracle and count-sedd; Euler, k-Gillespie, confidence, DUS and KLASS on uniform, cosine and JYS
#          grids (DUS also on its own geometric levels, Euler on the Beta mask schedule of arXiv 2509.13866 with
#          (a, b) from its 2-D search), ReMDM's loop on its own clock, EB-Sampler with γ tuned to each budget; model calls
#          4 8 16 32, 256 samples per cell, 32 KLUB samples.
# full:    + the text model (text-sedd, generative perplexity under SmolLM2-135M, 48 samples per cell in one
#          batch of 64 and 16 KLUB samples, as text.sh, whose Euler cells and search it reuses; EB's pilot 16
#          sequences).
# RUNS="experiment:model ..." picks the runs of a preset's list, e.g. RUNS=text:text-sedd.
# Every stage reuses what an earlier run made for the same model and config (count.sh's Euler cells too).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source scripts/common.sh
parse_preset "$@"
case $PRESET in
  default) RUNS=${RUNS:-"count:oracle count:count-sedd"} ;;
  full) RUNS=${RUNS:-"count:oracle count:count-sedd text:text-sedd"} ;;
  *) echo "unknown preset $PRESET; expected default or full" >&2; exit 2 ;;
esac
NFES="4 8 16 32"
SAMPLERS="euler kgillespie confidence dus klass"
mkdir -p runs/peers
TIMES=runs/peers/stage_seconds.txt
: > "$TIMES"
for run in $RUNS; do
  exp=${run%%:*}; model=${run#*:}
  if [[ $exp == text ]]; then NUM=48; BATCH=64; PILOT=16; KLUB=16; else NUM=256; BATCH=256; PILOT=64; KLUB=32; fi
  cell="experiment=$exp model=$model seed=0"
  for sampler in $SAMPLERS; do
    grid_steps $sampler $NFES
    sweep_cells "$exp / $model / $sampler" "$cell sampler=$sampler" "num_samples=$NUM batch_size=$BATCH"
  done
  echo "== $exp / $model / dus: its own geometric levels (k_i = L^(i/N))"
  stage sample $PY -m samplers -m $cell sampler=dus schedule=geometric nfe=$(join $NFES) num_samples=$NUM \
    batch_size=$BATCH | grep -E "samples, grid|already holds"
  stage metrics $PY -m metrics -m $cell sampler=dus schedule=geometric nfe=$(join $NFES) > /dev/null
  echo "== $exp / $model / euler: the Beta mask schedule, (a, b) by its 2-D grid search scored by J"
  grid_steps euler $NFES
  stage jys $PY -m jys -m $cell sampler=euler nfe=$(join "${steps[@]}") jys.search=beta jys.lattice_samples=$KLUB \
    | grep -E "schedule,"
  stage sample $PY -m samplers -m $cell sampler=euler schedule=beta nfe=$(join "${steps[@]}") num_samples=$NUM \
    batch_size=$BATCH | grep -E "samples, grid|already holds"
  stage metrics $PY -m metrics -m $cell sampler=euler schedule=beta nfe=$(join "${steps[@]}") > /dev/null
  echo "== $exp / $model / remdm: ReMDM's loop (remasking on [t_off, t_on]) on its own clock, uniform steps"
  grid_steps remdm $NFES
  stage sample $PY -m samplers -m $cell sampler=remdm schedule=uniform nfe=$(join "${steps[@]}") num_samples=$NUM \
    batch_size=$BATCH | grep -E "samples, grid|already holds"
  stage metrics $PY -m metrics -m $cell sampler=remdm schedule=uniform nfe=$(join "${steps[@]}") > /dev/null
  echo "== $exp / $model / eb: γ tuned to $NFES model calls (pilot of $PILOT sequences, seed 1000)"
  t0=$SECONDS
  gammas=$($PY scripts/eb_tune.py $cell batch_size=$BATCH --pilot $PILOT --budgets $NFES)  # a failure here stops the script
  echo "eb_tune $((SECONDS - t0))" >> "$TIMES"
  echo "γ = $gammas"
  stage sample $PY -m samplers -m $cell sampler=eb unmask.gamma=$gammas num_samples=$NUM batch_size=$BATCH \
    | grep -E "samples, grid|already holds"
  stage metrics $PY -m metrics -m $cell sampler=eb unmask.gamma=$gammas > /dev/null
done
$PY -m results peers --runs-of $RUNS --samplers $SAMPLERS remdm eb --nfes $NFES
