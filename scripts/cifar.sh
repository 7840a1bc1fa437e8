#!/usr/bin/env bash
# The image experiment (JYS Fig. 6): JYS schedules for a tauLDR image model under the Gaussian-target
# kernel, samples with uniform, cosine and JYS grids (τ-leaping, tauLDR's final argmax at t = 0.01), their
# FID against the training split; then one table, runs/<experiment>/results.json,
# runs/<experiment>/figures/<metric>_vs_nfe.png and a sample grid per schedule at NFE 16.
#   bash scripts/cifar.sh [preset=default|full|paper]
# default: the digits model (weights/digits-tauldr), NFE 8 16 32 64, 300 samples per cell (the held-out
#          split's size, so the floor compares like with like) with sampling seeds 0 and 1 (the table averages
#          the two FIDs: one set of 300 moves by several points between seeds), 16 KLUB samples,
#          digits-FID; and uniform at NFE 256 (model quality, seed 0).
# full:    + Euler, 1,000 samples per cell, 64 KLUB samples.
# paper:   tauLDR's CIFAR-10 model, NFE 32 64 128 256, 10,000 samples, Inception FID: a GPU job,
#          TAULDR_CIFAR=DIR CIFAR_TRAIN=... INCEPTION=FILE bash scripts/cifar.sh preset=paper
# Every stage reuses what an earlier run made for the same model and config.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source scripts/common.sh
parse_preset "$@"
EXP="experiment=digits model=digits-tauldr"
# tauLDR's sampler stops at min_t = 0.01 and takes the argmax of p(x0 | x) there. No t_mix is set: J's lattice
# optimum (the default search) places the first step itself (docs/jys_objective.md, chain_gauss).
FINAL="eps=0.01 final_step=argmax"
METRIC=digits_fid; SHAPE="1 8 8"; LEVELS=17
case $PRESET in
  default) SAMPLERS="tau_leaping"; NFES="8 16 32 64"; NUM=300; SEEDS="0 1"; KLUB=16; QUALITY=256 ;;
  full) SAMPLERS="tau_leaping euler"; NFES="8 16 32 64"; NUM=300; SEEDS="0 1 2 3 4"; KLUB=64; QUALITY=256 ;;
  paper)
    SAMPLERS="tau_leaping"; NFES="32 64 128 256"; NUM=10000; SEEDS=0; KLUB=256; QUALITY=512
    for v in TAULDR_CIFAR INCEPTION; do
      [[ -n ${!v:-} ]] || { echo "preset=paper needs $v (TAULDR_CIFAR=run dir, INCEPTION=weights file)" >&2; exit 2; }
    done
    echo "preset=paper needs a CIFAR-10 dataset module (not in this project yet: CIFAR-10 cannot be downloaded here)" >&2
    exit 2 ;;
  *) echo "unknown preset $PRESET; expected default, full or paper" >&2; exit 2 ;;
esac
start_run "$EXP"
echo "== the held-out split against the training split (the floor)"
stage floor $PY scripts/image_floor.py $EXP
for sampler in $SAMPLERS; do
  common="$EXP $FINAL sampler=$sampler"
  grid_steps $sampler $NFES   # the grid's steps; the final argmax is one more call
  # -m: a Hydra multirun, its jobs one after another in one process (one Python start per stage)
  echo "== $MODEL / $sampler: JYS schedules for NFE $NFES"
  stage jys $PY -m jys -m $common seed=0 nfe=$(join "${steps[@]}") jys.num_samples=$KLUB | grep -E "schedule,"
  echo "== $MODEL / $sampler: samples"
  stage sample $PY -m samplers -m $common schedule=uniform,cosine,jys seed=$(join $SEEDS) nfe=$(join "${steps[@]}") \
    num_samples=$NUM batch_size=300 | grep -E "samples, grid|already holds"
  echo "== $MODEL / $sampler: $METRIC on every cell"
  stage metrics $PY -m metrics -m $common schedule=uniform,cosine,jys seed=$(join $SEEDS) nfe=$(join "${steps[@]}") > /dev/null
done
first=${SAMPLERS%% *}
echo "== $MODEL / $first / uniform NFE $QUALITY (model quality)"
quality="$EXP $FINAL sampler=$first schedule=uniform nfe=$((QUALITY - 1)) seed=0"
stage sample $PY -m samplers $quality num_samples=$NUM batch_size=300 | tail -n 1
stage metrics $PY -m metrics $quality > /dev/null
$PY -m results table "$EXPERIMENT" --models "$MODEL" --samplers $SAMPLERS --nfes $NFES --quality $QUALITY
$PY -m results figure "$EXPERIMENT" --nfe 16 --shape $SHAPE --levels $LEVELS
