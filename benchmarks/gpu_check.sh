#!/usr/bin/env bash
# The paper-size step benchmark in one go, for a machine with a GPU (run from the repository
# root with the project's venv). About 3 minutes on one H100, most of it torch.compile.
set -euo pipefail
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
common=(--device cuda --size 1024,512 --batch 4 --backbone resnet101)
"$PY" benchmarks/step.py "${common[@]}" --reps 10                 # kit bf16 vs release-style fp32
"$PY" benchmarks/step.py "${common[@]}" --reps 10 --precision fp32 --skip-release
"$PY" benchmarks/step.py "${common[@]}" --reps 10 --compile --skip-release
