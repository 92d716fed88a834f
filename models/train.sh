#!/usr/bin/env bash
# Reproduce models/tumour-seg-v1.onnx from nothing but the repository:
#   models/setup.sh && models/train.sh
# 1. generate the training frames with the simulator (deterministic per seed and index),
# 2. train (fixed seeds, deterministic algorithms, 2 threads),
# 3. choose the threshold on the validation split, export to ONNX, write manifest.toml.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
FRAMES="${FRAMES:-3000}"
DATA_SEED="${DATA_SEED:-1}"
STEPS="${STEPS:-2000}"
NAME="${NAME:-tumour-seg-v1}"
cd "$root"
cargo build --release --quiet
if [ ! -f "$here/data/train/manifest.json" ] || ! grep -q "\"frames\": $FRAMES," "$here/data/train/manifest.json"; then
    rm -rf "$here/data/train"
    ./target/release/lumiq simulate-training --out "$here/data/train" --frames "$FRAMES" --seed "$DATA_SEED" --profile train
fi
cd "$here"
.venv/bin/python train.py --data data/train --out "runs/$NAME" --steps "$STEPS"
.venv/bin/python export.py --run "runs/$NAME" --data data/train --name "$NAME"
sha256sum "$NAME.onnx"
