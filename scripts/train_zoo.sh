#!/usr/bin/env bash
# Train every zoo model with its recipe, then measure each on the test set once and time one image (--record).
# Resumable: rerun after an interruption and each run continues from its checkpoint.
# Usage: scripts/train_zoo.sh [MODEL ...]   (default: the whole zoo; needs CIFAR-10)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
models=("$@")
[ ${#models[@]} -gt 0 ] || mapfile -t models < <("$PY" -c 'from cnn.zoo import ZOO; print(*ZOO, sep="\n")')
for model in "${models[@]}"; do
  "$PY" -m cnn train --model "$model" --resume
  "$PY" -m cnn evaluate "$model" --split test --record
  "$PY" -m cnn latency "$model" --record
done
