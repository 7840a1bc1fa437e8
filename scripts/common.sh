# Sourced by the experiment scripts (count.sh, text.sh, cifar.sh, piano.sh): the preset argument, the run
# directory and the stage timer.
#   parse_preset "$@"        sets PRESET (default | full | paper) from a preset=... argument
#   start_run "$EXP"         sets EXPERIMENT and MODEL from "experiment=E model=M ...", OUT=runs/E, and
#                            TIMES=$OUT/stage_seconds.txt (emptied)
#   stage NAME CMD...        runs CMD and appends "NAME seconds" to $TIMES
#   join A B C               prints A,B,C (a Hydra multirun list)
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
