#!/usr/bin/env bash
# Cross-validate a default-model recipe: training/train_default_model.sh (the base, then the chain
# `adaqat train --stage all`) on every fold folder made by benchmarks/cv_folds.py; each fold's INT8 and FP32
# files land in OUT/fold<k>/: the model alone (VOTE=0 unless given; the vote is trained and scored apart:
# python -m napari_adaqat.train.vote_train FOLDS/fold<k> VOTES/fold<k>, then benchmarks/vote_probe.py).
# Usage: [RESUME=1] [RECIPE=training/default_model_v2.yaml ADALORA_EPOCHS=20] bash benchmarks/cv_default_model.sh FOLDS OUT [k ...]
# Then: python benchmarks/cv_score.py FOLDS SCORES --model "v3 INT8=OUT/fold{k}/default_int8.safetensors" --only K
#       (and --model v2=... --unet UNET/fold{k}/unet.safetensors), merged with --rows; see BENCHMARKS.md
set -euo pipefail
FOLDS=$1; OUT=$2; shift 2
for k in ${@:-0 1 2}; do
  [ -f "$OUT/fold$k/default_int8.safetensors" ] && continue   # resumable per fold
  start=$(date +%s)
  [ -n "${RESUME:-}" ] || rm -rf "$OUT/fold$k/runs"   # RESUME=1: a fold killed midway goes on where it stopped
  VOTE=${VOTE:-0} bash training/train_default_model.sh "$FOLDS/fold$k" "$OUT/fold$k/runs" "$OUT/fold$k"
  echo "fold $k: $(( $(date +%s) - start )) s${RESUME:+ (resumed: the last part only)}" >> "$OUT/times.txt"
done
