#!/usr/bin/env bash
# The GPU check (issue 29): what to measure the day a CUDA machine is at hand, in under 9 minutes.
#
#   1. adaqat bench: ViT-B at 1024 px, ours (bf16 autocast on CUDA) against stock segment_anything
#   2. adaqat segment throughput with --batch-size 1, 8 and 32 (benchmarks/segment_throughput.py,
#      the bundled model over 256 films, next to the model alone)
#   3. one Stage-1 ViT-B training step (AdaLoRA, random weights, batch 2) and its peak GPU memory
#   4. the 2-rank torchrun segment (a GPU each; ranks share the GPU when there is one)
#   5. a box and corrective clicks through the public API with a voted model (benchmarks/device_clicks.py): masks
#      against the CPU's, and the median click
# One JSON (OUT/gpu_check.json) and a printed summary.  Each part has its own time limit (540 s in all); a failing part
# is recorded (rc and the last lines of its log) and the others still run.
#
#   bash benchmarks/gpu_check.sh [OUT]            # on a CUDA machine (refuses to run without one)
#   bash benchmarks/gpu_check.sh --dry-run [OUT]  # the CPU-safe parts, tiny: what CI runs (tests/test_segment_archive.py)
#
# FILMS=folder of films (default: ../shared/data/cxr/permissive_512/images, else tests/data/cxr/images).
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT=${1:-build/gpu_check}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FILMS=${FILMS:-$ROOT/../shared/data/cxr/permissive_512/images}
[[ -d "$FILMS" ]] || FILMS=$ROOT/tests/data/cxr/images
START=$(date +%s)

if [[ $DRY == 1 ]]; then
  DEVICE=cpu; BENCH_MODEL=vit_nano; BENCH_SIZE=256; N_FILMS=2; BATCHES="1"; TRAIN_MODEL=vit_nano; TRAIN_SIZE=256
  CLICK_FILMS=1
  FILMS=$ROOT/tests/data/cxr/images
  BENCH_QUICK=(--repeats 1 --warmup 0 --prompt-repeats 2)
  SEG_MODEL=(--model "$OUT/$TRAIN_MODEL.pth" --model-type vit_nano)
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device here; run it on a GPU machine, or use --dry-run for the CPU-safe parts" >&2
    exit 2
  fi
  DEVICE=cuda; BENCH_MODEL=vit_b; BENCH_SIZE=1024; N_FILMS=256; BATCHES="1 8 32"; TRAIN_MODEL=vit_b; TRAIN_SIZE=1024
  CLICK_FILMS=4
  BENCH_QUICK=()
  SEG_MODEL=()
fi
# the training step's start: random weights in the official .pth format (no download on a GPU machine)
"$PY" -c "import sys, torch; from napari_adaqat.model.build import build_sam; torch.manual_seed(0); \
torch.save(build_sam(sys.argv[1]).state_dict(), sys.argv[2])" "$TRAIN_MODEL" "$OUT/$TRAIN_MODEL.pth"

# part NAME LIMIT_S CMD...: run CMD with a time limit, its output in OUT/NAME.log, rc and seconds in OUT/NAME.rc
part() {
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s.%N)
  echo "gpu_check: $name ..." >&2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$rc $(echo "$(date +%s.%N) - $t0" | bc)" >"$OUT/$name.rc"
  [[ $rc == 0 ]] || echo "gpu_check: $name failed (rc $rc), see $OUT/$name.log" >&2
}

# 1. bench: ours (bf16 on CUDA) against stock
part bench 120 "$PY" -m napari_adaqat bench --model-type "$BENCH_MODEL" --image-size "$BENCH_SIZE" --device "$DEVICE" \
  "${BENCH_QUICK[@]}" --out "$OUT/bench.json"

# 2. segment throughput at each batch size (model alone in the same run)
# shellcheck disable=SC2086
part segment 150 "$PY" "$ROOT/benchmarks/segment_throughput.py" "$FILMS" -n "$N_FILMS" --rows 0 --device "$DEVICE" \
  --batch-size $BATCHES --out "$OUT/segment.json"

