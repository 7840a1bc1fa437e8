#!/usr/bin/env bash
# CountDown on the exact oracle: Euler with uniform and cosine grids at a few NFE, then the error table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ARGS="experiment=count model=oracle sampler=euler num_samples=${NUM_SAMPLES:-512} seed=0"
for nfe in 4 8 16; do
  for schedule in uniform cosine; do
    $PY -m samplers $ARGS schedule=$schedule nfe=$nfe progress=false
    $PY -m metrics $ARGS schedule=$schedule nfe=$nfe > /dev/null
  done
done
$PY - <<'PYEOF'
import json, pathlib
rows = [json.loads(p.read_text()) for p in pathlib.Path("runs/count/oracle/metrics").glob("euler-*.json")]
print(f"{'schedule':<10}{'nfe':>5}{'calls':>7}{'countdown_error':>17}{'published':>11}")
for r in sorted(rows, key=lambda r: (r["nfe"], r["schedule"])):
    m = r["metrics"]
    print(f"{r['schedule']:<10}{r['nfe']:>5}{r['model_calls']:>7g}{m['countdown_error']:>17.4f}{m['countdown_error_published']:>11.4f}")
PYEOF
