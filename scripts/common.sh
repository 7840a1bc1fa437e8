# Sourced by the experiment scripts (count.sh, text.sh, cifar.sh, piano.sh, ablation_klub.sh, peers.sh): the preset
# argument, the run directory, the stage timer and the cells of a sweep.
#   parse_preset "$@"        sets PRESET (default | full | paper) from a preset=... argument
#   start_run "$EXP"         sets EXPERIMENT and MODEL from "experiment=E model=M ...", OUT=runs/E, and
#                            TIMES=$OUT/stage_seconds.txt (emptied)
#   stage NAME CMD...        runs CMD and appends "NAME seconds" to $TIMES
#   join A B C               prints A,B,C (a Hydra multirun list)
#   grid_steps SAMPLER NFE…  sets steps (each NFE's grid steps) and cosine (those the sampler can follow on
#                            the cosine grid)
#   sweep_cells NAME COMMON SAMPLE_ARGS   the JYS, sampling and metrics stages over steps and cosine
parse_preset() {
  PRESET=default
  for arg in "$@"; do
    case $arg in
      preset=*) PRESET=${arg#preset=} ;;
      *) echo "unknown argument $arg; expected preset=default|full|paper" >&2; exit 2 ;;
    esac
  done
}
stage() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name $((SECONDS - t0))" >> "$TIMES"; }
start_run() {
  read -r EXPERIMENT MODEL <<< "$(echo "$1" | sed -E 's/experiment=([^ ]+) model=([^ ]+).*/\1 \2/')"
  OUT=runs/$EXPERIMENT
  mkdir -p "$OUT"
  TIMES=$OUT/stage_seconds.txt
  : > "$TIMES"
}
join() { echo "$*" | tr ' ' ','; }
# NFE = model calls per sequence: Euler, Tweedie and τ-leaping take NFE − 1 grid steps and the noise-removal
# call, the θ-trapezoidal step two calls ((NFE − 1)/2 steps, rounded down), the count-grid samplers (k-Gillespie,
# confidence, DUS) take NFE steps and no such call
# (samplers.loop.calls_per_sequence). From 32 steps on, the cosine grid's first step unmasks no token of the
# presets' 128 or 256 (L·(1 − cos(π/2N)) < 0.5), which count-grid samplers refuse: those cells are skipped.
count_grid() { [[ $($PY -m samplers.registry grid "$1") == count ]]; }  # samplers/registry.py
grid_steps() {
  local sampler=$1 calls nfe
  shift
  steps=(); cosine=()
  for calls in "$@"; do
    nfe=$($PY -m samplers.registry steps "$sampler" "$calls")  # the grid steps this budget of model calls buys
    steps+=("$nfe")
    if count_grid $sampler && ((nfe >= 32)); then
      echo "$sampler / cosine / NFE $calls: skipped, the grid's first step unmasks no token"
    else
      cosine+=("$nfe")
    fi
  done
}
# One sampling seed (in COMMON): each stage one Hydra multirun, its jobs one after another in one process.
sweep_cells() {
  local name=$1 common=$2 sample_args=$3
  echo "== $name: JYS schedules for NFE $NFES"
  stage jys $PY -m jys -m $common nfe=$(join "${steps[@]}") jys.num_samples=$KLUB jys.lattice_samples=$KLUB | grep -E "schedule,"
  echo "== $name: samples"
  stage sample $PY -m samplers -m $common schedule=uniform,jys nfe=$(join "${steps[@]}") $sample_args \
    | grep -E "samples, grid|already holds"
  if ((${#cosine[@]})); then
    stage sample $PY -m samplers -m $common schedule=cosine nfe=$(join "${cosine[@]}") $sample_args \
      | grep -E "samples, grid|already holds"
  fi
  echo "== $name: metrics of every cell"
  stage metrics $PY -m metrics -m $common schedule=uniform,jys nfe=$(join "${steps[@]}") > /dev/null
  ((${#cosine[@]} == 0)) || stage metrics $PY -m metrics -m $common schedule=cosine nfe=$(join "${cosine[@]}") > /dev/null
}
