#!/usr/bin/env bash
# Reproduces weights/count-sedd: the CountDown SEDD DiT (d 128, 4 blocks, 4 heads) trained on CPU.
# Resumable: rerun after an interruption and it continues from runs/train/count-sedd/checkpoint.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m train experiment=count threads=2 "$@"
