#!/usr/bin/env bash
# Reproduce the bundled default model (v3f, training/default_model.yaml; CPU: 85 min on 2 otherwise idle cores,
# measured, BENCHMARKS.md):
#   1. full training from scratch (base)  2. Stage 1 AdaLoRA  3. Stage 2 QAT  4. INT8 + FP32 export
# Usage: bash training/train_default_model.sh [DATA] [RUNS] [ASSETS]
# RECIPE=other.yaml trains another recipe (ADALORA_EPOCHS: Stage-1 AdaLoRA epochs, default 10; the previous
# default models: RECIPE=training/candidate_v3e_refine.yaml, v2: RECIPE=training/default_model_v2.yaml ADALORA_EPOCHS=20);
# SCORES=summary.json records out-of-fold scores (benchmarks/cv_score.py) in both files, as the shipped ones do;
# A recipe's stage1_adalora: section applies to step 2 only (e.g. training/candidate_v3f_lowlr.yaml).
# benchmarks/cv_default_model.sh runs the same steps on every cross-validation fold.
set -euo pipefail
DATA=${1:-../shared/data/cxr/permissive_512}
RUNS=${2:-runs/default}
ASSETS=${3:-napari_adaqat/assets}
Y=${RECIPE:-training/default_model.yaml}
adaqat train --stage 1 --preset $Y --mode full --data "$DATA" --out "$RUNS/base" --device cpu
adaqat train --stage 1 --preset $Y --mode adalora --epochs ${ADALORA_EPOCHS:-10} --checkpoint "$RUNS/base/checkpoints/best.safetensors" \
  --data "$DATA" --out "$RUNS/stage1" --device cpu
adaqat train --stage 2 --preset $Y --from "$RUNS/stage1" --data "$DATA" --out "$RUNS/stage2" --device cpu
PROVENANCE=(--recipe "$Y")  # both files record the recipe (and, with SCORES=, the out-of-fold scores)
if [ -n "${SCORES:-}" ]; then PROVENANCE+=(--scores "$SCORES"); fi
adaqat export "$RUNS/stage1" --force --out "$ASSETS/default_fp32.safetensors" --profile fp32 "${PROVENANCE[@]}"
adaqat export "$RUNS/stage2" --force --out "$ASSETS/default_int8.safetensors" --profile deploy "${PROVENANCE[@]}"
