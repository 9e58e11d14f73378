#!/usr/bin/env bash
# The paper-size benchmarks in one go, for a machine with a GPU (run from the repository root
# with the project's venv). Not yet run on a GPU; expect several minutes, most of it torch.compile.
set -euo pipefail
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
common=(--device cuda --size 1024,512 --batch 4 --backbone resnet101)
# kit bf16 vs release-style fp32 (the speedup line), with the kit step's operator profile
"$PY" benchmarks/step.py "${common[@]}" --reps 10 --profile 5 --check-sync
"$PY" benchmarks/step.py "${common[@]}" --reps 10 --precision fp32 --skip-release
"$PY" benchmarks/step.py "${common[@]}" --reps 10 --precision fp16 --skip-release
"$PY" benchmarks/step.py "${common[@]}" --reps 10 --concat-forward --skip-release
"$PY" benchmarks/step.py "${common[@]}" --reps 10 --compile --skip-release
# the data pipeline at 1024x512 on this machine's cores
"$PY" benchmarks/loader.py --images 96 --workers 0 4 8 16
