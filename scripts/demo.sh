#!/usr/bin/env bash
# CountDown on the exact oracle: a JYS schedule search, then Euler with uniform, cosine and JYS grids
# at NFE 4, 8, 16, and the error table. Stages reuse what earlier runs made (the search caches its levels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ARGS="experiment=count model=oracle sampler=euler seed=0 progress=false"
SAMPLES="num_samples=${NUM_SAMPLES:-1024} batch_size=512"
for nfe in 4 8 16; do
  $PY -m jys $ARGS nfe=$nfe
  for schedule in uniform cosine jys; do
    $PY -m samplers $ARGS $SAMPLES schedule=$schedule nfe=$nfe | tail -n 1
    $PY -m metrics $ARGS schedule=$schedule nfe=$nfe > /dev/null
  done
done
$PY - <<'PYEOF'
import json, pathlib
rows = [json.loads(p.read_text()) for p in pathlib.Path("runs/count/oracle/metrics").glob("euler-*.json")]
rows = [r for r in rows if r["schedule"] in ("uniform", "cosine", "jys") and r["nfe"] in (4, 8, 16)]
print("\nCountDown, exact oracle, Euler: fraction of broken transitions (lower is better); NFE = grid steps, each run spends one more call (noise removal)")
print(f"{'nfe':>4}{'uniform':>10}{'cosine':>10}{'jys':>10}{'jys/uniform':>13}")
for nfe in (4, 8, 16):
    e = {r["schedule"]: r["metrics"]["countdown_error"] for r in rows if r["nfe"] == nfe}
    print(f"{nfe:>4}{e['uniform']:>10.4f}{e['cosine']:>10.4f}{e['jys']:>10.4f}{e['jys'] / e['uniform']:>13.2f}")
PYEOF
