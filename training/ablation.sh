#!/usr/bin/env bash
# Table 3 of the paper: an ablation over the same base model, ending in ONE `adaqat evaluate` report.
#   decoder   Stage 1, decoder-only fine-tuning
#   lora8     Stage 1, plain LoRA at rank 8 (fixed rank, no pruning) + decoder
#   adalora   Stage 1, AdaLoRA r 48 -> 32 + decoder (the paper)
#   dqat      Stage 2 from adalora: INT8 QAT of the mask decoder only (D-QAT)
#   fullqat   Stage 2 from adalora: INT8 QAT of encoder + decoder (Full QAT)
# The FP32 AdaLoRA Stage-1 model is the baseline of every comparison; all scores are on the test split
# of the base run's split.json (never trained on).
#
# Usage: bash training/ablation.sh DATA OUT
#   On this CPU (defaults): vit_tiny, the base trained from scratch here first (full mode, the default
#   model v2's recipe, $BASE_EPOCHS epochs).
#   On a GPU with ViT-B:   MODEL_TYPE=vit_b CHECKPOINT=sam_vit_b_01ec64.pth PRESET=paper DEVICE=cuda \
#                          EPOCHS=25 QAT_EPOCHS=10 bash training/ablation.sh DATA OUT
# Wall times of every step go to OUT/times.tsv.
set -euo pipefail
DATA=${1:?usage: ablation.sh DATA OUT}
OUT=${2:?usage: ablation.sh DATA OUT}
MODEL_TYPE=${MODEL_TYPE:-vit_tiny}
PRESET=${PRESET:-training/default_model_v2.yaml}  # the vit_tiny recipe
DEVICE=${DEVICE:-cpu}
EPOCHS=${EPOCHS:-10}
QAT_EPOCHS=${QAT_EPOCHS:-4}
BASE_EPOCHS=${BASE_EPOCHS:-30}
mkdir -p "$OUT"
TIMES="$OUT/times.tsv"
[ -f "$TIMES" ] || printf 'step\tseconds\n' > "$TIMES"

step() {  # step NAME COMMAND...: run once (skipped when OUT/NAME.done exists), timed
  local name=$1; shift
  if [ -f "$OUT/$name.done" ]; then echo "== $name: done already"; return; fi
  echo "== $name: $*"
  local t0; t0=$(date +%s)
  "$@"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$TIMES"
  touch "$OUT/$name.done"
}

common=(--preset "$PRESET" --model-type "$MODEL_TYPE" --data "$DATA" --device "$DEVICE")
if [ -z "${CHECKPOINT:-}" ]; then  # no pretrained SAM here: train the base first, from scratch
  step base adaqat train --stage 1 --mode full --epochs "$BASE_EPOCHS" "${common[@]}" --out "$OUT/base"
  CHECKPOINT="$OUT/base/checkpoints/best.safetensors"
fi
s1=("${common[@]}" --checkpoint "$CHECKPOINT" --epochs "$EPOCHS")
step decoder adaqat train --stage 1 --mode decoder "${s1[@]}" --out "$OUT/decoder"
step lora8   adaqat train --stage 1 --mode lora --set adalora.r_init=8 --set adalora.r_target=8 "${s1[@]}" --out "$OUT/lora8"
# adalora (Stage 1) -> fullqat (Stage 2) -> both files: the chain, into OUT/chain (an interrupted one resumes)
again=(); if [ -f "$OUT/chain/chain.json" ]; then again=(--resume); fi
step chain   adaqat train --stage all --mode adalora "${s1[@]}" --qat-epochs "$QAT_EPOCHS" --qat-variant full \
  --profile paper --out "$OUT/chain" "${again[@]}"
step dqat    adaqat train --stage 2 --preset "$PRESET" --from "$OUT/chain/stage1" --data "$DATA" --device "$DEVICE" \
  --epochs "$QAT_EPOCHS" --qat-variant decoder --out "$OUT/dqat"

for run in decoder lora8; do
  step "export_$run" adaqat export "$OUT/$run" --profile fp32 --force --out "$OUT/models/$run.safetensors"
done
step export_dqat adaqat export "$OUT/dqat" --profile paper --force --out "$OUT/models/dqat.safetensors"
mkdir -p "$OUT/models"
cp "$OUT/chain/baseline_fp32.safetensors" "$OUT/models/adalora.safetensors"
cp "$OUT/chain/model_int8.safetensors" "$OUT/models/fullqat.safetensors"
SPLIT="$OUT/chain/stage1/split.json"
step evaluate adaqat evaluate --data "$DATA" --split test --split-file "$SPLIT" --device "$DEVICE" \
  --model "$OUT/models/decoder.safetensors" --model "$OUT/models/lora8.safetensors" \
  --model "$OUT/models/adalora.safetensors" --model "$OUT/models/dqat.safetensors" \
  --model "$OUT/models/fullqat.safetensors" --baseline "$OUT/models/adalora.safetensors" --out "$OUT/report"
echo "Table 3: $OUT/report/index.html (model = decoder, model2 = lora8, model3 = adalora, model4 = dqat, model5 = fullqat)"
cat "$TIMES"