# 3. one Stage-1 training step with its peak memory (the dataset: the 4 shipped films, train = val)
DATA=$OUT/data
rm -rf "$DATA" "$OUT/train"
mkdir -p "$DATA"
cp -r "$ROOT/tests/data/cxr/images" "$ROOT/tests/data/cxr/masks" "$DATA/"
"$PY" -c "import json, pathlib, sys; d = pathlib.Path(sys.argv[1]); n = sorted(p.stem for p in (d / 'images').glob('*.png')); \
(d / 'split.json').write_text(json.dumps({'train': n, 'val': n, 'test': [], 'val_overlaps_train': True}))" "$DATA"
part train 120 "$PY" -m napari_adaqat train --stage 1 --model-type "$TRAIN_MODEL" --image-size "$TRAIN_SIZE" --data "$DATA" \
  --checkpoint "$OUT/$TRAIN_MODEL.pth" --out "$OUT/train" --epochs 1 --max-steps-per-epoch 1 --batch-size 2 \
  --device "$DEVICE"

# 4. the 2-rank torchrun segment over the same films
rm -rf "$OUT/torchrun_out"
part torchrun 90 "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m napari_adaqat segment "$FILMS" \
  --out "$OUT/torchrun_out" --device "$DEVICE" "${SEG_MODEL[@]}"

# 5. box and clicks through the public API with a voted model, against the CPU's masks
part clicks 60 "$PY" "$ROOT/benchmarks/device_clicks.py" --device "$DEVICE" -n "$CLICK_FILMS" --out "$OUT/clicks.json"

# one JSON + the summary
"$PY" - "$OUT" "$DRY" "$START" <<'PY'
import json, sys, time
from pathlib import Path

out, dry, start = Path(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3])


def status(name):
    rc, seconds = (out / f"{name}.rc").read_text().split()
    log = (out / f"{name}.log").read_text(errors="replace").strip().splitlines()
    return {"rc": int(rc), "seconds": round(float(seconds), 1), **({} if rc == "0" else {"log_tail": log[-5:]})}


def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


result = {"dry_run": dry, "parts": {n: status(n) for n in ("bench", "segment", "train", "torchrun", "clicks")}}
result["bench"] = load("bench.json")
result["clicks"] = load("clicks.json")
result["segment"] = load("segment.json")
steps = [json.loads(line) for line in (out / "train" / "progress.jsonl").read_text().splitlines()] \
    if (out / "train" / "progress.jsonl").is_file() else []
step = next((s for s in steps if s.get("peak_mem_mb") is not None or s.get("event") == "step"), None)
result["train_step"] = step
rows = out / "torchrun_out" / "results.csv"
result["torchrun_rows"] = sum(1 for _ in rows.open()) - 1 if rows.is_file() else None
log = (out / "torchrun.log").read_text(errors="replace").splitlines()
result["torchrun_summary"] = next((l for l in log if "segmented," in l), None)
result["total_seconds"] = round(time.time() - start, 1)
(out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")

print(f"gpu_check{' (dry run, CPU)' if dry else ''}: {out / 'gpu_check.json'}, {result['total_seconds']} s")
for name, part in result["parts"].items():
    print(f"  {name:9s} rc {part['rc']}  {part['seconds']:6.1f} s")
b = result["bench"] or {}
if b:
    print(f"  bench     {b.get('model_type')} embed ours {b.get('embed_s')} s vs stock {b.get('stock_embed_s')} s "
          f"(ratio {b.get('embed_ratio')}), prompt {b.get('prompt_ms')} ms, mask IoU {b.get('mask_iou')}")
seg = result["segment"] or {}
for r in (seg.get("throughput") if isinstance(seg.get("throughput"), list) else [seg.get("throughput")] if seg else []):
    print(f"  segment   batch {r['batch_size']:>2}: {r['segment_films_per_s']} films/s, model alone "
          f"{r['model_films_per_s']} films/s, ratio {r['ratio']}")
if step:
    print(f"  train     one step: {json.dumps({k: step[k] for k in step if k in ('elapsed_s', 'peak_mem_mb', 'mem_kind', 'loss')})}")
print(f"  torchrun  {result['torchrun_summary']} ({result['torchrun_rows']} rows)")
c = result["clicks"] or {}
if c:
    print(f"  clicks    {c['prompts']} prompts on {c['films']} films: min Dice vs CPU {c['min_dice_vs_cpu']}, "
          f"median click {c['median_click_ms']} ms")
failed = [n for n, p in result["parts"].items() if p["rc"] != 0]
sys.exit(1 if failed else 0)
PY
