#!/usr/bin/env bash
# The README's toy table: target val mIoU of source-only, FT, joint, AdaptSegNet-style and PixDA
# on the toy benchmark, 1-shot and 5-shot, seeds 0 1 2, plus a model fine-tuned on all 144
# target train images (the "trained on the target" reference). Every run is one run.py call;
# runs already complete are kept (run.py refuses to overwrite, so they are skipped here).
# Usage: bash benchmarks/toy_table.sh [OUT]   (default results/toy_table; ~50 min on 2 cores)
set -euo pipefail
OUT=${1:-results/toy_table}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/toy}
[ -f "$DATA/toy.json" ] || "$PY" -m pixda_core toy --out "$DATA"
common=(--source_dataset gta5 --source_dataroot "$DATA/gta5" --target_dataset cityscapes
        --target_dataroot "$DATA/cityscapes" --preset toy --checkpoints_dir "$OUT" --quiet)
run() {  # run NAME ARGS...: one training run, skipped when its metrics exist
  local name=$1; shift
  if [ -f "$OUT/$name/metrics.json" ]; then echo "done already: $name"; return; fi
  local resume=(); [ -d "$OUT/$name" ] && resume=(--continue_train)
  "$PY" run.py "${common[@]}" --name "$name" --is_train "${resume[@]}" "$@"
}
for shots in 1 5; do
  for seed in 0 1 2; do
    for method in finetune joint adaptsegnet pixda; do
      run "${method}_${shots}shot_seed${seed}" --method "$method" --num_shots "$shots" --seed "$seed"
    done
  done
done
# reference: fine-tuned on every target train image (8 per city in the toy benchmark)
run "target_all_seed0" --method finetune --num_shots 8 --seed 0
"$PY" benchmarks/toy_table.py "$OUT"
