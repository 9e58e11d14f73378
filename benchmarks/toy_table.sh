#!/usr/bin/env bash
# The README's toy numbers, as one sweep folder over the toy's domain gap (sweep --gaps):
# 1. the table, at the toy's own gap (1): source-only, FT, joint, AdaptSegNet-style, AdvEnt,
#    PixDA and the oracle (FT on every target train image), 1 and 5 shots, training seeds 0-4, each
#    seed with its own source-only model (its split drawn with its seed);
# 2. the gap figure: source-only, FT and PixDA at 1 shot and the oracle at gaps 0, 0.5, 1.5
#    (GAP_SEEDS, default 0-2);
# 3. the calibration's gap-0 figure: source-only and the oracle at gap 0 for every seed;
# then the tables (benchmarks/toy_table.py) and the calibration (benchmarks/toy_calibration.py).
# Re-running it skips what is done. Notebook 04 over the whole folder: OUT/analysis.
# Usage: [JOBS=2] [SEEDS="0 1 2 3 4"] [GAP_SEEDS="0 1 2"] bash benchmarks/toy_table.sh [OUT]
set -euo pipefail
OUT=${1:-results/toy_table}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/toy}
SEEDS=${SEEDS:-0 1 2 3 4}
sweep() {
    "$PY" -m pixda_core sweep --preset toy --data-root "$DATA" --out "$OUT" --jobs "${JOBS:-1}" \
        --source-only-per-seed "$@"
}
sweep --gaps 1 --methods source_only oracle finetune pixda joint adaptsegnet advent --shots 1 5 \
    --seeds $SEEDS --no-analysis
sweep --gaps 0 0.5 1.5 --methods source_only oracle finetune pixda --shots 1 \
    --seeds ${GAP_SEEDS:-0 1 2} --no-analysis
sweep --gaps 0 --methods source_only oracle --shots 1 --seeds $SEEDS
"$PY" benchmarks/toy_table.py "$OUT"
"$PY" benchmarks/toy_calibration.py "$OUT" || true  # prints which figure is out of its range
