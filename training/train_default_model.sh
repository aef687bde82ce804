#!/usr/bin/env bash
# Reproduce the bundled default model v4.3 (CPU, 2 otherwise idle cores: about 85 + 27 + 8.5 min, BENCHMARKS.md):
#   v3f (training/default_model.yaml): 1. full training from scratch (base), then `adaqat train --stage all`:
#   2. Stage 1 AdaLoRA  3. Stage 2 QAT  4. INT8 + FP32 export (RUNS/chain/{model_int8,baseline_fp32}.safetensors);
#   v4.2 (training/default_model_clicks.yaml): 5. from v3f's FP32 file, clicks and one-lung boxes (Stage 1 decoder,
#   Stage 2 QAT, both files: RUNS/clicks/...), copied into ASSETS.  CLICKS=0 stops after v3f and ships it.
#   v4.3: 6. a U-Net's vote added to both files (python -m napari_adaqat.train.vote_train; BENCHMARKS.md, "The U-Net
#   vote shipped"); VOTE=0 stops before it and ships v4.2. The vote is on by default only for the default recipe
#   with its click step (CLICKS=0 or another RECIPE ships that model alone unless VOTE=1); benchmarks/
#   cv_default_model.sh runs the folds with VOTE=0 (the vote is trained and scored apart: benchmarks/vote_probe.py).
# Usage: [RESUME=1] bash training/train_default_model.sh [DATA] [RUNS] [ASSETS]
# RECIPE=other.yaml trains another recipe (ADALORA_EPOCHS: Stage-1 AdaLoRA epochs, default 10; the previous
# default models: RECIPE=training/candidate_v3e_refine.yaml, v2: RECIPE=training/default_model_v2.yaml ADALORA_EPOCHS=20);
# SCORES=summary.json records out-of-fold scores (benchmarks/cv_score.py) in both files, as the shipped ones do;
# VOTE_SCORES=benchmarks/results/twentysecond/vote_scores.json records the vote's (benchmarks/vote_probe.py --pool);
# A recipe's stage1_adalora: section applies to step 2 only (e.g. training/candidate_v3f_lowlr.yaml).
# benchmarks/cv_default_model.sh runs the same steps on every cross-validation fold.
set -euo pipefail
DATA=${1:-../shared/data/cxr/permissive_512}
RUNS=${2:-runs/default}
ASSETS=${3:-napari_adaqat/assets}
Y=${RECIPE:-training/default_model.yaml}
# RESUME=1 continues a killed run where it stopped: each step resumes if it has begun, else starts
resumed() { [ -n "${RESUME:-}" ] && [ -f "$1" ] && echo --resume || true; }
base_done() { [ -f "$RUNS/base/checkpoints/best.safetensors" ] && tail -n 1 "$RUNS/base/progress.jsonl" | grep -q '"kind": "done"'; }
if [ ! -f "$RUNS/chain/chain.json" ] && ! base_done; then  # step 1 (skipped once finished)
  adaqat train --stage 1 --preset $Y --mode full --data "$DATA" --out "$RUNS/base" --device cpu \
    $(resumed "$RUNS/base/checkpoints/last.safetensors")
fi
# steps 2-4: the chain (Stage 1 AdaLoRA from the base, Stage 2 QAT, both files)
adaqat train --stage all --preset "$Y" --mode adalora --epochs "${ADALORA_EPOCHS:-10}" \
  --checkpoint "$RUNS/base/checkpoints/best.safetensors" --data "$DATA" --out "$RUNS/chain" --device cpu \
  --profile deploy ${SCORES:+--scores "$SCORES"} $(resumed "$RUNS/chain/chain.json")  # both files record $Y
FINAL="$RUNS/chain"
if [ "${CLICKS:-1}" != 0 ]; then  # step 5: clicks and one-lung boxes, from v3f's FP32 file
  adaqat train --stage all --preset training/default_model_clicks.yaml \
    --checkpoint "$RUNS/chain/baseline_fp32.safetensors" --data "$DATA" --out "$RUNS/clicks" --device cpu \
    --profile deploy $(resumed "$RUNS/clicks/chain.json")
  FINAL="$RUNS/clicks"
fi
DEFAULT_VOTE=$([ -z "${RECIPE:-}" ] && [ "${CLICKS:-1}" != 0 ] && echo 1 || echo 0)
if [ "${VOTE:-$DEFAULT_VOTE}" != 0 ]; then  # step 6 (VOTE=0 skips it): the vote of an 8-channel U-Net trained 60 epochs on the same films
  python -m napari_adaqat.train.vote_train "$DATA" "$RUNS/vote" --epochs 60 --width 8  # resumes; ~8.5 min on 75 films
  mkdir -p "$RUNS/voted"
  for f in baseline_fp32 model_int8; do  # the model's tensors bit for bit, the vote added; made anew each time
    rm -f "$RUNS/voted/$f.new.safetensors"  # (from the files of this run, never a stale earlier one)
    python -m napari_adaqat.model.formats.vote_file "$FINAL/$f.safetensors" "$RUNS/vote/unet.safetensors" \
      "$RUNS/voted/$f.new.safetensors" --note "$(python -c 'import json, sys; print(json.dumps({k: v for f in sys.argv[1:]
        for k, v in json.load(open(f)).items()}))' "$RUNS/vote/unet.json" ${VOTE_SCORES:-})"
    mv "$RUNS/voted/$f.new.safetensors" "$RUNS/voted/$f.safetensors"
  done
  FINAL="$RUNS/voted"
fi
mkdir -p "$ASSETS"
cp "$FINAL/baseline_fp32.safetensors" "$ASSETS/default_fp32.safetensors"
cp "$FINAL/model_int8.safetensors" "$ASSETS/default_int8.safetensors"
