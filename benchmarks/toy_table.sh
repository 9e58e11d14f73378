#!/usr/bin/env bash
# The README's toy table: target val mIoU of source-only, FT, joint, AdaptSegNet-style and PixDA
# on the toy benchmark, 1-shot and 5-shot, training seeds 0-4 (the split drawn with each
# run's seed), with 95% confidence intervals and paired tests against FT (notebook 04 writes
# analysis/stats_miou.{csv,md,tex}); plus a model fine-tuned on all 144 target train images,
# the "trained on the target" reference. One sweep; re-running it skips what is done.
# Usage: [JOBS=2] [SEEDS="0 1 2"] bash benchmarks/toy_table.sh [OUT]   (default
# results/toy_table, seeds 0-4, one notebook at a time; JOBS notebooks at once share the cores)
set -euo pipefail
OUT=${1:-results/toy_table}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/toy}
[ -f "$DATA/toy.json" ] || "$PY" -m pixda_core toy --out "$DATA"
"$PY" -m pixda_core sweep --preset toy --data-root "$DATA" --out "$OUT" \
    --methods source_only finetune joint adaptsegnet pixda --shots 1 5 --seeds ${SEEDS:-0 1 2 3 4} \
    --jobs "${JOBS:-1}"
# reference: fine-tuned on every target train image (8 per city in the toy benchmark)
if [ ! -f "$OUT/target_all_seed0/metrics.json" ]; then
    resume=(); [ -d "$OUT/target_all_seed0" ] && resume=(--continue_train)
    "$PY" run.py --source_dataset gta5 --source_dataroot "$DATA/gta5" --target_dataset cityscapes \
        --target_dataroot "$DATA/cityscapes" --preset toy --checkpoints_dir "$OUT" --quiet \
        --name target_all_seed0 --is_train --method finetune --num_shots 8 --seed 0 "${resume[@]}"
fi
"$PY" benchmarks/toy_table.py "$OUT"
