#!/usr/bin/env bash
# KLUB-samples ablation (JYS Fig. 10): on CountDown, for the trained model and the exact oracle, JYS schedules
# for Euler searched with K = 4, 16, 64, 256, 1024 KLUB samples and search seeds 0, 1, 2, and the error of
# samples drawn on each at NFE 8 and 16 (sampling seed 0, so only the schedule differs between cells); the
# uniform grid beside it. Then runs/ablation_klub/results.json, a table and runs/ablation_klub/figures/
# error_vs_klub_samples.png. The paper says 16 samples give almost the same schedule as 1024.
#   bash scripts/ablation_klub.sh [preset=default|full]
# default: 256 samples per cell.  full: 1024 samples per cell.
# MODELS, KS and SEEDS (environment) choose a part, e.g. MODELS=count-sedd KS="4 16 64 256" (a search with 1024
# samples of the trained model takes about 20 minutes on 2 CPU cores); the report tabulates every cell present.
# Each (K, seed) keeps its own tree runs/ablation_klub/k<K>-s<seed>/ (its search levels, schedules, samples and
# metrics), so cells never overwrite each other and a rerun reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source scripts/common.sh
parse_preset "$@"
case $PRESET in
  default) NUM=256 ;;
  full) NUM=1024 ;;
  *) echo "unknown preset $PRESET; expected default or full" >&2; exit 2 ;;
esac
MODELS=${MODELS:-"count-sedd oracle"}
KS=${KS:-"4 16 64 256 1024"}
SEEDS=${SEEDS:-"0 1 2"}
NFES="8 16"
OUT=runs/ablation_klub
mkdir -p "$OUT"
TIMES=$OUT/stage_seconds.txt
: > "$TIMES"
grid_steps euler $NFES   # Euler: NFE − 1 steps + the final call
# The paper's Fig. 10 is about the hierarchical search's KLUB samples: that search with the girsanov KLUB (the
# default before the grid objective J), whose schedules are labelled jys-girsanov-hierarchy.
HIER="jys.search=hierarchy jys.objective=girsanov"; LABEL=jys-girsanov-hierarchy
for model in $MODELS; do
  common="experiment=count model=$model sampler=euler seed=0 num_samples=$NUM batch_size=256"
  echo "== $model: the uniform grid at NFE $NFES"
  stage sample $PY -m samplers -m $common schedule=uniform nfe=$(join "${steps[@]}") runs_dir=$OUT/uniform \
    | grep -E "samples, grid|already holds"
  stage metrics $PY -m metrics -m $common schedule=uniform nfe=$(join "${steps[@]}") runs_dir=$OUT/uniform > /dev/null
  for k in $KS; do
    for s in $SEEDS; do
      tree=$OUT/k$k-s$s
      echo "== $model: $k KLUB samples, search seed $s"
      stage jys $PY -m jys -m $common nfe=$(join "${steps[@]}") $HIER jys.num_samples=$k jys.seed=$s runs_dir=$tree \
        | grep -E "schedule,"
      stage sample $PY -m samplers -m $common schedule=$LABEL nfe=$(join "${steps[@]}") runs_dir=$tree \
        | grep -E "samples, grid|already holds"
      stage metrics $PY -m metrics -m $common schedule=$LABEL nfe=$(join "${steps[@]}") runs_dir=$tree > /dev/null
    done
  done
done
$PY -m results ablation --out "$OUT" --nfes $NFES
