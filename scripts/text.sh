#!/usr/bin/env bash
# The text experiment (JYS Fig. 8 right): JYS schedules for a SEDD text model, samples with uniform, cosine
# and JYS grids, their generative perplexity under a judge LM and their token entropy, the judge's floor on
# held-out text; then one table, runs/text/results.json, runs/text/figures/gen_ppl_vs_nfe.png and decoded
# samples under runs/text/samples/.
#   bash scripts/text.sh [preset=default|full|paper]
# default: the Shakespeare model (weights/text-sedd), Euler, NFE 8 16 32 64, 48 samples per cell, 16 KLUB
#          samples, judge SmolLM2-135M; and uniform at NFE 256 (model quality).
# full:    + Tweedie and k-Gillespie, 256 samples per cell, 32 KLUB samples.
# paper:   SEDD-small (GPT-2 tokens, L = 1024), NFE 16 32 64 128 256, 1024 samples, judge GPT-2 large: a GPU job,
#          SEDD_SMALL=DIR GPT2=DIR GPT2_LARGE=DIR bash scripts/text.sh preset=paper
# Every stage reuses what an earlier run made for the same model and config.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
source scripts/common.sh
parse_preset "$@"
EXP="experiment=text model=text-sedd"
TOKENIZER=weights/text-sedd/tokenizer.json; VOCAB=4096
case $PRESET in
  default) SAMPLERS="euler"; NFES="8 16 32 64"; NUM=48; KLUB=16; QUALITY=256 ;;
  full) SAMPLERS="euler tweedie kgillespie"; NFES="8 16 32 64"; NUM=256; KLUB=32; QUALITY=256 ;;
  paper)
    SAMPLERS="euler tweedie kgillespie"; NFES="16 32 64 128 256"; NUM=1024; KLUB=256; QUALITY=1024
    for v in SEDD_SMALL GPT2 GPT2_LARGE; do
      [[ -n ${!v:-} ]] || { echo "preset=paper needs $v=DIR (SEDD_SMALL, GPT2 tokenizer, GPT2_LARGE judge)" >&2; exit 2; }
    done
    EXP="experiment=text_gpt2 model=sedd-small model.path=$SEDD_SMALL tokenizer.path=$GPT2"
    TOKENIZER=$GPT2; VOCAB=50257
    EXP="$EXP metrics.judge=gpt2-large metrics.judge_path=$GPT2_LARGE" ;;
  *) echo "unknown preset $PRESET; expected default, full or paper" >&2; exit 2 ;;
esac
start_run "$EXP"
# The judge's floor first: a missing or broken judge or tokenizer fails here, before any sampling.
echo "== the judge on held-out text (the floor)"
stage floor $PY scripts/text_floor.py $EXP num_samples=$NUM seed=0
for sampler in $SAMPLERS; do
  common="$EXP sampler=$sampler seed=0"
  grid_steps $sampler $NFES
  sweep_cells "$MODEL / $sampler" "$common" "num_samples=$NUM batch_size=64"
done
# Model quality: many steps on the uniform grid, against the judge's floor on held-out text.
echo "== $MODEL / euler / uniform NFE $QUALITY (model quality)"
quality="$EXP sampler=euler schedule=uniform nfe=$((QUALITY - 1))"
stage sample $PY -m samplers $quality num_samples=$NUM batch_size=64 | tail -n 1
stage metrics $PY -m metrics $quality > /dev/null
$PY -m results table "$EXPERIMENT" --models "$MODEL" --samplers $SAMPLERS --nfes $NFES --quality $QUALITY
$PY -m results figure "$EXPERIMENT" --tokenizer "$TOKENIZER" --vocab $VOCAB
