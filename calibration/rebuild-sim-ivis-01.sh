#!/usr/bin/env bash
# Rebuild calibration/sim-ivis-01, the simulated instrument's calibration set, from
# simulated raw frames: 12 biases, 12 darks (60 s, -90 °C) and 12 flats (FOV 22.4 cm, f/1,
# filter "open") at binnings 4 and 8, combined by `lumiq calibrate`.
#
# The two commands:
#   cargo run --release -- simulate --calibration-frames --binnings 4,8 --frames 12 --out "$raw"
#   cargo run --release -- calibrate --simulated-instrument --id sim-ivis-01-sim-calibration-v1 \
#       --out calibration/sim-ivis-01 "$raw"
# `--simulated-instrument` records the instrument's coefficients (FOV 12.5 and 22.4 cm at
# f/1..16) and a fixed created_at, so a rebuild is byte-identical.
#
# With --via-test the same library functions run from an ignored test instead:
#   cargo test --release --lib generate_sim_instrument_set -- --ignored
set -euo pipefail
cd "$(dirname "$0")/.."

via_test() {
    cargo test --release --lib generate_sim_instrument_set -- --ignored --nocapture
}

if [[ "${1:-}" == "--via-test" ]]; then
    via_test
    exit 0
fi

raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
cargo run --release -- simulate --calibration-frames --binnings 4,8 --frames 12 --out "$raw/frames"
staging="calibration/sim-ivis-01.new"
rm -rf "$staging"
cargo run --release -- calibrate --simulated-instrument --id sim-ivis-01-sim-calibration-v1 \
    --out "$staging" "$raw/frames"
rm -rf calibration/sim-ivis-01
mv "$staging" calibration/sim-ivis-01
du -sh calibration/sim-ivis-01
