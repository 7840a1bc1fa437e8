#!/usr/bin/env bash
# JYS on the exact oracle: both objectives against uniform and cosine grids, Euler, NFE 4, 8, 16.
#   bash scripts/jys_oracle.sh [experiment]   (count | count_uniform | count_uniform_const; default count)
# Prints countdown_error (= chain_invalid_rate on CountDown) and chain_nll per schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EXP=${1:-count}
ARGS="experiment=$EXP model=oracle sampler=euler seed=0 progress=false"
for nfe in 4 8 16; do
  $PY -m jys $ARGS nfe=$nfe
  $PY -m jys $ARGS nfe=$nfe jys.objective=reference
  for schedule in uniform cosine jys jys-reference; do
    $PY -m samplers $ARGS schedule=$schedule nfe=$nfe num_samples=${NUM_SAMPLES:-2048} batch_size=512 > /dev/null
    $PY -m metrics $ARGS schedule=$schedule nfe=$nfe > /dev/null
  done
done
EXP=$EXP $PY - <<'PYEOF'
import json, os, pathlib
exp = os.environ["EXP"]
rows = {(r["schedule"], r["nfe"]): r["metrics"] for r in
        (json.loads(p.read_text()) for p in pathlib.Path(f"runs/{exp}/oracle/metrics").glob("euler-*.json"))}
names = ("uniform", "cosine", "jys", "jys-reference")
for metric in ("chain_invalid_rate", "chain_nll"):
    print(f"\n{exp}, Euler, {metric}")
    print(f"{'nfe':>4}" + "".join(f"{n:>15}" for n in names))
    for nfe in (4, 8, 16):
        print(f"{nfe:>4}" + "".join(f"{rows[(n, nfe)][metric]:>15.4f}" for n in names))
PYEOF
