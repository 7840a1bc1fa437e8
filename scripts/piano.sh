#!/usr/bin/env bash
# The music experiment (JYS Fig. 8 left): conditional generation of melodies from their first two bars
# (32 of 256 steps) under tauLDR's uniform kernel, τ-leaping with tauLDR's final argmax at t = 0.01; JYS,
# uniform and cosine grids; the note-histogram Hellinger distance of the generated 224 steps to samples
# of the same model at NFE 512 from the same prefixes (the paper's protocol) and to the true
# continuations; then one table, runs/<experiment>/results.json, runs/<experiment>/figures/
# hellinger_ref_vs_nfe.png and piano rolls of a few continuations per schedule at NFE 8.
#   bash scripts/piano.sh [preset=default|full|paper]
# default: the folk model (weights/folk-tauldr), NFE 2 4 8 16 32 64, the first NUM held-out tunes (one
#          continuation each), 16 KLUB samples (the search's and J's lattice sequences); the NFE-512 reference of
#          the same tunes (seed 100).
# full:    + Euler, all 300 held-out tunes, 64 KLUB samples.
# paper:   tauLDR's piano model on its Lakh piano rolls (a GPU job; neither can be downloaded here):
#          PIANO_MODEL=DIR PIANOROLL=DIR bash scripts/piano.sh preset=paper
# Every stage reuses what an earlier run made for the same model and config.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source scripts/common.sh
parse_preset "$@"
EXP="experiment=folk model=folk-tauldr"
FINAL="eps=0.01 final_step=argmax"   # tauLDR's ConditionalTauLeaping: min_t 0.01, argmax of p(x0 | x) there
REF_SEED=100; REF=512
case $PRESET in
  default) SAMPLERS="tau_leaping"; NFES="2 4 8 16 32 64"; NUM=128; KLUB=16 ;;
  full) SAMPLERS="tau_leaping euler"; NFES="2 4 8 16 32 64"; NUM=300; KLUB=64 ;;
  paper)
    for v in PIANO_MODEL PIANOROLL; do
      [[ -n ${!v:-} ]] || { echo "preset=paper needs $v (PIANO_MODEL=tauLDR run dir, PIANOROLL=dir of train.npy, test.npy)" >&2; exit 2; }
    done
    EXP="experiment=piano model=tauldr-piano model.path=$PIANO_MODEL experiment.data.dir=$PIANOROLL device=auto"
    SAMPLERS="tau_leaping"; NFES="2 4 8 16 32 64"; NUM=1000; KLUB=256 ;;
  *) echo "unknown preset $PRESET; expected default, full or paper" >&2; exit 2 ;;
esac
start_run "$EXP"
BATCH="num_samples=$NUM batch_size=$NUM metrics.reference_nfe=$((REF - 1)) metrics.reference_seed=$REF_SEED"
echo "== another held-out tune's continuation against each tune's (the scale of the metric)"
stage floor $PY scripts/music_floor.py $EXP num_samples=$NUM seed=0
for sampler in $SAMPLERS; do
  common="$EXP $FINAL sampler=$sampler"
  echo "== $MODEL / $sampler / the NFE-$REF reference (uniform grid, seed $REF_SEED)"
  stage sample $PY -m samplers $common schedule=uniform nfe=$((REF - 1)) seed=$REF_SEED $BATCH | tail -n 1
  grid_steps $sampler $NFES   # the grid's steps; the final argmax is one more call
  # -m: a Hydra multirun, its jobs one after another in one process (one Python start per stage)
  echo "== $MODEL / $sampler: JYS schedules for NFE $NFES"
  stage jys $PY -m jys -m $common seed=0 nfe=$(join "${steps[@]}") jys.num_samples=$KLUB jys.lattice_samples=$KLUB \
    | grep -E "schedule,"
  echo "== $MODEL / $sampler: samples"
  stage sample $PY -m samplers -m $common schedule=uniform,cosine,jys seed=0 nfe=$(join "${steps[@]}") $BATCH \
    | grep -E "samples, grid|already holds"
  echo "== $MODEL / $sampler: Hellinger distances on every cell"
  stage metrics $PY -m metrics -m $common schedule=uniform,cosine,jys seed=0 nfe=$(join "${steps[@]}") $BATCH > /dev/null
  stage metrics $PY -m metrics $common schedule=uniform nfe=$((REF - 1)) seed=$REF_SEED $BATCH > /dev/null
done
$PY -m results table "$EXPERIMENT" --models "$MODEL" --samplers $SAMPLERS --nfes $NFES
$PY -m results figure "$EXPERIMENT" --nfe 8 --prefix 32
