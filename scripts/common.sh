# Sourced by the experiment scripts (count.sh, text.sh): the preset argument and the stage timer.
#   parse_preset "$@"        sets PRESET (default | full | paper) from a preset=... argument
#   stage NAME CMD...        runs CMD and appends "NAME seconds" to $TIMES
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
