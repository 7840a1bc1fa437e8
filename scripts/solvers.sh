#!/usr/bin/env bash
# The θ-trapezoidal solver (two model calls per step) against Euler at equal model calls, each on the uniform,
# cosine and JYS grids, on the exact oracles of an absorbing, a uniform and an ordinal kernel; then a table per
# experiment (python -m results table) under runs/<experiment>/results.json.
#   bash scripts/solvers.sh
# Model calls 4 8 16 32 (Euler: NFE − 1 steps and the noise-removal call; θ-trapezoidal: (NFE − 1)/2 steps rounded
# down, so at an even budget it spends one call less), 256 samples per cell, 32 lattice sequences for JYS.
# EXPERIMENTS="count count_uniform_const chain_gauss" by default; chain_gauss reads datasets/chain_gauss/chain.npz
# (made here when missing: python -m models.chains smooth).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source scripts/common.sh
EXPERIMENTS=${EXPERIMENTS:-"count count_uniform_const chain_gauss"}
NFES="4 8 16 32"; NUM=256; KLUB=32
SAMPLERS="euler trapezoidal"
for exp in $EXPERIMENTS; do
  cell="experiment=$exp model=oracle seed=0"
  if [[ $exp == chain_gauss ]]; then
    [[ -f datasets/chain_gauss/chain.npz ]] || $PY -m models.chains smooth datasets/chain_gauss/chain.npz
    cell="$cell oracle.chain_file=datasets/chain_gauss/chain.npz"
  fi
  start_run "$cell"
  for sampler in $SAMPLERS; do
    grid_steps $sampler $NFES
    sweep_cells "$exp / oracle / $sampler" "$cell sampler=$sampler" "num_samples=$NUM batch_size=$NUM"
  done
  $PY -m results table "$exp" --models oracle --samplers $SAMPLERS --nfes $NFES
done
