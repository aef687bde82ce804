#!/usr/bin/env bash
# Out-of-fold scores of one fold of a default-model recipe run by benchmarks/cv_default_model.sh (issue 32):
#   1. box alone (INT8 and FP32; cv_score.py, tight boxes, clean films), merged with the same fold's rows of the
#      140-epoch U-Net and v3f (benchmarks/results/cv_issue14) into one paired table;
#   2. clicks, one-lung and corner boxes through the public API (prompt_obedience.py --split test);
#   3. clicks against heart-excluded masks (convention_clicks.py --split test, ellipse 1.4x).
# The fold's models record the fold's split, so --split test is exactly the fold's 31 out-of-fold films.
# Usage: bash benchmarks/cv_prompt_scores.sh FOLDS RUNS K [NAME]   (e.g. /work/cv /work/cvruns/v41 0 v4.1; absolute
# paths: the script runs from the repository root)
# Writes RUNS/fold<K>/score/{box,merged,obey,heart14}; merge folds later with cv_score.py --rows.
set -euo pipefail
FOLDS=$1; RUNS=$2; K=$3; NAME=${4:-candidate}
cd "$(dirname "$0")/.."
F=$RUNS/fold$K; S=$F/score; RES=benchmarks/results/cv_issue14
mkdir -p "$S"
python benchmarks/cv_score.py "$FOLDS" "$S/box" --model "$NAME INT8=$RUNS/fold{k}/default_int8.safetensors" \
  --model "$NAME FP32=$RUNS/fold{k}/default_fp32.safetensors" --only "$K" --shifts none
python - "$K" "$S" "$RES" <<'PY'
import csv, gzip, sys
k, out, res = sys.argv[1:]
unet = f"{res}/unet140_fold0_rows.csv.gz" if k == "0" else f"{res}/unet140_fold12_rows.csv.gz"
for tag, src, keep in (("unet", unet, lambda m: m.startswith("U-Net")), ("v3f", f"{res}/v3f_lowlr_rows.csv.gz", lambda m: "INT8" in m)):
    rows = [r for r in csv.DictReader(gzip.open(src, "rt")) if r["fold"] == k and r["shift"] == "none" and keep(r["model"])]
    if not rows:
        sys.exit(f"{src}: no rows of fold {k}")
    for r in rows:
        r["model"] = {"U-Net (no box)": "U-Net 140 ep (no box)", "v3f low-LR Stage 1 INT8": "v3f INT8"}.get(r["model"], r["model"])
    with open(f"{out}/{tag}_rows.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    print(tag, len(rows), "rows")
PY
python benchmarks/cv_score.py "$FOLDS" "$S/merged" --rows "$S/box/oof_rows.csv" --rows "$S/unet_rows.csv" --rows "$S/v3f_rows.csv"
cat "$S/merged/oof_table.md"
python benchmarks/prompt_obedience.py --model "$F/default_int8.safetensors" --baseline "$F/default_fp32.safetensors" \
  --data "$FOLDS/fold$K" --split test --work "$S/obey" --clicks 3
python benchmarks/convention_clicks.py --model "$F/default_int8.safetensors" --baseline "$F/default_fp32.safetensors" \
  --data "$FOLDS/fold$K" --split test --work "$S/heart14" --clicks 3
